"""TrainConfig validation and serialisation."""

from __future__ import annotations

import pytest

from slimkit.errors import ConfigError
from slimkit.train import TrainConfig


def test_round_trip() -> None:
    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.1, early_stopping_patience=2)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an int >= 1; got 0"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"optimizer": "lion"}, "optimizer must be one of adam, adamw, sgd; got 'lion'"),
        ({"schedule": "linear"}, "schedule"),
        ({"lr": -1.0}, "lr must be a number > 0; got -1.0"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"early_stopping_patience": 0}, "early_stopping_patience"),
        ({"device": "tpu"}, "device"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_values_name_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown training option.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})

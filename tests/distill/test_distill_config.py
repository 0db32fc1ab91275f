"""DistillationConfig: bad values are refused at once, configs round-trip, live teachers say so."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques import config_from_dict, config_to_dict, list_techniques
from slimkit.techniques.distill import DistillationConfig, HintConfig, LiveTeacher
from slimkit.train import AugmentConfig


@pytest.mark.parametrize("temperature", [0, -1.0, math.nan, math.inf, "20", True])
def test_temperature_must_be_positive(temperature: object) -> None:
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        DistillationConfig(teacher="t.safetensors", temperature=temperature)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "0.5"])
def test_alpha_must_lie_in_the_unit_interval(alpha: object) -> None:
    with pytest.raises(ConfigError, match=r"alpha must be"):
        DistillationConfig(teacher="t.safetensors", alpha=alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_ends_are_allowed(alpha: float) -> None:
    assert DistillationConfig(teacher="t.safetensors", alpha=alpha).alpha == alpha


def test_a_teacher_is_required() -> None:
    with pytest.raises(ConfigError, match="distillation needs a teacher"):
        DistillationConfig()
    with pytest.raises(ConfigError, match="teacher must be a slimkit checkpoint path"):
        DistillationConfig(teacher=3)  # type: ignore[arg-type]


def test_training_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="epochs must be an int >= 1"):
        DistillationConfig(teacher="t.safetensors", epochs=0)
    with pytest.raises(ConfigError, match="unknown augmentation option"):
        DistillationConfig(teacher="t.safetensors", augment={"jitter": 2})  # type: ignore[arg-type]


def test_hints_accept_configs_dicts_and_strings() -> None:
    config = DistillationConfig(
        teacher="t.safetensors",
        hints=[  # type: ignore[list-item]
            HintConfig("a", "b", 0.5),
            {"student_layer": "c", "teacher_layer": "d"},
            "layers.1:features.3",
        ],
    )
    assert config.hints == (
        HintConfig("a", "b", 0.5),
        HintConfig("c", "d"),
        HintConfig("layers.1", "features.3"),
    )


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        (["nocolon"], "a hint must be a HintConfig"),
        ([{"student_layer": "a"}], "a hint takes student_layer, teacher_layer and weight"),
        ([{"student_layer": "a", "teacher_layer": "b", "weight": 0}], "hint weight must be"),
        ("a:b", "hints must be a list of hints"),
        ([" :b"], "hint student_layer must be a module name"),
    ],
)
def test_bad_hints_are_refused(hints: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DistillationConfig(teacher="t.safetensors", hints=hints)  # type: ignore[arg-type]


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    assert "distillation" in list_techniques()
    config = DistillationConfig(
        teacher=tmp_path / "teacher.safetensors",  # type: ignore[arg-type]
        temperature=20,
        alpha=0.7,
        epochs=3,
        augment=AugmentConfig(shift=2, mixup_alpha=0.2),
        hints=[HintConfig("layers.1", "layers.2", 0.5)],
    )
    assert config.teacher == str(tmp_path / "teacher.safetensors")  # a path becomes a string
    document = json.loads(json.dumps(config_to_dict(config)))
    assert document["technique"] == "distillation"
    assert document["augment"]["shift"] == 2
    assert document["hints"] == [
        {"student_layer": "layers.1", "teacher_layer": "layers.2", "weight": 0.5}
    ]
    assert config_from_dict(document) == config


def test_a_live_teacher_trains_but_refuses_to_serialize() -> None:
    teacher = nn.Linear(3, 2)
    config = DistillationConfig(teacher=teacher)
    assert isinstance(config.teacher, LiveTeacher) and config.teacher.module is teacher
    with pytest.raises(ConfigError, match=r"save the teacher with slimkit\.save_checkpoint"):
        config_to_dict(config)
    with pytest.raises(ConfigError, match="cannot be copied or serialized"):
        copy.deepcopy(config)
    assert DistillationConfig(teacher=teacher) == config  # same module, equal configs

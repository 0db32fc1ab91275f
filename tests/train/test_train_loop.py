"""The training loop: it learns, repeats with a seed, stops early, and calls its callbacks."""

from __future__ import annotations

import math

import pytest
import torch

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.models import create_model
from slimkit.train import Callback, TrainConfig, TrainState, evaluate, train


def test_short_training_learns_digits(digits: Dataset) -> None:
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[64])
    _, before = evaluate(model, digits.test)
    result = train(model, digits, TrainConfig(epochs=5, seed=0))
    _, after = evaluate(model, digits.test)
    assert before < 0.3
    assert after > 0.85
    assert len(result.history) == 5
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.best_val_accuracy == max(h.val_accuracy for h in result.history)


def test_lenet5_reaches_95_percent_on_digits(digits: Dataset) -> None:
    """The default `slimkit train` recipe on the embedded data (the acceptance bar is 95%)."""
    model = create_model("lenet5", input_shape=digits.input_shape)
    train(model, digits, TrainConfig(seed=0))
    assert evaluate(model, digits.test)[1] >= 0.95


def test_same_seed_same_weights(digits: Dataset) -> None:
    weights = []
    for _ in range(2):
        torch.manual_seed(123)  # initialisation comes from the global generator
        model = create_model("mlp", input_shape=digits.input_shape, hidden=[32])
        train(model, digits, TrainConfig(epochs=2, seed=7))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_best_epoch_weights_are_restored(digits: Dataset) -> None:
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[32])
    result = train(model, digits, TrainConfig(epochs=4, seed=0))
    _, val_accuracy = evaluate(model, digits.val)
    assert val_accuracy == pytest.approx(result.best_val_accuracy)


class _Recorder(Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[str] = []
        self.stop_after = stop_after

    def on_train_start(self, state: TrainState) -> None:
        self.events.append("start")

    def on_epoch_start(self, state: TrainState) -> None:
        self.events.append(f"epoch{state.epoch}")

    def on_step_end(self, state: TrainState) -> None:
        assert math.isfinite(state.last_loss)

    def on_epoch_end(self, state: TrainState) -> None:
        self.events.append(f"end{state.history[-1].epoch}")
        if self.stop_after is not None and len(state.history) >= self.stop_after:
            state.should_stop = True

    def on_train_end(self, state: TrainState) -> None:
        self.events.append("done")


def test_callbacks_see_every_stage_and_can_stop(digits: Dataset) -> None:
    recorder = _Recorder(stop_after=2)
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[16])
    result = train(model, digits, TrainConfig(epochs=5), callbacks=[recorder])
    assert recorder.events == ["start", "epoch0", "end1", "epoch1", "end2", "done"]
    assert result.stopped_early and len(result.history) == 2


def test_early_stopping_on_a_plateau(digits: Dataset) -> None:
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[16])
    # a learning rate this small leaves validation accuracy flat, so patience runs out
    result = train(
        model,
        digits,
        TrainConfig(epochs=30, lr=1e-9, schedule="constant", early_stopping_patience=2),
    )
    assert result.stopped_early
    assert len(result.history) < 30


def test_custom_loss_function_is_used(digits: Dataset) -> None:
    calls = []

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(y))
        return torch.nn.functional.cross_entropy(model(x), y)

    model = create_model("mlp", input_shape=digits.input_shape, hidden=[16])
    train(model, digits, TrainConfig(epochs=1, batch_size=100), loss_fn=loss_fn)
    assert sum(calls) == len(digits.train)


def test_divergence_is_a_clear_error(digits: Dataset) -> None:
    def nan_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x).sum() * float("nan")

    model = create_model("mlp", input_shape=digits.input_shape, hidden=[16])
    with pytest.raises(ConfigError, match=r"diverged.*learning rate"):
        train(model, digits, TrainConfig(epochs=1), loss_fn=nan_loss)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("schedule", ["step", "constant"])
def test_every_optimizer_and_schedule_trains(
    digits: Dataset, optimizer: str, schedule: str
) -> None:
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[32])
    lr = 0.05 if optimizer == "sgd" else 3e-3
    train(model, digits, TrainConfig(epochs=3, optimizer=optimizer, schedule=schedule, lr=lr))
    assert evaluate(model, digits.test)[1] > 0.7

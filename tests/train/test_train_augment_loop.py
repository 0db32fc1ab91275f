"""The loop's augmentation and batch indices: what the loss sees, and that seeds still repeat."""

from __future__ import annotations

import torch

from slimkit.data import Dataset
from slimkit.models import create_model
from slimkit.train import AugmentConfig, Callback, TrainConfig, TrainState, train


class _Spy(Callback):
    """Keeps the live state and the indices of every batch."""

    def __init__(self) -> None:
        self.state: TrainState | None = None
        self.indices: list[torch.Tensor] = []

    def on_train_start(self, state: TrainState) -> None:
        self.state = state

    def on_step_end(self, state: TrainState) -> None:
        assert state.batch_index is not None
        self.indices.append(state.batch_index.clone())


def _model(data: Dataset) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", input_shape=data.input_shape, hidden=[16])


def test_batch_index_names_the_samples_the_loss_sees(digits: Dataset) -> None:
    spy = _Spy()
    checked = []

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert spy.state is not None and spy.state.batch_index is not None
        index = spy.state.batch_index
        checked.append(
            torch.equal(x, digits.train.x[index]) and torch.equal(y, digits.train.y[index])
        )
        return torch.nn.functional.cross_entropy(model(x), y)

    train(_model(digits), digits, TrainConfig(epochs=1), callbacks=[spy], loss_fn=loss_fn)
    assert len(checked) == len(spy.indices) > 0 and all(checked)
    # an epoch visits every training sample once
    visited = torch.cat(spy.indices)
    assert torch.equal(visited.sort().values, torch.arange(len(digits.train)))
    assert spy.state is not None and spy.state.batch_index is None  # cleared after the epoch


def test_augmentation_keeps_the_shuffling_order(digits: Dataset) -> None:
    orders = []
    for augment in (None, AugmentConfig(shift=2, mixup_alpha=0.2)):
        spy = _Spy()
        train(
            _model(digits),
            digits,
            TrainConfig(epochs=1, seed=3, augment=augment),
            callbacks=[spy],
        )
        orders.append(torch.cat(spy.indices))
    assert torch.equal(orders[0], orders[1])


def test_mixed_batches_reach_the_loss_as_probabilities(digits: Dataset) -> None:
    seen: list[torch.Tensor] = []

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(y)
        return torch.nn.functional.cross_entropy(model(x), y)

    config = TrainConfig(epochs=1, augment=AugmentConfig(mixup_alpha=0.4, mix_probability=0.5))
    train(_model(digits), digits, config, loss_fn=loss_fn)
    mixed = [y for y in seen if y.ndim == 2]
    plain = [y for y in seen if y.ndim == 1]
    assert mixed and plain  # about half of the batches were mixed
    for y in mixed:
        assert y.shape[1] == digits.num_classes
        torch.testing.assert_close(y.sum(1), torch.ones(len(y)))


def test_augmented_training_repeats_with_a_seed_and_learns(digits: Dataset) -> None:
    augment = AugmentConfig(shift=1, cutmix_alpha=1.0, mix_probability=0.5)
    config = TrainConfig(epochs=4, seed=1, augment=augment)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("mlp", input_shape=digits.input_shape, hidden=[128])
        result = train(model, digits, config)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert result.best_val_accuracy > 0.5  # chance is 0.1

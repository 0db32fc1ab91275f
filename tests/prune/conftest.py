"""Fixtures of the pruning tests: one thread (opt-in), a small MLP trained on digits, norms with
trained-looking statistics, and the masked dense model channel pruning must equal."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.models import create_model
from slimkit.techniques.prune.dependency import ChannelGroup
from slimkit.train import TrainConfig, train


@pytest.fixture
def one_thread() -> None:
    """Tiny models train faster on one thread than on two of a shared machine.

    Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_mlp(digits: Dataset) -> nn.Module:
    """A 64-64-32-10 MLP trained for 12 epochs on digits (about 92% test accuracy)."""
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=digits.input_shape, hidden=(64, 32))
    train(model, digits, TrainConfig(epochs=12, lr=3e-3, seed=0, threads=1))
    return model.eval()


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Batch-norm statistics and norm scales/shifts other than the defaults (seed 0), so that
    masking a channel shows in the output; returns the model in eval mode."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)  # type: ignore[union-attr]
            module.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.uniform_(module.weight, 0.2, 1.5)
            nn.init.uniform_(module.bias, -0.3, 0.3)
    return model.eval()


@pytest.fixture(scope="session")
def randomize_norms() -> Callable[[nn.Module], nn.Module]:
    """``randomize_norms(model)``: norms with trained-looking statistics, the model in eval mode."""
    return _randomize_norms


def _masked_dense_model(
    model: nn.Module, selections: list[tuple[ChannelGroup, torch.Tensor]]
) -> nn.Module:
    """The dense model with the weights that read removed channels zeroed (the oracle).

    A grouped convolution's weight holds the in-group columns of its group's rows only.
    """
    masked = copy.deepcopy(model)
    for group, keep in selections:
        dropped = torch.tensor(sorted(set(range(group.size)) - set(keep.tolist())))
        for use in group.uses:
            if use.role != "consumer" or not len(dropped):
                continue
            layer: Any = masked.get_submodule(use.layer)
            groups = getattr(layer, "groups", 1)
            per_group, rows = layer.weight.shape[1], layer.weight.shape[0] // groups
            with torch.no_grad():
                for column in use.columns(dropped).tolist():
                    g = column // per_group
                    layer.weight[g * rows : (g + 1) * rows, column % per_group] = 0
    return masked


@pytest.fixture(scope="session")
def masked_dense() -> Callable[..., nn.Module]:
    """``masked_dense(model, selections)``: the dense model with every weight that reads a removed
    channel zeroed — what channel pruning must compute exactly."""
    return _masked_dense_model

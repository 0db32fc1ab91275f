"""Magnitude masks: exact counts per layer and globally, and masks that survive optimizer steps."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques.prune import PruningMasks, magnitude_masks

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["layers.1", "layers.3", "layers.5"]


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: model.get_submodule(name).weight.detach() for name in LAYERS}


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.77, 0.9, 0.999])
def test_per_layer_sparsity_is_exact_and_keeps_the_largest(
    small_mlp: nn.Module, sparsity: float
) -> None:
    weights = _weights(small_mlp)
    masks = magnitude_masks(weights, sparsity, granularity="layer")
    for name, weight in weights.items():
        n = weight.numel()
        assert int((~masks[name]).sum()) == int(sparsity * n + 0.5)
        if 0 < int((~masks[name]).sum()) < n:  # every kept weight outweighs every pruned one
            assert weight[masks[name]].abs().min() >= weight[~masks[name]].abs().max()


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
def test_global_sparsity_is_exact_with_one_threshold(small_mlp: nn.Module, sparsity: float) -> None:
    weights = _weights(small_mlp)
    masks = magnitude_masks(weights, sparsity, granularity="global")
    total = sum(w.numel() for w in weights.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == int(sparsity * total + 0.5)
    # oracle: the same threshold everywhere, from all the magnitudes sorted together
    magnitudes = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = torch.sort(magnitudes).values[pruned - 1]
    for name, weight in weights.items():
        assert bool((weight[~masks[name]].abs() <= threshold).all())
        assert bool((weight[masks[name]].abs() >= threshold).all())
    # and the layers end up unequal: global pruning spares the small output layer
    per_layer = {n: float((~m).float().mean()) for n, m in masks.items()}
    assert per_layer["layers.5"] < sparsity < per_layer["layers.1"]


def test_per_layer_fractions_from_a_mapping(small_mlp: nn.Module) -> None:
    weights = _weights(small_mlp)
    targets = {"layers.1": 0.92, "layers.3": 0.91, "layers.5": 0.74}
    masks = magnitude_masks(weights, targets, granularity="layer")
    for name, target in targets.items():
        assert int((~masks[name]).sum()) == int(target * weights[name].numel() + 0.5)


def test_bad_granularity_is_named() -> None:
    with pytest.raises(ConfigError, match="granularity must be one of global, layer; got 'row'"):
        magnitude_masks({"w": torch.ones(3)}, 0.5, granularity="row")


def _train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    steps: int,
    after: Callable[[], None] | None = None,
) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(0, len(data.train), (32,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(data.train.x[index]), data.train.y[index]).backward()
        optimizer.step()
        if after is not None:
            after()


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum"])
def test_masks_persist_through_optimizer_steps(
    small_mlp: nn.Module, digits: Dataset, optimizer: str
) -> None:
    def make(model: nn.Module) -> torch.optim.Optimizer:
        if optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    # momentum built up before pruning is what would regrow pruned weights
    model = copy.deepcopy(small_mlp).train()
    opt = make(model)
    _train_steps(model, opt, digits, 5)
    masks = PruningMasks(model, LAYERS)
    masks.update(0.8)
    _train_steps(model, opt, digits, 20, after=masks.apply)
    for name in LAYERS:
        weight = model.get_submodule(name).weight
        assert bool((weight[~masks.masks[name]] == 0).all())
        assert weight.grad is not None and bool((weight.grad[~masks.masks[name]] == 0).all())
        assert bool((weight[masks.masks[name]] != 0).all())  # the kept ones still train
    masks.remove()
    assert all(not model.get_submodule(n).weight._backward_hooks for n in LAYERS)

    # control: masked gradients alone do not hold the zeros: the optimizer's state moves them
    control = copy.deepcopy(small_mlp).train()
    opt = make(control)
    _train_steps(control, opt, digits, 5)
    control_masks = PruningMasks(control, LAYERS)
    control_masks.update(0.8)
    _train_steps(control, opt, digits, 20)
    regrown = sum(
        int((control.get_submodule(n).weight[~control_masks.masks[n]] != 0).sum()) for n in LAYERS
    )
    assert regrown > 0
    control_masks.remove()


def test_removed_masks_leave_a_plain_model(small_mlp: nn.Module) -> None:
    model = copy.deepcopy(small_mlp)
    keys = list(model.state_dict())
    masks = PruningMasks(model, LAYERS)
    masks.update(0.6, granularity="global")
    masks.remove()
    assert list(model.state_dict()) == keys
    assert all(isinstance(model.get_submodule(n).weight, nn.Parameter) for n in LAYERS)
    assert masks.sparsity() == pytest.approx(0.6, abs=1e-4)
    # zeros are +0.0 (no sign bit), so they compress like any zero
    for name in LAYERS:
        weight = model.get_submodule(name).weight.detach()
        assert bool((weight[weight == 0].view(torch.int32) == 0).all())

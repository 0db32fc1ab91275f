"""Truncated SVD: reconstruction error follows Eckart–Young; factorized models compute W_r x."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.models import create_model
from slimkit.techniques import compress
from slimkit.techniques.lowrank import (
    LowRankConfig,
    choose_rank,
    factorize_conv,
    factorize_linear,
    low_rank,
)
from slimkit.train import evaluate


@pytest.mark.parametrize("rank", [1, 4, 16, 32])
def test_linear_error_is_the_discarded_singular_values(rank: int) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 32)
    pair = factorize_linear(layer, rank)
    product = (pair[1].weight @ pair[0].weight).detach().double()
    error = torch.linalg.matrix_norm(product - layer.weight.detach().double())
    s = torch.linalg.svdvals(layer.weight.detach().double())
    assert float(error) == pytest.approx(float(s[rank:].pow(2).sum().sqrt()), abs=1e-5)
    x = torch.randn(5, 48)
    torch.testing.assert_close(pair(x), x @ product.float().T + layer.bias, atol=1e-5, rtol=1e-5)


def test_error_shrinks_with_rank_and_vanishes_at_full_rank() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    x = torch.randn(2, 4, 9, 9)
    errors = [float((factorize_conv(conv, r)(x) - conv(x)).abs().max()) for r in (1, 2, 4, 8)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-5  # rank 8 = min(out, in·k·k): exact


def test_energy_picks_the_smallest_sufficient_rank() -> None:
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])  # energies 9, 4, 1, 0.25 of 14.25
    assert choose_rank(s, rank=None, energy=0.6) == 1
    assert choose_rank(s, rank=None, energy=0.9) == 2
    assert choose_rank(s, rank=None, energy=1.0) == 4
    assert choose_rank(s, rank=10, energy=None) == 4


def test_only_layers_that_shrink_are_replaced() -> None:
    model = create_model("lenet300_100", input_shape=(1, 28, 28))
    small = low_rank(model, rank=20)
    assert isinstance(small.layers[1], nn.Sequential)  # 784x300 at rank 20 is smaller
    assert isinstance(small.layers[5], nn.Linear)  # 100x10 would grow
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_compress_with_fine_tuning_keeps_accuracy(
    trained_lenet: nn.Module, digits: Dataset
) -> None:
    factorized = compress(trained_lenet, [LowRankConfig(energy=0.95, epochs=3)], data=digits)
    assert evaluate(factorized, digits.test)[1] >= evaluate(trained_lenet, digits.test)[1] - 0.05


def test_bad_values() -> None:
    with pytest.raises(ConfigError, match="energy"):
        LowRankConfig(energy=1.5)
    with pytest.raises(ConfigError, match="rank"):
        LowRankConfig(rank=0)
    with pytest.raises(ConfigError, match="matched no layer"):
        low_rank(create_model("lenet5"), rank=2, scope=["nothing*"])

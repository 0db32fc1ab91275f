"""Batch-norm folding, cross-layer equalization and the IR builder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.models import create_model
from slimkit.techniques.quantize.equalize import equalization_pairs, equalize
from slimkit.techniques.quantize.graph import build_graph, fold_batch_norm, trace
from slimkit.techniques.quantize.model import run_float


def test_folding_a_batch_norm_keeps_the_function() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
    bn.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.2, 0.2)
    bn.eval()
    x = torch.randn(4, 3, 6, 6)
    fused = fold_batch_norm(conv, bn)
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    assert conv.weight is not fused.weight  # the original is untouched


def test_folding_into_a_linear_layer_without_bias() -> None:
    torch.manual_seed(0)
    linear, bn = nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3)
    bn.running_mean.fill_(0.3)  # type: ignore[union-attr]
    bn.running_var.fill_(2.0)  # type: ignore[union-attr]
    bn.eval()
    x = torch.randn(8, 4)
    torch.testing.assert_close(fold_batch_norm(linear, bn)(x), bn(linear(x)), atol=1e-6, rtol=1e-5)


def test_graph_of_a_residual_net_folds_and_fuses(residual_net: nn.Module) -> None:
    graph = build_graph(trace(residual_net), (1, 8, 8))
    kinds = [op.kind for op in graph.ops]
    assert kinds == [
        "input",
        "conv",
        "conv",
        "add",
        "conv",
        "maxpool",
        "avgpool",
        "adaptive_avgpool",
        "flatten",
        "linear",
    ]
    activations = {op.layer: op.activation for op in graph.ops}
    assert activations["stem.0"] == "relu" and activations["depthwise"] == "relu6"
    assert next(op for op in graph.ops if op.kind == "add").activation == "relu"
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(run_float(graph, x), residual_net(x), atol=1e-5, rtol=1e-5)


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 2)).eval()
    with pytest.raises(ConfigError, match=r"layer '2' \(PReLU\) has no int8 implementation"):
        build_graph(trace(model), (1, 2, 2))


def test_lone_batch_norm_is_refused() -> None:
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(ConfigError, match="batch norm '0'"):
        build_graph(trace(model), (1, 2, 2))


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_equalization_keeps_the_float_function(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=(1, 8, 8)).eval()
    graph = build_graph(trace(model), (1, 8, 8))
    before = copy.deepcopy(graph)
    assert equalize(graph) >= 2
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(run_float(graph, x), run_float(before, x), atol=1e-4, rtol=1e-4)


def test_equalization_balances_channel_ranges() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    with torch.no_grad():
        model[0].weight[0] *= 50  # one loud channel
    graph = build_graph(trace(model), (1, 8, 8))
    first, second, _ = equalization_pairs(graph)[0]
    equalize(graph, iterations=1)
    r1 = first.weight.reshape(4, -1).abs().amax(dim=1)  # type: ignore[union-attr]
    r2 = second.weight.abs().amax(dim=(0, 2, 3))  # type: ignore[union-attr]
    torch.testing.assert_close(r1, r2, rtol=1e-5, atol=1e-7)


def test_equalization_handles_depthwise_and_skips_residuals(plain_residual_net: nn.Module) -> None:
    graph = build_graph(trace(plain_residual_net), (1, 8, 8))
    pairs = [(a.layer, b.layer) for a, b, _ in equalization_pairs(graph)]
    # stem feeds both the block and the skip connection: not a chain, so it is not equalized
    assert ("stem.0", "block.0") not in pairs
    before = copy.deepcopy(graph)
    equalize(graph)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(run_float(graph, x), run_float(before, x), atol=1e-4, rtol=1e-4)

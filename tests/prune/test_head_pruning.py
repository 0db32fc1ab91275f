"""Attention-head pruning: a pruned layer computes what the full one computes with the removed
heads silenced; the model shrinks, exports with parity, and still channel-prunes afterwards."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from slimkit.data import load_dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.layers.attention import MultiHeadAttention
from slimkit.measure import count_costs
from slimkit.models import create_model
from slimkit.runtime import load_runtime
from slimkit.techniques import compress, config_from_dict
from slimkit.techniques.prune import (
    HeadPruningConfig,
    head_importance,
    heads_by_layer,
    prune_channels,
    prune_heads,
    remove_heads,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _silenced(layer: MultiHeadAttention, heads: list[int]) -> MultiHeadAttention:
    """A copy of ``layer`` whose ``heads`` output zeros (their value rows set to 0)."""
    silent = copy.deepcopy(layer)
    d, inner = layer.head_dim, layer.num_heads * layer.head_dim
    with torch.no_grad():
        for h in heads:
            rows = slice(2 * inner + h * d, 2 * inner + (h + 1) * d)  # the v rows of head h
            silent.qkv.weight[rows] = 0
            if silent.qkv.bias is not None:
                silent.qkv.bias[rows] = 0
    return silent


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_removing_heads_equals_silencing_them(attention: str) -> None:
    torch.manual_seed(0)
    layer = MultiHeadAttention(24, num_heads=4, attention=attention).eval()
    x = torch.randn(3, 5, 24)
    pruned = copy.deepcopy(layer)
    remove_heads(pruned, torch.tensor([3, 0]))  # any order: kept in their original order
    assert pruned.num_heads == 2 and pruned.head_dim == 6
    assert pruned.qkv.weight.shape == (36, 24) and pruned.proj.weight.shape == (24, 12)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), _silenced(layer, [1, 2])(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(pruned(x), layer(x), atol=1e-3)  # the heads did something
    with pytest.raises(ConfigError, match=r"distinct heads among 0\.\.1"):
        remove_heads(pruned, torch.tensor([0, 0]))


def test_importance_ranks_the_heads_by_their_weights() -> None:
    torch.manual_seed(0)
    layer = MultiHeadAttention(16, num_heads=4)
    with torch.no_grad():  # head 2 gets 10x the weights of the others
        d, inner = layer.head_dim, 16
        for s in range(3):
            layer.qkv.weight[s * inner + 2 * d : s * inner + 3 * d] *= 10
        layer.proj.weight[:, 2 * d : 3 * d] *= 10
    for kind in ("l1", "l2"):
        scores = head_importance(layer, kind)
        assert scores.shape == (4,) and int(scores.argmax()) == 2
    with pytest.raises(ConfigError, match="needs the gradients"):
        head_importance(layer, "taylor")


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("vit_small", input_shape=(1, 8, 8), num_heads=4).eval()


def test_prune_heads_halves_every_layer_and_exports_with_parity(tmp_path: Path) -> None:
    model = _vit()
    before = heads_by_layer(model)
    assert before and set(before.values()) == {4}
    pruned = prune_heads(model, ratio=0.5)
    assert heads_by_layer(pruned) == {name: 2 for name in before}
    assert heads_by_layer(model) == before  # the input model is not modified
    dense, small = count_costs(model, (1, 8, 8)), count_costs(pruned, (1, 8, 8))
    assert small.params < dense.params and small.macs < dense.macs
    path = export(pruned, tmp_path / "heads.onnx", input_shape=(1, 8, 8)).path
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        expected = pruned(x).numpy()
    np.testing.assert_allclose(
        load_runtime("onnxruntime", path).run(x.numpy()), expected, atol=1e-4, rtol=1e-4
    )
    # at most ratio of the heads go, at least min_heads stay
    assert set(heads_by_layer(prune_heads(model, ratio=0.3)).values()) == {3}
    assert set(heads_by_layer(prune_heads(model, ratio=0.9, min_heads=2)).values()) == {2}


def test_global_ranking_takes_more_heads_from_the_layer_that_needs_them_less() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        MultiHeadAttention(16, num_heads=4), MultiHeadAttention(16, num_heads=4)
    )
    with torch.no_grad():
        for layer in model:  # every head of both layers alike...
            layer.qkv.weight.fill_(0.1)
            layer.proj.weight.fill_(0.1)
        second: Any = model[1]
        d = second.head_dim  # ...but head 3 of the second layer carries it
        for s in range(3):
            second.qkv.weight[s * 16 + 3 * d : s * 16 + 4 * d] = 1.0
        second.proj.weight[:, 3 * d :] = 1.0
    assert heads_by_layer(prune_heads(model, ratio=0.5)) == {"0": 2, "1": 2}
    pruned: Any = prune_heads(model, ratio=0.5, ranking="global")
    assert heads_by_layer(pruned) == {"0": 3, "1": 1}
    torch.testing.assert_close(pruned[1].qkv.weight, torch.ones(3 * d, 16))  # head 3 stayed
    floor: Any = prune_heads(model, ratio=0.75, ranking="global", min_heads=2)
    assert heads_by_layer(floor) == {"0": 2, "1": 2}  # no layer below min_heads
    with pytest.raises(ConfigError, match="ranking"):
        prune_heads(model, ratio=0.5, ranking="everywhere")


def test_heads_then_channels_compose() -> None:
    model = _vit()
    pruned: Any = prune_channels(prune_heads(model, ratio=0.5), ratio=0.5)
    dense: Any = model
    for dense_block, block in zip(dense.blocks, pruned.blocks, strict=True):
        assert block.attn.num_heads == 2 and block.attn.qkv.weight.shape == (48, 32)
        assert block.mlp[0].out_features == dense_block.mlp[0].out_features // 2
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_taylor_importance_and_the_registered_technique() -> None:
    data = load_dataset("digits", seed=0)
    model = create_model("vit_small", input_shape=data.input_shape, num_heads=4)
    with pytest.raises(ConfigError, match="needs training data"):
        prune_heads(model, ratio=0.5, importance="taylor")
    config = config_from_dict(
        {"technique": "head_pruning", "ratio": 0.5, "importance": "taylor", "epochs": 1}
    )
    assert config == HeadPruningConfig(ratio=0.5, importance="taylor", epochs=1)
    pruned = compress(model, [config], data=data)
    assert set(heads_by_layer(pruned).values()) == {2}
    assert pruned(data.test.x[:4]).shape == (4, data.num_classes)


def test_bad_requests_say_what_was_wrong() -> None:
    with pytest.raises(ConfigError, match="no slimkit MultiHeadAttention layer"):
        prune_heads(create_model("lenet5", input_shape=(1, 28, 28)), ratio=0.5)
    with pytest.raises(ConfigError, match=r"ratio must be in \[0, 1\)"):
        prune_heads(_vit(), ratio=1.0)
    with pytest.raises(ConfigError, match="min_heads"):
        HeadPruningConfig(min_heads=0)

"""Channel pruning of grouped convolutions, channel shuffles (ShuffleNet) and transformers (MLP
hidden units; the residual stream and the attention heads stay whole): the smaller model computes
what the dense model computes with the removed channels masked, and exports with parity."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.export import export
from slimkit.layers import ChannelShuffle
from slimkit.measure import count_costs
from slimkit.models import create_model
from slimkit.runtime import load_runtime
from slimkit.techniques.prune.dependency import analyze
from slimkit.techniques.prune.structured import (
    apply_channel_selection,
    prune_channels,
    select_channels,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# (name, input shape, builder arguments): small inputs keep the tests fast
ZOO = [
    ("shufflenet_small", (1, 8, 8), {}),
    ("vit_small", (1, 8, 8), {}),
    ("vit_small", (1, 8, 8), {"attention": "linear"}),
    ("sequence_transformer", (1, 1, 16), {}),
    ("sequence_transformer", (3, 4, 4), {"embedding": "full", "attention": "softmax"}),
    ("sequence_transformer", (1, 1, 16), {"embedding": "hashed"}),
]
ZOO_IDS = [f"{n}-{'-'.join(map(str, k.values())) or 'default'}" for n, _, k in ZOO]


def _inputs(shape: tuple[int, ...], count: int = 4) -> torch.Tensor:
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
@pytest.mark.parametrize(("name", "shape", "kwargs"), ZOO, ids=ZOO_IDS)
def test_pruned_model_equals_the_masked_dense_one(
    name: str,
    shape: tuple[int, ...],
    kwargs: dict[str, Any],
    ratio: float,
    randomize_norms: Callable[[nn.Module], nn.Module],
    masked_dense: Callable[..., nn.Module],
) -> None:
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, input_shape=shape, **kwargs))
    pruned = copy.deepcopy(model)
    selections = select_channels(pruned, analyze(model, shape), ratio=ratio)
    assert selections
    apply_channel_selection(pruned, selections)
    x = _inputs(shape)
    torch.testing.assert_close(pruned(x), masked_dense(model, selections)(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "shape", "kwargs"), ZOO, ids=ZOO_IDS)
def test_pruned_model_shrinks_and_exports_with_parity(
    name: str,
    shape: tuple[int, ...],
    kwargs: dict[str, Any],
    tmp_path: Path,
    randomize_norms: Callable[[nn.Module], nn.Module],
) -> None:
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, input_shape=shape, **kwargs))
    pruned = prune_channels(model, ratio=0.5)
    before, after = count_costs(model, shape), count_costs(pruned, shape)
    assert after.macs < before.macs and after.params < before.params
    path = export(pruned, tmp_path / f"{name}.onnx", input_shape=shape).path
    x = _inputs(shape, 3).numpy()
    expected = pruned(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(
        load_runtime("onnxruntime", path).run(x), expected, atol=1e-4, rtol=1e-4
    )


def test_channel_shuffle_maps_the_channels_it_moves(
    randomize_norms: Callable[[nn.Module], nn.Module],
) -> None:
    """The layers after a shuffle lose the positions the shuffle moved the removed channels to.

    The oracle zeroes the removed channels right after the bottleneck's 1x1 convolution and, at
    the depthwise convolution's output, the positions the layer's own ChannelShuffle sends them to
    — computed here, independently of the analysis. Masking the same indices instead (what an
    analysis that ignored the shuffle would remove) gives another output.
    """
    torch.manual_seed(0)
    shape = (1, 8, 8)
    model = randomize_norms(create_model("shufflenet_small", input_shape=shape, groups=2))
    unit: Any = model.get_submodule("features.2")
    width = unit.compress.conv.out_channels  # 16 channels in 2 groups
    group = next(g for g in analyze(model, shape) if g.producers == ["features.2.compress.conv"])
    moved = ChannelShuffle(2)(torch.arange(float(width)).view(1, width, 1, 1)).flatten().long()
    depthwise = next(u for u in group.uses if u.layer == "features.2.depthwise.conv")
    assert depthwise.channels == tuple(moved.tolist())  # position p holds channel moved[p]
    assert len(group.channel_units()) == 4  # i, i + 4, i + 8, i + 12: both 1x1 convs' groups

    pruned = copy.deepcopy(model)
    selections = select_channels(pruned, [group], ratio=0.5)
    ((_, keep),) = selections
    apply_channel_selection(pruned, selections)
    kept = set(keep.tolist())
    assert len(kept) == 8 and len({c % 8 for c in kept}) == 4  # the same indices in both groups
    assert pruned.get_submodule("features.2.expand.conv").in_channels == 8

    def masked(positions: torch.Tensor) -> torch.Tensor:
        dense = copy.deepcopy(model)
        removed = torch.tensor([c not in kept for c in range(width)])
        hooks = [
            dense.get_submodule("features.2.compress").register_forward_hook(
                lambda _m, _i, out: out * ~removed.view(1, -1, 1, 1)
            ),
            dense.get_submodule("features.2.depthwise").register_forward_hook(
                lambda _m, _i, out: out * ~removed[positions].view(1, -1, 1, 1)
            ),
        ]
        try:
            return dense(_inputs(shape))
        finally:
            for hook in hooks:
                hook.remove()

    expected = masked(moved)
    torch.testing.assert_close(pruned(_inputs(shape)), expected, atol=1e-5, rtol=1e-4)
    unshuffled = masked(torch.arange(width))
    assert not torch.allclose(unshuffled, expected, atol=1e-3)


def test_shufflenet_with_4_groups_prunes_its_wide_bottlenecks(
    randomize_norms: Callable[[nn.Module], nn.Module], masked_dense: Callable[..., nn.Module]
) -> None:
    # a bottleneck of 16 channels in 4 groups has one channel per group and shuffle index: any
    # removal would leave the next grouped convolution's groups unequal, so it stays whole
    shape = (1, 8, 8)
    model = randomize_norms(create_model("shufflenet_small", input_shape=shape, groups=4))
    groups = {tuple(g.producers): g for g in analyze(model, shape)}
    for index, width, units in [(1, 16, 1), (2, 16, 1), (3, 32, 2), (4, 32, 2)]:
        group = groups[(f"features.{index}.compress.conv",)]
        assert (group.size, len(group.channel_units())) == (width, units)
        assert ("tie all its channels together" in group.pinned) == (units == 1)
    pruned = copy.deepcopy(model)
    selections = select_channels(pruned, list(groups.values()), ratio=0.5)
    assert [g.producers for g, _ in selections] == [
        ["features.3.compress.conv"],
        ["features.4.compress.conv"],
    ]
    apply_channel_selection(pruned, selections)
    x = _inputs(shape)
    torch.testing.assert_close(pruned(x), masked_dense(model, selections)(x), atol=1e-5, rtol=1e-4)


class GroupedNet(nn.Module):
    """Grouped 1x1 convolutions of 2 and then 4 groups over the same channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.mix = nn.Conv2d(16, 16, 1, groups=2)
        self.bn = nn.BatchNorm2d(16)
        self.reduce = nn.Conv2d(16, 8, 1, groups=4)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.reduce(torch.relu(self.bn(self.mix(x))))
        return self.head(x.mean((2, 3)))


def test_grouped_convolutions_lose_the_same_channels_in_every_group(
    randomize_norms: Callable[[nn.Module], nn.Module], masked_dense: Callable[..., nn.Module]
) -> None:
    model = randomize_norms(GroupedNet())
    groups = {tuple(g.producers): g for g in analyze(model, (1, 6, 6))}
    assert groups[("stem",)].channel_units()[0] == (0, 8)  # read by 2 groups of 8
    assert groups[("mix",)].channel_units()[0] == (0, 4, 8, 12)  # made by 2, read by 4 groups
    pruned = copy.deepcopy(model)
    selections = select_channels(pruned, list(groups.values()), ratio=0.5)
    apply_channel_selection(pruned, selections)
    for name, module in pruned.named_modules():
        if isinstance(module, nn.Conv2d):  # whole groups of equal size remain
            assert module.in_channels % module.groups == 0, name
            assert module.out_channels % module.groups == 0, name
    assert (pruned.mix.in_channels, pruned.mix.out_channels, pruned.reduce.in_channels) == (8, 8, 8)
    x = _inputs((1, 6, 6))
    torch.testing.assert_close(pruned(x), masked_dense(model, selections)(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["vit_small", "sequence_transformer"])
def test_transformer_prunes_mlp_hidden_units_and_keeps_the_stream(name: str) -> None:
    shape = (1, 8, 8)
    model = create_model(name, input_shape=shape)
    pruned = prune_channels(model, ratio=0.5)
    dense_blocks: Any = model.get_submodule("blocks")
    blocks: Any = pruned.get_submodule("blocks")
    for dense_block, block in zip(dense_blocks, blocks, strict=True):
        hidden = dense_block.mlp[0].out_features
        assert block.mlp[0].out_features == block.mlp[2].in_features == hidden // 2
        # the residual stream and the attention heads are untouched
        assert block.norm1.normalized_shape == block.norm2.normalized_shape == (32,)
        assert block.attn.qkv.weight.shape == dense_block.attn.qkv.weight.shape == (96, 32)
        assert block.attn.proj.weight.shape == (32, 32) and block.mlp[2].out_features == 32
    position: Any = pruned.get_submodule("position")
    classifier: Any = pruned.get_submodule("classifier")
    assert position.weight.shape[-1] == 32 and classifier.in_features == 32
    assert pruned(_inputs(shape)).shape == (4, 10)


def test_factorized_embedding_width_is_pruned() -> None:
    model = create_model("sequence_transformer", input_shape=(1, 1, 16), embedding_dim=8)
    pruned: Any = prune_channels(model, ratio=0.5)
    assert pruned.embedding.table.weight.shape == (256, 4)
    assert pruned.embedding.projection.weight.shape == (32, 4)


class PartlyUnsupported(nn.Module):
    """``torch.roll`` over the channels of ``second``; a literal view size after ``third``."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 8, 3)
        self.second = nn.Conv2d(8, 8, 3)
        self.third = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.roll(self.second(torch.relu(self.first(x))), 1, dims=1)
        return self.head(self.third(x).view(-1, 64))  # 64 = 4 channels x 4 x 4: not prunable


def test_unsupported_patterns_freeze_their_channels_only() -> None:
    model = PartlyUnsupported().eval()
    groups = {tuple(g.producers): g for g in analyze(model, (1, 8, 8))}
    assert "'roll' (roll) is not supported" in groups[("second",)].pinned
    assert "reshape 'view'" in groups[("third",)].pinned
    pruned: Any = prune_channels(model, ratio=0.5, input_shape=(1, 8, 8))
    assert (pruned.first.out_channels, pruned.second.out_channels) == (4, 8)
    assert pruned.third.out_channels == 4
    assert pruned(_inputs((1, 8, 8))).shape == (4, 10)

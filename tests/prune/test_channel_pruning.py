"""Structured channel pruning: the smaller model computes what the masked dense model computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.measure import count_costs
from slimkit.models import create_model
from slimkit.runtime import load_runtime
from slimkit.techniques import compress
from slimkit.techniques.prune.dependency import analyze
from slimkit.techniques.prune.structured import (
    ChannelPruningConfig,
    apply_channel_selection,
    prune_channels,
    select_channels,
)
from slimkit.train import evaluate


class Branchy(nn.Module):
    """Residual add, depthwise conv, squeeze-and-excitation, concatenation, flatten → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.excite = nn.Conv2d(4, 8, 1)
        self.side = nn.Conv2d(8, 6, 1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear((8 + 6) * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.body(x) + x)  # coupled: stem and body drop the same channels
        y = self.depthwise(x)
        scale = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
        y = y * scale
        z = torch.cat([y, self.side(x)], dim=1)
        return self.head(torch.flatten(self.pool(z), 1))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale"])
def test_pruned_branchy_net_equals_the_masked_dense_one(
    ratio: float,
    importance: str,
    randomize_norms: Callable[[nn.Module], nn.Module],
    masked_dense: Callable[..., nn.Module],
) -> None:
    model = randomize_norms(Branchy())
    groups = analyze(model, (1, 8, 8))
    if importance == "bn_scale":  # only groups with a batch norm can be ranked by it
        groups = [g for g in groups if any(u.role == "batch_norm" for u in g.uses)]
    import copy

    pruned = copy.deepcopy(model)
    selections = select_channels(pruned, groups, ratio=ratio, importance=importance)
    assert selections
    apply_channel_selection(pruned, selections)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(pruned(x), masked_dense(model, selections)(x), atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_dependency_groups_of_the_branchy_net(
    randomize_norms: Callable[[nn.Module], nn.Module],
) -> None:
    groups = {tuple(sorted(g.producers)): g for g in analyze(randomize_norms(Branchy()), (1, 8, 8))}
    coupled = groups[("body.0", "excite", "stem.0")]  # residual add + SE multiply join them
    roles = {(u.layer, u.role) for u in coupled.uses}
    assert ("depthwise", "depthwise") in roles and ("stem.1", "batch_norm") in roles
    head = next(u for u in coupled.uses if u.layer == "head")
    assert head.expand == 16 and head.offset == 0  # flatten: 4x4 features per channel
    side_head = next(u for u in groups[("side",)].uses if u.layer == "head")
    assert side_head.offset == 8  # after the 8 coupled channels in the concatenation
    assert not groups[("head",)].prunable  # the logits


@pytest.mark.parametrize(
    "name", ["lenet5", "mobilenet_v1_small", "mobilenet_v2_small", "lenet300_100"]
)
def test_zoo_models_shrink_and_export(
    name: str, tmp_path: Path, randomize_norms: Callable[[nn.Module], nn.Module]
) -> None:
    model = randomize_norms(create_model(name, input_shape=(1, 28, 28)))
    pruned = prune_channels(model, ratio=0.5)
    before, after = count_costs(model, (1, 28, 28)), count_costs(pruned, (1, 28, 28))
    assert after.macs < 0.5 * before.macs and after.params < before.params
    path = export(pruned, tmp_path / f"{name}.onnx", input_shape=(1, 28, 28)).path
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    expected = pruned(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(load_runtime("onnxruntime", path).run(x), expected, atol=1e-4)


def test_compress_prunes_and_fine_tunes(trained_lenet: nn.Module, digits: Dataset) -> None:
    config = ChannelPruningConfig(ratio=0.5, importance="taylor", epochs=10, lr=3e-3)
    pruned = compress(trained_lenet, [config], data=digits)
    assert (
        count_costs(pruned, digits.input_shape).macs
        < count_costs(trained_lenet, digits.input_shape).macs
    )
    assert evaluate(pruned, digits.test)[1] > evaluate(trained_lenet, digits.test)[1] - 0.05


class Rolled(nn.Module):
    """Its only hidden channels go through ``torch.roll``, which the analysis does not follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.roll(self.conv(x), 1, dims=1).mean((2, 3)))


def test_unsupported_pattern_names_the_layer() -> None:
    # an unsupported op freezes the channels it touches (it used to stop the analysis: ShuffleNet's
    # transpose, now followed); with nothing left to prune, the error names the layer
    with pytest.raises(
        ConfigError, match=r"layer 'roll' \(roll\) is not supported by channel pruning"
    ):
        prune_channels(Rolled(), ratio=0.5, input_shape=(1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.0}, "ratio must be in"),
        ({"importance": "random"}, "importance must be one of"),
        ({"round_to": 0}, "round_to"),
    ],
)
def test_bad_config(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChannelPruningConfig(**kwargs)  # type: ignore[arg-type]


def test_scope_that_matches_nothing() -> None:
    with pytest.raises(ConfigError, match="matches no prunable layer"):
        prune_channels(create_model("lenet5"), ratio=0.5, scope=["decoder.*"])


def test_bn_scale_without_batch_norm() -> None:
    with pytest.raises(ConfigError, match="needs a batch norm"):
        prune_channels(create_model("lenet5"), ratio=0.5, importance="bn_scale")

"""Every layer exports to ONNX with the library's exporter and runs in ONNX Runtime as in PyTorch.

Layers are grouped into three small models (one export each) to keep the suite fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.export import export
from slimkit.layers import (
    ChannelShuffle,
    ConvBNAct,
    DepthwiseSeparableConv,
    FactorizedEmbedding,
    HardSigmoid,
    HashedEmbedding,
    InvertedResidual,
    PatchEmbedding,
    PositionEmbedding,
    ShuffleUnit,
    SqueezeExcite,
    TransformerBlock,
)
from slimkit.runtime import load_runtime


class _ConvLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(2, 8, activation="hardswish"),
            DepthwiseSeparableConv(8, 16, stride=2),
            InvertedResidual(16, 16, expand_ratio=4, activation="hardswish", se_ratio=0.25),
            InvertedResidual(16, 24, stride=2, expand_ratio=6),
            ShuffleUnit(24, 24, groups=3),
            ShuffleUnit(24, 48, groups=3, stride=2),
            ChannelShuffle(4),
            SqueezeExcite(48, 8, gate="hardsigmoid"),
            HardSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


class _AttentionLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patches = PatchEmbedding(2, 2, 16)
        self.position = PositionEmbedding(16, 16)
        self.softmax = TransformerBlock(16, 4, attention="softmax")
        self.linear = TransformerBlock(16, 2, attention="linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.softmax(self.position(self.patches(x)))).flatten(1)


class _EmbeddingLayers(nn.Module):
    """Quantizes the input into ids, as the sequence model does, and embeds them two ways."""

    def __init__(self) -> None:
        super().__init__()
        self.factorized = FactorizedEmbedding(256, 4, 8)
        self.hashed = HashedEmbedding(31, 8, num_hashes=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = torch.round(x.clamp(0, 1) * 255).to(torch.int64).flatten(1)  # (N, L)
        return torch.cat([self.factorized(ids), self.hashed(ids * 1009)], dim=-1).flatten(1)


def _train_statistics(model: nn.Module, shape: tuple[int, ...]) -> None:
    """A few training-mode passes so that batch norm's running statistics are not the defaults."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape))
    model.eval()


@pytest.mark.parametrize("layers", [_ConvLayers, _AttentionLayers, _EmbeddingLayers])
def test_layers_export_with_parity(layers: type[nn.Module], tmp_path: Path) -> None:
    shape = (2, 8, 8)
    model = layers()
    _train_statistics(model, shape)
    path = export(model, tmp_path / "layers.onnx", input_shape=shape).path
    runner = load_runtime("onnxruntime", path)
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()
    assert expected.std() > 0
    np.testing.assert_allclose(runner.run(x), expected, atol=1e-5, rtol=1e-4)

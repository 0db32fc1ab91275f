"""MobileNet-v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", arXiv:1704.04861): a stem convolution, a stack of depthwise-separable
blocks, global average pooling and one fully connected classifier.

Two registered shapes share one class:

- ``mobilenet_v1``: the paper's 28-layer network (Table 1) for 224x224 inputs; with
  ``width_multiplier`` α and the input resolution it reproduces Tables 6 and 7 (the counter gives
  568,740,352 multiply-adds and 4,210,088 parameters without batch norm for 1.0-224).
- ``mobilenet_v1_small``: the same recipe scaled for 28x28 (MNIST) and 8x8 (digits) inputs.

The width multiplier scales every layer's channels (``max(min_channels, int(c · α))``, the rule of
the TensorFlow reference, where it is called ``depth_multiplier``); ``depth_multiplier`` here
scales the number of blocks in each stage (``ceil(n · d)``, as in EfficientNet); the resolution
multiplier is the input shape itself. On inputs smaller than 16 pixels the stem keeps stride 1, so
small images are not reduced to nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from slimkit.layers import ConvBNAct, DepthwiseSeparableConv
from slimkit.models.registry import register_model

# (output channels, stride of the first block, blocks) per stage, after the stem
PAPER_STAGES: tuple[tuple[int, int, int], ...] = (
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 2, 6),
    (1024, 2, 2),
)
# for 28x28: maps of 14 (stem), 7, 7, 4, 2; cheap wide layers at low resolution, 393k MACs at α = 1
SMALL_STAGES: tuple[tuple[int, int, int], ...] = ((32, 2, 1), (48, 1, 1), (128, 2, 1), (256, 2, 1))


def check_multiplier(name: str, value: float) -> float:
    """Raise ``ValueError`` unless ``value`` is a number > 0; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def check_dropout(value: float) -> float:
    """Raise ``ValueError`` unless ``value`` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout must be in [0, 1); got {value!r}")
    return float(value)


class PooledClassifierNet(nn.Module):
    """What the MobileNets share after their feature stages: global average pool → dropout →
    linear. Subclasses build ``self.features`` and call :meth:`build_head`."""

    features: nn.Sequential

    def build_head(self, channels: int, num_classes: int, dropout: float) -> None:
        """The head on ``channels`` features (attribute names kept stable for checkpoints)."""
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(check_dropout(dropout)) if dropout > 0 else None
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> features (N, c, H/s, W/s) -> pooled (N, c) -> logits (N, classes)
        x = self.pool(self.features(x)).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)


class MobileNetV1(PooledClassifierNet):
    """Stem conv 3x3 → depthwise-separable stages → global average pool → dropout → linear.

    Args:
        input_shape: (C, H, W) of the input.
        num_classes: number of output logits.
        stem_channels: channels of the stem convolution before the width multiplier.
        stages: ``(channels, stride, blocks)`` per stage before the multipliers.
        width_multiplier: α, scales every layer's channels.
        depth_multiplier: scales the number of blocks per stage (rounded up).
        min_channels: no layer gets fewer channels than this.
        dropout: dropout probability before the classifier.
        stem_stride: stride of the stem; ``None`` takes 2 on inputs of 16 pixels or more, else 1.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        stem_channels: int = 32,
        stages: Sequence[tuple[int, int, int]] = PAPER_STAGES,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        min_channels: int = 8,
        dropout: float = 0.0,
        stem_stride: int | None = None,
    ) -> None:
        super().__init__()
        alpha = check_multiplier("width_multiplier", width_multiplier)
        depth = check_multiplier("depth_multiplier", depth_multiplier)

        def width(channels: int) -> int:
            return max(min_channels, int(channels * alpha))

        in_channels, height, wide = input_shape
        if stem_stride is None:
            stem_stride = 2 if min(height, wide) >= 16 else 1
        channels = width(stem_channels)
        blocks: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride)]
        for stage_channels, stride, repeats in stages:
            for index in range(max(1, math.ceil(repeats * depth))):
                out = width(stage_channels)
                blocks.append(DepthwiseSeparableConv(channels, out, stride if index == 0 else 1))
                channels = out
        self.features = nn.Sequential(*blocks)
        self.build_head(channels, num_classes, dropout)


@register_model(
    "mobilenet_v1",
    "MobileNet-v1 for 224x224 inputs (Howard et al. 2017); width multiplier α (for counting)",
)
def mobilenet_v1(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width_multiplier: float = 1.0,
    depth_multiplier: float = 1.0,
    dropout: float = 0.0,
) -> nn.Module:
    """MobileNet-v1 as in the paper's Table 1: 1 + 13 x 2 convolutions and a classifier."""
    return MobileNetV1(
        input_shape,
        num_classes,
        32,
        PAPER_STAGES,
        width_multiplier,
        depth_multiplier,
        dropout=dropout,
    )


@register_model(
    "mobilenet_v1_small",
    "MobileNet-v1-style CNN for 28x28 and 8x8 inputs: depthwise-separable blocks, α and depth",
)
def mobilenet_v1_small(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width_multiplier: float = 1.0,
    depth_multiplier: float = 1.0,
    dropout: float = 0.0,
) -> nn.Module:
    """MobileNet-v1-style CNN for small images: stem 16, blocks of 32, 48, 128, 256 at α = 1.

    On 28x28 the feature maps are 14x14 (stem), 7, 7, 4 and 2; on 8x8 they are 8, 4, 4, 2 and 1.
    Most blocks sit at low resolution, where width is cheap: 393,200 MACs at α = 1, fewer than
    LeNet-5's 416,520.
    """
    return MobileNetV1(
        input_shape,
        num_classes,
        16,
        SMALL_STAGES,
        width_multiplier,
        depth_multiplier,
        min_channels=4,
        dropout=dropout,
    )

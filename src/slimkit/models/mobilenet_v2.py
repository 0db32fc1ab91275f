"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018): a stem convolution, stages of inverted residual blocks with linear bottlenecks, a 1x1
convolution to a wide feature vector, global average pooling and a linear classifier.

- ``mobilenet_v2``: the paper's network (Table 2) for 224x224 inputs; 1.0-224 counts about 300M
  multiply-adds and 3.4M parameters, as the paper reports (see ``docs/architectures.md``).
- ``mobilenet_v2_small``: the same recipe scaled for 28x28 (MNIST) and 8x8 (digits) inputs.

Channels follow the reference code's rule: ``make_divisible(c · α, 8)``; the last 1x1 convolution
keeps its width for α < 1. ``depth_multiplier`` scales the blocks per stage (rounded up);
``activation`` and ``se_ratio`` turn the blocks into MobileNetV3-style ones (hard-swish,
squeeze-and-excitation with a hard-sigmoid gate; Howard et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from slimkit.layers import ConvBNAct, InvertedResidual, make_divisible
from slimkit.models.mobilenet_v1 import PooledClassifierNet, check_multiplier
from slimkit.models.registry import register_model

# (expansion t, output channels c, blocks n, stride of the first block s), as in Table 2
PAPER_SETTINGS: tuple[tuple[float, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
SMALL_SETTINGS: tuple[tuple[float, int, int, int], ...] = (
    (1, 8, 1, 1),
    (4, 16, 2, 2),
    (4, 24, 2, 2),
    (4, 32, 1, 1),
)


class MobileNetV2(PooledClassifierNet):
    """Stem conv 3x3 → inverted residual stages → 1x1 conv → global average pool → linear.

    Args:
        input_shape: (C, H, W) of the input.
        num_classes: number of output logits.
        stem_channels: channels of the stem convolution before the width multiplier.
        settings: ``(t, c, n, s)`` per stage before the multipliers.
        last_channels: width of the final 1x1 convolution.
        width_multiplier: α, scales every layer's channels (rounded to multiples of ``divisor``).
        depth_multiplier: scales the number of blocks per stage (rounded up).
        divisor: channel counts are rounded to multiples of this.
        activation: activation of the blocks, stem and last convolution.
        se_ratio: squeeze-excite in every block with this bottleneck ratio, or ``None``.
        dropout: dropout probability before the classifier.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        stem_channels: int = 32,
        settings: Sequence[tuple[float, int, int, int]] = PAPER_SETTINGS,
        last_channels: int = 1280,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        divisor: int = 8,
        activation: str = "relu6",
        se_ratio: float | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        alpha = check_multiplier("width_multiplier", width_multiplier)
        depth = check_multiplier("depth_multiplier", depth_multiplier)
        in_channels, height, wide = input_shape
        stem_stride = 2 if min(height, wide) >= 16 else 1
        channels = make_divisible(stem_channels * alpha, divisor)
        blocks: list[nn.Module] = [
            ConvBNAct(in_channels, channels, 3, stem_stride, activation=activation)
        ]
        for expand_ratio, stage_channels, repeats, stride in settings:
            out = make_divisible(stage_channels * alpha, divisor)
            for index in range(max(1, math.ceil(repeats * depth))):
                blocks.append(
                    InvertedResidual(
                        channels,
                        out,
                        stride if index == 0 else 1,
                        expand_ratio,
                        activation=activation,
                        se_ratio=se_ratio,
                    )
                )
                channels = out
        last = make_divisible(last_channels * max(1.0, alpha), divisor)
        blocks.append(ConvBNAct(channels, last, 1, activation=activation))
        self.features = nn.Sequential(*blocks)
        self.build_head(last, num_classes, dropout)


@register_model(
    "mobilenet_v2",
    "MobileNetV2 for 224x224 inputs (Sandler et al. 2018); width multiplier α (for counting)",
)
def mobilenet_v2(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width_multiplier: float = 1.0,
    depth_multiplier: float = 1.0,
    dropout: float = 0.0,
) -> nn.Module:
    """MobileNetV2 as in the paper's Table 2: 17 inverted residual blocks, last conv 1280."""
    return MobileNetV2(
        input_shape,
        num_classes,
        32,
        PAPER_SETTINGS,
        1280,
        width_multiplier,
        depth_multiplier,
        dropout=dropout,
    )


@register_model(
    "mobilenet_v2_small",
    "MobileNetV2-style CNN for 28x28 and 8x8 inputs: inverted residuals, optional SE/hard-swish",
)
def mobilenet_v2_small(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width_multiplier: float = 1.0,
    depth_multiplier: float = 1.0,
    activation: str = "relu6",
    se_ratio: float | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """MobileNetV2-style CNN for small images: stem 16, stages 8, 16 (x2), 24 (x2), 32; last 128.

    ``activation="hardswish"`` with ``se_ratio=0.25`` gives MobileNetV3-style blocks.
    """
    return MobileNetV2(
        input_shape,
        num_classes,
        16,
        SMALL_SETTINGS,
        128,
        width_multiplier,
        depth_multiplier,
        divisor=4,
        activation=activation,
        se_ratio=se_ratio,
        dropout=dropout,
    )

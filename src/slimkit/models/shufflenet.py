"""ShuffleNet-style CNN (Zhang et al. 2018, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018) sized for 28x28 and 8x8 inputs.

A stem convolution, then stages of :class:`~slimkit.layers.ShuffleUnit` (grouped 1x1 convolutions
with a channel shuffle between them and a depthwise 3x3); the first unit of each stage halves the
resolution and concatenates an average-pooled shortcut. As in the paper, the first unit of the
first stage uses a dense first 1x1 convolution because its input is narrow.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimkit.layers import ConvBNAct, ShuffleUnit, make_divisible
from slimkit.models.mobilenet_v1 import check_multiplier
from slimkit.models.registry import register_model

# (output channels, units) per stage; the first unit of each stage has stride 2
SMALL_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2))


class ShuffleNet(nn.Module):
    """Stem conv 3x3 → shuffle-unit stages → global average pool → linear.

    Args:
        input_shape: (C, H, W) of the input.
        num_classes: number of output logits.
        groups: groups ``g`` of the grouped 1x1 convolutions.
        stem_channels: stem width before the width multiplier.
        stages: ``(channels, units)`` per stage before the multipliers.
        width_multiplier: scales every width (rounded to multiples of ``4 g``).
        depth_multiplier: scales the units per stage (rounded up).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        groups: int = 2,
        stem_channels: int = 16,
        stages: tuple[tuple[int, int], ...] = SMALL_STAGES,
        width_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be an int >= 1; got {groups!r}")
        alpha = check_multiplier("width_multiplier", width_multiplier)
        depth = check_multiplier("depth_multiplier", depth_multiplier)
        in_channels, height, width = input_shape
        channels = make_divisible(stem_channels * alpha, groups)
        stem_stride = 2 if min(height, width) >= 16 else 1
        blocks: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stem_stride)]
        for stage_index, (stage_channels, units) in enumerate(stages):
            # the stride-2 unit concatenates, so its branch adds (out - in) channels
            out = max(channels + 4 * groups, make_divisible(stage_channels * alpha, 4 * groups))
            for index in range(max(1, math.ceil(units * depth))):
                first = index == 0
                blocks.append(
                    ShuffleUnit(
                        channels,
                        out,
                        groups,
                        stride=2 if first else 1,
                        group_first_conv=not (first and stage_index == 0),
                    )
                )
                channels = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> features (N, c, H/8, W/8) -> pooled (N, c) -> logits (N, classes)
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model(
    "shufflenet_small",
    "ShuffleNet-style CNN for 28x28 and 8x8 inputs: grouped 1x1 convs with channel shuffle",
)
def shufflenet_small(
    input_shape: tuple[int, int, int],
    num_classes: int,
    groups: int = 2,
    width_multiplier: float = 1.0,
    depth_multiplier: float = 1.0,
) -> nn.Module:
    """ShuffleNet-style CNN: stem 16, stages 64 and 128 of two units each at α = 1."""
    return ShuffleNet(
        input_shape,
        num_classes,
        groups,
        16,
        SMALL_STAGES,
        width_multiplier,
        depth_multiplier,
    )

"""The inverted residual with linear bottleneck (Sandler et al. 2018, "MobileNetV2: Inverted
Residuals and Linear Bottlenecks", CVPR 2018).

A 1x1 convolution expands ``in_channels`` by ``expand_ratio`` (t), a depthwise 3x3 convolution
filters the wide tensor, and a 1x1 convolution projects it back to a narrow bottleneck with no
activation (the "linear bottleneck": a ReLU there would destroy information in few channels). The
shortcut joins the narrow ends when the stride is 1 and the widths agree. Optional
squeeze-and-excitation on the expanded tensor and hard-swish make it MobileNetV3's block (Howard
et al. 2019).

Example:
    >>> import torch
    >>> block = InvertedResidual(16, 16, stride=1, expand_ratio=6)
    >>> block.use_residual, block(torch.zeros(1, 16, 7, 7)).shape
    (True, torch.Size([1, 16, 7, 7]))
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers.conv import ConvBNAct, check_channels, make_divisible
from slimkit.layers.squeeze_excite import SqueezeExcite


class InvertedResidual(nn.Module):
    """Expand 1x1 → depthwise k x k → (squeeze-excite) → project 1x1 (linear), plus shortcut.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise convolution (1 or 2).
        expand_ratio: expansion factor t; with t = 1 the expansion convolution is left out.
        kernel_size: depthwise kernel size.
        activation: activation after the expansion and the depthwise convolution (ReLU6 in
            MobileNetV2, hard-swish in parts of MobileNetV3).
        se_ratio: squeeze-excite bottleneck as a fraction of the expanded width (0.25 in
            MobileNetV3), or ``None`` for no squeeze-excite.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 6.0,
        kernel_size: int = 3,
        activation: str = "relu6",
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        check_channels(in_channels=in_channels, out_channels=out_channels)
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2; got {stride!r}")
        if not expand_ratio >= 1:
            raise ConfigError(f"expand_ratio must be a number >= 1; got {expand_ratio!r}")
        if se_ratio is not None and not 0 < se_ratio <= 1:
            raise ConfigError(f"se_ratio must be None or in (0, 1]; got {se_ratio!r}")
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = (
            ConvBNAct(in_channels, hidden, 1, activation=activation)
            if hidden != in_channels
            else None
        )
        self.depthwise = ConvBNAct(
            hidden, hidden, kernel_size, stride, groups=hidden, activation=activation
        )
        self.se = (
            SqueezeExcite(hidden, make_divisible(hidden * se_ratio), gate="hardsigmoid")
            if se_ratio is not None
            else None
        )
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_in, H, W) -> expand (N, t*C_in, H, W) -> depthwise (N, t*C_in, H/s, W/s)
        # -> project (N, C_out, H/s, W/s), plus x when the shapes agree
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return x + out if self.use_residual else out

"""Convolution units: conv + batch norm + activation, and the depthwise-separable convolution.

The depthwise-separable convolution of MobileNets (Howard et al. 2017, "MobileNets: Efficient
Convolutional Neural Networks for Mobile Vision Applications", arXiv:1704.04861) factorizes a
standard ``D_k x D_k`` convolution from ``M`` to ``N`` channels into a depthwise ``D_k x D_k``
convolution (one filter per input channel) and a pointwise ``1 x 1`` convolution. On a
``D_F x D_F`` output it costs ``D_k² M D_F² + M N D_F²`` multiply-adds instead of
``D_k² M N D_F²``, a ratio of ``1/N + 1/D_k²`` (eq. 5 of the paper).

Example:
    >>> import torch
    >>> block = DepthwiseSeparableConv(16, 32, stride=2)
    >>> block(torch.zeros(1, 16, 14, 14)).shape
    torch.Size([1, 32, 7, 7])
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers.activations import make_activation


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never losing over 10%.

    The rule of the MobileNetV2 reference code, used for width multipliers.

    Example:
        >>> make_divisible(32 * 0.35), make_divisible(1280 * 0.75)
        (16, 960)
    """
    if divisor < 1:
        raise ConfigError(f"divisor must be an int >= 1; got {divisor!r}")
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # do not round down by more than 10%
        rounded += divisor
    return rounded


def check_channels(**channels: int) -> None:
    """Raise :class:`ConfigError` unless every named channel count is an int >= 1."""
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1; got {value!r}")


class ConvBNAct(nn.Module):
    """``Conv2d`` (no bias, "same" padding) → ``BatchNorm2d`` → activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (odd).
        stride: convolution stride.
        groups: convolution groups (``in_channels`` for a depthwise convolution).
        activation: a name from :data:`slimkit.layers.ACTIVATIONS`, or ``None`` for a linear unit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "relu",
    ) -> None:
        super().__init__()
        check_channels(in_channels=in_channels, out_channels=out_channels)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be an odd int >= 1; got {kernel_size!r}")
        if stride < 1:
            raise ConfigError(f"stride must be an int >= 1; got {stride!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"groups must divide in_channels ({in_channels}) and out_channels "
                f"({out_channels}); got {groups!r}"
            )
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation) if activation is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))
        x = self.bn(self.conv(x))
        return x if self.act is None else self.act(x)


class DepthwiseSeparableConv(nn.Module):
    """MobileNet-v1 block: depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU.

    Args:
        in_channels: input channels ``M``.
        out_channels: output channels ``N``.
        stride: stride of the depthwise convolution.
        kernel_size: depthwise kernel size ``D_k``.
        activation: activation after each of the two convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(
            in_channels, in_channels, kernel_size, stride, groups=in_channels, activation=activation
        )
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, M, H, W) -> depthwise (N, M, H/s, W/s) -> pointwise (N, N_out, H/s, W/s)
        return self.pointwise(self.depthwise(x))

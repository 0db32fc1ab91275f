"""Grouped convolutions with channel shuffle: the ShuffleNet unit (Zhang et al. 2018,
"ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", CVPR 2018).

A 1x1 convolution in ``g`` groups costs ``1/g`` of a dense one, but each group then only sees its
own channels. A channel shuffle (reshape to ``(g, C/g)``, transpose, flatten) between two grouped
convolutions lets information cross the groups again, at no arithmetic cost.

Example:
    >>> import torch
    >>> ChannelShuffle(2)(torch.arange(4.0).view(1, 4, 1, 1)).flatten().tolist()
    [0.0, 2.0, 1.0, 3.0]
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers.conv import ConvBNAct, check_channels


class ChannelShuffle(nn.Module):
    """Interleave the channels of ``groups`` groups: channel ``g * (C/g) + i`` moves to
    ``i * groups + g``.

    Args:
        groups: number of groups the channels are split into (must divide the channel count).
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        check_channels(groups=groups)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, g, C/g, H, W) -> (N, C/g, g, H, W) -> (N, C, H, W)
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet unit: group conv 1x1 → shuffle → depthwise 3x3 → group conv 1x1, plus shortcut.

    With stride 1 the branch is added to the input (``in_channels == out_channels``); with stride 2
    it is concatenated with a 3x3 average pool of the input, so the branch produces
    ``out_channels - in_channels`` channels. The bottleneck is a quarter of ``out_channels`` as in
    the paper; ReLU follows the join.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        groups: groups of the two 1x1 convolutions (``g``); must divide the widths it splits.
        stride: 1 (residual add) or 2 (downsample and concatenate).
        group_first_conv: use groups in the first 1x1 convolution (the paper uses a dense one in
            the first unit, whose input is narrow).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 2,
        stride: int = 1,
        group_first_conv: bool = True,
    ) -> None:
        super().__init__()
        check_channels(in_channels=in_channels, out_channels=out_channels, groups=groups)
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2; got {stride!r}")
        if stride == 1 and in_channels != out_channels:
            raise ConfigError(
                f"a stride-1 shuffle unit needs in_channels == out_channels; got {in_channels} "
                f"and {out_channels}"
            )
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        bottleneck = max(groups, out_channels // 4 // groups * groups)
        first_groups = groups if group_first_conv else 1
        if branch_out < 1 or branch_out % groups or in_channels % first_groups:
            raise ConfigError(
                f"shuffle unit {in_channels}->{out_channels} (stride {stride}) needs widths "
                f"divisible by groups={groups}; choose widths that are multiples of {groups}"
            )
        self.stride = stride
        self.compress = ConvBNAct(in_channels, bottleneck, 1, groups=first_groups)
        self.shuffle = ChannelShuffle(groups)
        self.depthwise = ConvBNAct(
            bottleneck, bottleneck, 3, stride, groups=bottleneck, activation=None
        )
        self.expand = ConvBNAct(bottleneck, branch_out, 1, groups=groups, activation=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_in, H, W) -> bottleneck (N, B, H, W) -> (N, B, H/s, W/s) -> (N, C_out, H/s, W/s)
        out = self.expand(self.depthwise(self.shuffle(self.compress(x))))
        if self.shortcut is None:
            return self.act(x + out)
        return self.act(torch.cat([self.shortcut(x), out], dim=1))

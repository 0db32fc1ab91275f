"""Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", CVPR 2018).

Global average pooling "squeezes" each channel to one value; two 1x1 convolutions (a bottleneck of
``squeeze_channels``) and a gate turn these into per-channel weights that rescale the input.
MobileNetV3 (Howard et al. 2019) uses it inside inverted residuals with a hard-sigmoid gate.

Example:
    >>> import torch
    >>> SqueezeExcite(16, 4)(torch.ones(2, 16, 5, 5)).shape
    torch.Size([2, 16, 5, 5])
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import check_choice
from slimkit.layers.activations import make_activation
from slimkit.layers.conv import check_channels


class SqueezeExcite(nn.Module):
    """``x * gate(fc2(act(fc1(mean_hw(x)))))`` with 1x1 convolutions as the two FC layers.

    Args:
        channels: channels of the input (and output).
        squeeze_channels: width of the bottleneck (``channels / r`` in the paper, r = 16; 4 in
            MobileNetV3).
        activation: activation between the two layers.
        gate: ``"sigmoid"`` (the paper) or ``"hardsigmoid"`` (MobileNetV3).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: str = "relu",
        gate: str = "sigmoid",
    ) -> None:
        super().__init__()
        check_channels(channels=channels, squeeze_channels=squeeze_channels)
        check_choice("gate", gate, ("sigmoid", "hardsigmoid"))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = make_activation(activation)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) -> scale (N, C, 1, 1) -> (N, C, H, W)
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
        return x * scale

"""Small models that exercise every quantized op: BN, residual add, depthwise, pooling."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


class ResidualNet(nn.Module):
    """conv-bn-relu → residual block (conv-bn + skip, relu) → depthwise → pools → linear."""

    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        )
        self.relu = nn.ReLU()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.relu6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.relu(self.block(x) + x)
        x = self.relu6(self.depthwise(x))
        x = self.avg(self.pool(x))
        return self.head(x)


@pytest.fixture
def residual_net(randomize_batch_norms: Callable[..., nn.Module]) -> nn.Module:
    """A ResidualNet with seeded weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    return randomize_batch_norms(ResidualNet()).eval()


@pytest.fixture
def plain_residual_net() -> nn.Module:
    """A ResidualNet with freshly initialised batch norms, in eval mode."""
    torch.manual_seed(0)
    return ResidualNet().eval()

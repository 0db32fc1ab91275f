"""A user's own model for ``recipes/user_model.yaml``: any function that returns an nn.Module.

slimkit calls it with ``input_shape`` and ``num_classes`` when it takes them, plus the recipe's
``args``. Run from the repository root: ``slimkit optimize recipes/user_model.yaml``.
"""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, int, int], num_classes: int, width: int = 16) -> nn.Module:
    """A small CNN: two 3x3 conv blocks and a linear classifier."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )

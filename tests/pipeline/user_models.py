"""Model functions for the recipe tests (imported by name, as a user's module would be)."""

from __future__ import annotations

from torch import nn


def tiny_cnn(input_shape: tuple[int, int, int], num_classes: int, width: int = 4) -> nn.Module:
    channels, height, width_px = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * height * width_px, num_classes),
    )


def not_a_model() -> str:
    return "nope"

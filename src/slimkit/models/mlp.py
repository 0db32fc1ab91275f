"""Multi-layer perceptrons: the plain MLP and LeNet-300-100 (LeCun et al. 1998).

LeNet-300-100 is the fully connected network of the MNIST paper and of the Deep Compression
experiments (Han et al. 2016): 784-300-100-10, 266,610 parameters on 28x28 inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from slimkit.models.registry import register_model


class MLP(nn.Module):
    """Flatten, then ``Linear → ReLU (→ Dropout)`` per hidden layer, then a linear classifier.

    Args:
        in_features: number of input values per sample (C·H·W).
        hidden: widths of the hidden layers.
        num_classes: number of output logits.
        dropout: dropout probability after each hidden activation (0 disables it).
        input_dropout: dropout probability on the flattened input (Hinton et al. use 0.2).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) -> (N, num_classes)
        return self.layers(x)


def _check_widths(hidden: Sequence[int]) -> list[int]:
    widths = list(hidden)
    if not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"hidden must be a list of positive ints; got {hidden!r}")
    return widths


@register_model("mlp", "Fully connected network (flatten, hidden ReLU layers, optional dropout)")
def mlp(
    input_shape: tuple[int, int, int],
    num_classes: int,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> nn.Module:
    """Fully connected network (flatten, hidden ReLU layers, optional dropout)."""
    for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0 <= p < 1:
            raise ValueError(f"{name} must be in [0, 1); got {p!r}")
    return MLP(math.prod(input_shape), _check_widths(hidden), num_classes, dropout, input_dropout)


@register_model("lenet300_100", "LeNet-300-100: 784-300-100-10 on MNIST (LeCun et al. 1998)")
def lenet300_100(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """LeNet-300-100: 784-300-100-10 on MNIST (LeCun et al. 1998)."""
    return MLP(math.prod(input_shape), [300, 100], num_classes)

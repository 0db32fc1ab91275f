"""LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU and max pooling.

conv 5x5 (6) → pool → conv 5x5 (16) → pool → fc 120 → fc 84 → fc classes. On 28x28 inputs the
first convolution pads by 2 (as the paper's 32x32 inputs), giving the classic 16x5x5 feature map
before the classifier (61,706 parameters). On small inputs such as 8x8 digits the second
convolution pads too, so the network still fits.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.models.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5 with ReLU, max pooling and a configurable width.

    Args:
        input_shape: (C, H, W) of the input.
        num_classes: number of output logits.
        channels: output channels of the two convolutions.
        hidden: widths of the two hidden fully connected layers.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        channels: tuple[int, int] = (6, 16),
        hidden: tuple[int, int] = (120, 84),
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        if min(h, w) < 4:
            raise ValueError(f"LeNet-5 needs inputs of at least 4x4 pixels; got {h}x{w}")
        c1, c2 = channels
        h1, w1 = h // 2, w // 2  # after conv1 (same padding) and pool
        pad2 = 0 if min(h1, w1) >= 6 else 2  # keep at least 2x2 after conv2 + pool
        h2, w2 = (h1 - 4 + 2 * pad2) // 2, (w1 - 4 + 2 * pad2) // 2
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * h2 * w2, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) -> features (N, c2, h2, w2) -> logits (N, num_classes)
        return self.classifier(self.features(x))


@register_model("lenet5", "LeNet-5 CNN with ReLU and max pooling (LeCun et al. 1998)")
def lenet5(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: tuple[int, int] | list[int] = (6, 16),
    hidden: tuple[int, int] | list[int] = (120, 84),
) -> nn.Module:
    """LeNet-5 CNN with ReLU and max pooling (LeCun et al. 1998)."""
    if len(channels) != 2 or len(hidden) != 2:
        raise ValueError(f"channels and hidden take two ints each; got {channels!r}, {hidden!r}")
    return LeNet5(
        input_shape,
        num_classes,
        (int(channels[0]), int(channels[1])),
        (int(hidden[0]), int(hidden[1])),
    )

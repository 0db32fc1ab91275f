"""Parameter and MAC counting against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.measure import count_costs, count_parameters
from slimkit.models import create_model


def test_lenet300_100_macs_are_the_weight_count() -> None:
    cost = count_costs(create_model("lenet300_100"), (1, 28, 28))
    assert cost.params == 266_610
    assert cost.macs == 784 * 300 + 300 * 100 + 100 * 10
    assert [layer.macs for layer in cost.layers if layer.type == "Linear"] == [
        235_200,
        30_000,
        1_000,
    ]


def test_lenet5_macs_by_hand() -> None:
    cost = count_costs(create_model("lenet5"), (1, 28, 28))
    conv1 = 6 * 28 * 28 * (1 * 5 * 5)
    conv2 = 16 * 10 * 10 * (6 * 5 * 5)
    fc = 400 * 120 + 120 * 84 + 84 * 10
    assert cost.macs == conv1 + conv2 + fc
    assert cost.params == count_parameters(create_model("lenet5"))


@pytest.mark.parametrize(("groups", "stride", "padding"), [(1, 1, 0), (4, 2, 1), (8, 1, 1)])
def test_conv_macs_follow_groups_stride_and_padding(groups: int, stride: int, padding: int) -> None:
    conv = nn.Conv2d(8, 16, kernel_size=3, stride=stride, padding=padding, groups=groups)
    out = conv(torch.zeros(1, 8, 12, 12))
    cost = count_costs(conv, (8, 12, 12))
    assert cost.macs == out.numel() * (8 // groups) * 9
    assert cost.params == 16 * (8 // groups) * 9 + 16


def test_shared_parameters_count_once_and_layers_list_every_leaf() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Flatten(), shared, nn.ReLU(), shared)
    cost = count_costs(model, (1, 2, 2))
    assert cost.params == 20
    assert [layer.type for layer in cost.layers] == ["Flatten", "Linear", "ReLU", "Linear"]
    assert sum(layer.params for layer in cost.layers) == 20
    assert cost.macs == 2 * 16


def test_counting_restores_training_mode() -> None:
    model = create_model("mlp", input_shape=(1, 8, 8))
    model.train()
    count_costs(model, (1, 8, 8))
    assert model.training

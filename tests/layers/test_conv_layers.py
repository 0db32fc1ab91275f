"""Convolution blocks: shapes, parameter counts by hand, and outputs against plain formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers import (
    ChannelShuffle,
    ConvBNAct,
    DepthwiseSeparableConv,
    HardSigmoid,
    HardSwish,
    InvertedResidual,
    ShuffleUnit,
    SqueezeExcite,
    make_activation,
    make_divisible,
)


def test_hard_activations_match_their_formulas() -> None:
    x = torch.linspace(-5, 5, 101)
    assert torch.allclose(HardSigmoid()(x), torch.clamp(x + 3, 0, 6) / 6)
    assert torch.allclose(HardSwish()(x), x * torch.clamp(x + 3, 0, 6) / 6)
    assert isinstance(make_activation("hardswish"), nn.Hardswish)
    with pytest.raises(ConfigError, match=r"activation must be one of.*got 'swish'"):
        make_activation("swish")


@pytest.mark.parametrize(
    ("value", "expected"), [(32 * 0.35, 16), (24 * 0.5, 16), (96 * 0.75, 72), (1280, 1280), (3, 8)]
)
def test_make_divisible_rounds_to_the_nearest_multiple_within_ten_percent(
    value: float, expected: int
) -> None:
    # 11.2 -> 8 would lose more than 10%, so 16; 12 rounds half up to 16; 72 is a multiple already
    assert make_divisible(value) == expected


def test_conv_bn_act_keeps_ceil_of_size_over_stride() -> None:
    unit = ConvBNAct(3, 8, kernel_size=5, stride=2, activation=None).eval()
    assert unit(torch.zeros(1, 3, 15, 15)).shape == (1, 8, 8, 8)
    assert unit.act is None and unit.conv.bias is None
    with pytest.raises(ConfigError, match="groups must divide"):
        ConvBNAct(6, 8, groups=4)
    with pytest.raises(ConfigError, match="kernel_size must be an odd"):
        ConvBNAct(6, 8, kernel_size=2)


def test_depthwise_separable_parameters_and_output_by_hand() -> None:
    m, n = 8, 12
    block = DepthwiseSeparableConv(m, n, stride=2).eval()
    # depthwise 3x3 per channel + BN(2M) ; pointwise M x N + BN(2N)
    assert sum(p.numel() for p in block.parameters()) == m * 9 + 2 * m + m * n + 2 * n
    assert block.depthwise.conv.groups == m
    x = torch.randn(2, m, 9, 9)
    dw = F.relu(block.depthwise.bn(F.conv2d(x, block.depthwise.conv.weight, None, 2, 1, 1, m)))
    expected = F.relu(block.pointwise.bn(F.conv2d(dw, block.pointwise.conv.weight)))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_inverted_residual_adds_the_input_only_when_shapes_agree() -> None:
    block = InvertedResidual(8, 8, stride=1, expand_ratio=6).eval()
    assert block.use_residual and block.expand is not None
    assert block.expand.conv.out_channels == 48 and block.project.act is None
    # with the projection's BN zeroed the block is the identity: the shortcut is there
    nn.init.zeros_(block.project.bn.weight)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)
    down = InvertedResidual(8, 16, stride=2, expand_ratio=1).eval()
    assert not down.use_residual and down.expand is None
    out = down(x)
    assert out.shape == (2, 16, 3, 3)
    assert (out < 0).any()  # the linear bottleneck has no ReLU


def test_inverted_residual_parameters_by_hand_with_squeeze_excite() -> None:
    block = InvertedResidual(8, 16, stride=2, expand_ratio=4, se_ratio=0.25)
    hidden, squeeze = 32, 8
    expected = (
        (8 * hidden + 2 * hidden)  # expand 1x1 + BN
        + (hidden * 9 + 2 * hidden)  # depthwise 3x3 + BN
        + (hidden * squeeze + squeeze + squeeze * hidden + hidden)  # SE fc1, fc2 with biases
        + (hidden * 16 + 2 * 16)  # project 1x1 + BN
    )
    assert sum(p.numel() for p in block.parameters()) == expected
    with pytest.raises(ConfigError, match="stride must be 1 or 2"):
        InvertedResidual(8, 8, stride=3)


def test_squeeze_excite_matches_the_paper_formula() -> None:
    se = SqueezeExcite(6, 3).eval()
    x = torch.randn(2, 6, 4, 4)
    z = x.mean(dim=(2, 3))  # squeeze: (N, C)
    w1, b1 = se.fc1.weight.view(3, 6), se.fc1.bias
    w2, b2 = se.fc2.weight.view(6, 3), se.fc2.bias
    scale = torch.sigmoid(F.relu(z @ w1.T + b1) @ w2.T + b2)  # excitation: (N, C)
    assert torch.allclose(se(x), x * scale[:, :, None, None], atol=1e-6)
    hard = SqueezeExcite(6, 3, gate="hardsigmoid")
    assert isinstance(hard.gate, nn.Hardsigmoid)


def test_channel_shuffle_is_the_transpose_permutation() -> None:
    x = torch.arange(12.0).view(1, 12, 1, 1)
    out = ChannelShuffle(3)(x).flatten().tolist()
    # groups [0..3], [4..7], [8..11] interleaved
    assert out == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    # shuffling by g then by C/g undoes it
    assert torch.equal(ChannelShuffle(4)(ChannelShuffle(3)(x)), x)


def test_shuffle_unit_shapes_and_shortcuts() -> None:
    same = ShuffleUnit(16, 16, groups=2).eval()
    assert same.compress.conv.groups == 2 and same.expand.conv.groups == 2
    assert same(torch.randn(2, 16, 6, 6)).shape == (2, 16, 6, 6)
    down = ShuffleUnit(16, 48, groups=2, stride=2, group_first_conv=False).eval()
    assert down.compress.conv.groups == 1 and down.expand.conv.out_channels == 32
    x = torch.randn(2, 16, 7, 7)
    out = down(x)
    assert out.shape == (2, 48, 4, 4)
    # the first 16 channels are the average-pooled input (after the final ReLU)
    pooled = F.avg_pool2d(x, 3, stride=2, padding=1)
    assert torch.allclose(out[:, :16], F.relu(pooled), atol=1e-6)
    with pytest.raises(ConfigError, match="in_channels == out_channels"):
        ShuffleUnit(16, 32, stride=1)
    with pytest.raises(ConfigError, match="divisible by groups=3"):
        ShuffleUnit(16, 32, groups=3, stride=2)

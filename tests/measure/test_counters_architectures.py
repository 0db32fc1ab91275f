"""Counters on the efficient layers and the model zoo, against papers and hand counts.

MobileNet-v1 (Howard et al. 2017) Tables 6 and 7 and MobileNetV2 (Sandler et al. 2018) report
multiply-adds in millions and parameters in millions (one decimal), without batch norm. Where a
paper value is given to the million, it equals the exact count rounded or cut to the million
(569 for 568.74, but 290 for 290.68), so both are accepted: the count must agree to the digit.
"""

from __future__ import annotations

import functools
import math
import random
from fractions import Fraction

import pytest
import torch
from torch import nn

from slimkit.layers import (
    DepthwiseSeparableConv,
    FactorizedEmbedding,
    InvertedResidual,
    ShuffleUnit,
    SqueezeExcite,
    TransformerBlock,
)
from slimkit.measure import count_costs, count_parameters
from slimkit.models import create_model


@pytest.fixture(autouse=True)
def _one_thread(_fixed_threads: None) -> None:
    """One thread: counting runs small forward passes, which a second thread only slows down."""
    torch.set_num_threads(1)


@functools.cache
def _imagenet_model(name: str, alpha: float) -> nn.Module:
    """One 1000-class model per width; it takes any resolution (global average pooling)."""
    return create_model(
        name, input_shape=(3, 224, 224), num_classes=1000, width_multiplier=alpha
    ).eval()


def _paper_costs(name: str, resolution: int, alpha: float) -> tuple[int, int, int]:
    model = _imagenet_model(name, alpha)
    without_bn = count_costs(model, (3, resolution, resolution), include_batchnorm=False)
    return without_bn.macs, without_bn.params, count_parameters(model)


def test_mobilenet_v1_224_is_exactly_the_paper_count() -> None:
    model = _imagenet_model("mobilenet_v1", 1.0)
    cost = count_costs(model, (3, 224, 224), include_batchnorm=False)
    assert cost.macs == 568_740_352
    assert cost.params == 4_210_088
    assert not cost.include_batchnorm and cost.to_dict()["include_batchnorm"] is False
    # batch norm adds a scale and a shift per channel of each of the 27 convolutions
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn_channels == 10_944
    assert count_costs(model, (3, 224, 224)).params == 4_210_088 + 2 * bn_channels == 4_231_976
    rows = {layer.name: layer for layer in cost.layers}
    # stem: 112x112 outputs of 32 channels, each 3x3x3 multiply-adds
    assert rows["features.0.conv"].macs == 112 * 112 * 32 * 27
    # the last depthwise-separable block on 7x7, and the classifier
    assert rows["features.13.depthwise.conv"].macs == 7 * 7 * 1024 * 9
    assert rows["features.13.pointwise.conv"].macs == 7 * 7 * 1024 * 1024
    assert rows["classifier"].macs == 1024 * 1000 and rows["classifier"].params == 1_025_000
    assert rows["features.0.bn"].params == 0  # excluded, as the paper does


@pytest.mark.parametrize(
    ("alpha", "resolution", "macs_m", "params_m"),
    [
        (1.0, 224, 569, 4.2),  # Table 6 and Table 7, first rows
        (0.75, 224, 325, 2.6),  # Table 6
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
        (1.0, 192, 418, 4.2),  # Table 7
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
    ],
)
def test_mobilenet_v1_tables_6_and_7(
    alpha: float, resolution: int, macs_m: int, params_m: float
) -> None:
    macs, params, _ = _paper_costs("mobilenet_v1", resolution, alpha)
    assert macs_m in (round(macs / 1e6), math.floor(macs / 1e6))
    assert params_m in (round(params / 1e6, 1), math.floor(params / 1e5) / 10)


def test_mobilenet_v2_224_matches_the_paper() -> None:
    macs, params, with_bn = _paper_costs("mobilenet_v2", 224, 1.0)
    assert math.floor(macs / 1e6) == 300  # "300M" multiply-adds (Table 4)
    assert math.floor(params / 1e5) / 10 == 3.4  # "3.4M" parameters (3.47M exactly)
    assert (macs, params) == (300_774_272, 3_470_760)
    assert with_bn == 3_504_872  # torchvision's mobilenet_v2 has the same 3,504,872


@pytest.mark.parametrize(
    ("alpha", "macs_m", "params_m"),
    [(1.4, 582, 6.06), (1.3, 509, 5.34), (0.75, 209, 2.61), (0.5, 97, 1.95), (0.35, 59, 1.66)],
)
def test_mobilenet_v2_width_multipliers_match_the_reference_table(
    alpha: float, macs_m: int, params_m: float
) -> None:
    # the TensorFlow reference implementation's table (tensorflow/models, slim/nets/mobilenet)
    macs, params, _ = _paper_costs("mobilenet_v2", 224, alpha)
    assert round(macs / 1e6) == macs_m
    assert round(params / 1e6, 2) == params_m


def test_depthwise_separable_costs_one_over_n_plus_one_over_dk_squared() -> None:
    rng = random.Random(6)
    for _ in range(20):
        m, n = rng.randint(1, 48), rng.randint(1, 48)
        kernel = rng.choice([3, 5, 7])
        size = rng.randint(kernel, 16)
        stride = rng.choice([1, 2])
        shape = (m, size, size)
        separable = count_costs(DepthwiseSeparableConv(m, n, stride, kernel), shape).macs
        standard = nn.Conv2d(m, n, kernel, stride, padding=(kernel - 1) // 2, bias=False)
        ratio = Fraction(separable, count_costs(standard, shape).macs)
        assert ratio == Fraction(1, n) + Fraction(1, kernel**2), (m, n, kernel, size, stride)


def test_inverted_residual_and_squeeze_excite_macs_by_hand() -> None:
    block = InvertedResidual(8, 16, stride=2, expand_ratio=4, se_ratio=0.25)
    cost = count_costs(block, (8, 10, 10))
    hidden, squeeze = 32, 8
    expand = 10 * 10 * 8 * hidden
    depthwise = 5 * 5 * hidden * 9  # stride 2: 5x5 outputs
    excite = hidden * squeeze + squeeze * hidden  # two 1x1 convs on a 1x1 map
    project = 5 * 5 * hidden * 16
    assert cost.macs == expand + depthwise + excite + project
    se = count_costs(SqueezeExcite(24, 6), (24, 7, 7))
    assert se.macs == 2 * 24 * 6 and se.params == 24 * 6 + 6 + 6 * 24 + 24


def test_shuffle_unit_macs_by_hand() -> None:
    unit = ShuffleUnit(24, 48, groups=3, stride=2)
    cost = count_costs(unit, (24, 8, 8))
    bottleneck, branch = 12, 24
    compress = 8 * 8 * bottleneck * (24 // 3)  # grouped 1x1 at full resolution
    depthwise = 4 * 4 * bottleneck * 9
    expand = 4 * 4 * branch * (bottleneck // 3)
    assert cost.macs == compress + depthwise + expand  # pooling, shuffle and concat cost 0


@pytest.mark.parametrize("length", [16, 64, 256])
def test_attention_kernel_macs_by_hand(length: int) -> None:
    dim, heads = 32, 4
    d = dim // heads
    rows = {}
    for kind in ("softmax", "linear"):
        cost = count_costs(TransformerBlock(dim, heads, 2, kind), (length, dim))
        rows[kind] = {layer.name: layer.macs for layer in cost.layers}
        projections = length * dim * 3 * dim + length * dim * dim  # qkv and proj
        mlp = 2 * length * dim * 2 * dim
        assert cost.macs == projections + mlp + rows[kind]["attn.kernel"]
    assert rows["softmax"]["attn.kernel"] == heads * length * length * 2 * d
    assert rows["linear"]["attn.kernel"] == heads * (2 * length * d * d + length * d)


def test_linear_attention_grows_linearly_and_softmax_quadratically() -> None:
    dim = 16

    def block_macs(kind: str, length: int) -> int:
        return count_costs(TransformerBlock(dim, 2, 2, kind), (length, dim)).macs

    for length in (32, 100, 512):
        assert block_macs("linear", 2 * length) == 2 * block_macs("linear", length)
        # f(2L) - 2 f(L) leaves the quadratic term 2·dim·((2L)² - 2L²)
        quadratic = block_macs("softmax", 2 * length) - 2 * block_macs("softmax", length)
        assert quadratic == 2 * dim * 2 * length**2


def test_embeddings_cost_their_projection_only() -> None:
    class Lookup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = FactorizedEmbedding(100, 4, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embedding(x.flatten(1).long())

    cost = count_costs(Lookup(), (1, 3, 5))
    assert cost.macs == 15 * 4 * 16  # 15 tokens through the E x H projection; lookups are free
    assert cost.params == 100 * 4 + 4 * 16


def test_vit_small_macs_by_hand_at_28x28() -> None:
    cost = count_costs(create_model("vit_small", input_shape=(1, 28, 28)), (1, 28, 28))
    tokens, dim, hidden, depth = 49, 32, 64, 3
    patch = tokens * dim * 16
    block = (
        tokens * dim * 3 * dim  # qkv
        + 2 * tokens * tokens * dim  # Q Kᵀ and A V over all heads
        + tokens * dim * dim  # proj
        + 2 * tokens * dim * hidden  # MLP
    )
    assert cost.macs == patch + depth * block + dim * 10


def test_excluding_batchnorm_only_drops_batchnorm_scale_and_shift() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.LayerNorm(2))
    with_bn = count_costs(model, (3, 4, 4))
    without = count_costs(model, (3, 4, 4), include_batchnorm=False)
    assert with_bn.params == 108 + 8 + 4
    assert without.params == 108 + 4  # layer norm does not fold away and stays
    assert [layer.params for layer in without.layers] == [108, 0, 4]
    assert without.macs == with_bn.macs


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilenet_v1_small", {}),
        ("shufflenet_small", {}),
        ("mobilenet_v2_small", {"width_multiplier": 0.5}),  # inverted residuals cost more
    ],
)
def test_small_cnns_cost_less_than_lenet5_on_mnist(name: str, kwargs: dict[str, float]) -> None:
    shape = (1, 28, 28)
    lenet = count_costs(create_model("lenet5", input_shape=shape), shape).macs
    assert lenet == 416_520
    assert count_costs(create_model(name, input_shape=shape, **kwargs), shape).macs < lenet

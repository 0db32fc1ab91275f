"""The zoo's models: structure per paper, multipliers, input sizes, and argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.errors import ModelError
from slimkit.layers import (
    DepthwiseSeparableConv,
    FactorizedEmbedding,
    HashedEmbedding,
    InvertedResidual,
    LinearAttention,
    ShuffleUnit,
    SoftmaxAttention,
    SqueezeExcite,
)
from slimkit.measure import count_costs
from slimkit.models import create_model
from slimkit.models.transformer import encode_text


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_mobilenet_v1_has_the_papers_13_separable_blocks() -> None:
    model = create_model("mobilenet_v1", input_shape=(3, 224, 224), num_classes=1000)
    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparableConv)]
    assert len(blocks) == 13
    strides = [b.depthwise.conv.stride[0] for b in blocks]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [b.pointwise.conv.out_channels for b in blocks][-1] == 1024
    features = model.features(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1024, 7, 7)


def test_mobilenet_v2_has_the_papers_17_blocks_and_10_shortcuts() -> None:
    model = create_model("mobilenet_v2", input_shape=(3, 224, 224), num_classes=1000)
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    assert sum(b.use_residual for b in blocks) == 10
    assert model.classifier.in_features == 1280
    half = create_model("mobilenet_v2", input_shape=(3, 224, 224), width_multiplier=0.5)
    assert half.classifier.in_features == 1280  # the last convolution keeps its width for α < 1


def test_width_and_depth_multipliers_scale_the_small_mobilenet() -> None:
    shape = (1, 28, 28)
    base = create_model("mobilenet_v1_small", input_shape=shape)
    half = create_model("mobilenet_v1_small", input_shape=shape, width_multiplier=0.5)
    deep = create_model("mobilenet_v1_small", input_shape=shape, depth_multiplier=2)
    widths = [m.out_channels for m in base.modules() if isinstance(m, nn.Conv2d)]
    half_widths = [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert half_widths == [max(4, int(w * 0.5)) for w in widths]
    assert _count(deep, DepthwiseSeparableConv) == 2 * _count(base, DepthwiseSeparableConv)
    # pointwise MACs scale with α², depthwise with α: the total lies between
    macs = count_costs(base, shape).macs
    assert macs / 4 < count_costs(half, shape).macs < macs / 2


@pytest.mark.parametrize(
    ("name", "side_8", "side_28"),
    [("mobilenet_v1_small", 1, 2), ("mobilenet_v2_small", 2, 4), ("shufflenet_small", 2, 4)],
)
def test_small_cnns_fit_8x8_and_28x28(name: str, side_8: int, side_28: int) -> None:
    # the stem keeps stride 1 below 16 pixels, so 8x8 digits are not pooled away
    for size, side in ((8, side_8), (28, side_28)):
        model = create_model(name, input_shape=(1, size, size)).eval()
        assert model.features(torch.zeros(1, 1, size, size)).shape[-2:] == (side, side)


def test_small_cnns_use_their_blocks() -> None:
    assert _count(create_model("shufflenet_small"), ShuffleUnit) == 4
    v3_style = create_model("mobilenet_v2_small", activation="hardswish", se_ratio=0.25)
    assert _count(v3_style, SqueezeExcite) == _count(v3_style, InvertedResidual) > 0
    assert _count(v3_style, nn.Hardswish) > 0 and _count(v3_style, nn.ReLU6) == 0


def test_vit_attention_choice_and_patch_check() -> None:
    softmax = create_model("vit_small")
    linear = create_model("vit_small", attention="linear")
    assert _count(softmax, SoftmaxAttention) == _count(linear, LinearAttention) == 3
    assert softmax.position.weight.shape == (49, 32)  # 7x7 patches of 4x4 pixels
    same = [p.shape for p in softmax.parameters()] == [p.shape for p in linear.parameters()]
    assert same  # the kernel has no parameters: the two differ only in how tokens mix
    with pytest.raises(ModelError, match=r"30x30 is not a whole number of 4x4 patches"):
        create_model("vit_small", input_shape=(1, 30, 30))


def test_sequence_transformer_reads_text_bytes_as_tokens() -> None:
    model = create_model("sequence_transformer", input_shape=(1, 1, 12)).eval()
    x = encode_text(["hello, world", "slimkit"], 12)
    assert x.shape == (2, 1, 1, 12)
    ids = model.token_ids(x)
    assert ids[0, 0].tolist() == list(b"hello, world")
    assert ids[1, 0].tolist() == [*b"slimkit", 0, 0, 0, 0, 0]
    assert model(x).shape == (2, 10)


def test_sequence_transformer_embeddings_and_channels() -> None:
    shape = (3, 2, 5)  # 10 positions of 3 values each: 3 x 256 ids
    full = create_model("sequence_transformer", input_shape=shape, embedding="full")
    factorized = create_model("sequence_transformer", input_shape=shape)
    hashed = create_model(
        "sequence_transformer", input_shape=shape, embedding="hashed", hash_buckets=50
    )
    assert full.embedding.weight.shape == (768, 32)
    assert isinstance(factorized.embedding, FactorizedEmbedding)
    assert sum(p.numel() for p in factorized.embedding.parameters()) == 768 * 8 + 8 * 32
    assert isinstance(hashed.embedding, HashedEmbedding)
    assert sum(p.numel() for p in hashed.embedding.parameters()) == 50 * 32
    x = torch.rand(1, *shape)
    ids = factorized.token_ids(x)
    assert ids.shape == (1, 3, 10)
    assert ids[0, 2].min() >= 512 and ids[0, 0].max() < 256  # each channel has its own ids
    # the vocabulary's levels: 0 -> 0, 1 -> 255, 0.5 -> 128 (round half to even of 127.5)
    mono = create_model("sequence_transformer", input_shape=(1, 1, 4))
    levels = mono.token_ids(torch.tensor([0.0, 1.0, 0.5, 2.0]).view(1, 1, 1, 4))
    assert levels.flatten().tolist() == [0, 255, 128, 255]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("mobilenet_v1_small", {"width_multiplier": 0}, "width_multiplier must be a number > 0"),
        ("mobilenet_v2", {"depth_multiplier": -1}, "depth_multiplier must be a number > 0"),
        ("mobilenet_v1", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("mobilenet_v2_small", {"activation": "swish"}, "activation must be one of"),
        ("mobilenet_v2_small", {"se_ratio": 2}, r"se_ratio must be None or in \(0, 1\]"),
        ("shufflenet_small", {"groups": 0}, "groups must be an int >= 1"),
        ("vit_small", {"attention": "flash"}, "attention must be one of softmax, linear"),
        ("vit_small", {"dim": 30, "num_heads": 4}, "dim must be divisible by num_heads"),
        ("sequence_transformer", {"embedding": "bloom"}, "embedding must be one of"),
        ("sequence_transformer", {"depth": 0}, "depth must be an int >= 1"),
    ],
)
def test_bad_arguments_are_one_line_model_errors(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelError, match=message) as info:
        create_model(name, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)

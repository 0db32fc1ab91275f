"""Efficient building blocks: plain ``nn.Module`` s that export, count, quantize and prune.

Each module's docstring cites the paper it implements. Costs (parameters and multiply-adds) are
counted by :func:`slimkit.measure.count_costs`; the attention kernels have their own rules in
:mod:`slimkit.measure.cost_rules`.
"""

from slimkit.layers.activations import ACTIVATIONS, HardSigmoid, HardSwish, make_activation
from slimkit.layers.attention import (
    ATTENTION_KINDS,
    LinearAttention,
    MultiHeadAttention,
    SoftmaxAttention,
    TransformerBlock,
)
from slimkit.layers.conv import ConvBNAct, DepthwiseSeparableConv, make_divisible
from slimkit.layers.embedding import (
    FactorizedEmbedding,
    HashedEmbedding,
    PatchEmbedding,
    PositionEmbedding,
)
from slimkit.layers.inverted_residual import InvertedResidual
from slimkit.layers.shuffle import ChannelShuffle, ShuffleUnit
from slimkit.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_KINDS",
    "ChannelShuffle",
    "ConvBNAct",
    "DepthwiseSeparableConv",
    "FactorizedEmbedding",
    "HardSigmoid",
    "HardSwish",
    "HashedEmbedding",
    "InvertedResidual",
    "LinearAttention",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "ShuffleUnit",
    "SoftmaxAttention",
    "SqueezeExcite",
    "TransformerBlock",
    "make_activation",
    "make_divisible",
]

"""MAC rules for slimkit's own layers that are not built from convolutions and linear layers.

Every other layer of :mod:`slimkit.layers` is made of ``nn.Conv2d`` and ``nn.Linear`` leaves (their
rules are in :mod:`slimkit.measure.counters`) and of zero-cost operations: batch and layer norm,
activations, pooling, channel shuffle, element-wise products (squeeze-excite gates) and additions
(residuals), embedding lookups. What is left are the attention kernels' matrix products, counted
here per head, with ``L`` queries, ``S`` keys, query/key width ``d`` and value width ``d_v``:

- softmax attention: ``Q Kᵀ`` is ``L S d``, ``A V`` is ``L S d_v``; the softmax and the
  ``1/sqrt(d)`` scaling are element-wise and count 0. Quadratic in the sequence length.
- linear attention: ``φ(K)ᵀ V`` is ``S d d_v``, ``φ(Q) (φ(K)ᵀ V)`` is ``L d d_v``, the normalizer
  ``φ(Q) Σ φ(K)`` is ``L d``; the feature map, the sum over keys and the division count 0.
  Linear in the sequence length.

The ``qkv`` and output projections are ``nn.Linear`` layers and are counted by their own rule.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from slimkit.layers.attention import LinearAttention, SoftmaxAttention
from slimkit.measure.counters import register_mac_rule


def _attention_shapes(inputs: tuple[Any, ...]) -> tuple[int, int, int, int, int]:
    """``(batch·heads, L, S, d, d_v)`` of a kernel's ``(q, k, v)`` inputs."""
    q, k, v = inputs[:3]
    return math.prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]


@register_mac_rule(SoftmaxAttention)
def softmax_attention_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """``heads · (L S d + L S d_v)``: the products ``Q Kᵀ`` and ``A V``."""
    heads, queries, keys, d, d_v = _attention_shapes(inputs)
    return heads * queries * keys * (d + d_v)


@register_mac_rule(LinearAttention)
def linear_attention_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """``heads · (S d d_v + L d d_v + L d)``: ``φ(K)ᵀ V``, ``φ(Q) (φ(K)ᵀ V)``, the normalizer."""
    heads, queries, keys, d, d_v = _attention_shapes(inputs)
    return heads * (keys * d * d_v + queries * d * d_v + queries * d)

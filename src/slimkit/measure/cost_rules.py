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

int8 models count what they store and compute, the totals of the float model they came from:

- dynamic and weight-only int8 (:class:`~slimkit.techniques.quantize.Int8Linear`): the int8 weight
  (a buffer) and the float bias are the layer's parameters; its MACs are a linear layer's.
- static int8 (:class:`~slimkit.techniques.quantize.QuantizedModel`) runs its layers as a graph,
  not as modules: one row per op of the graph, with the weights and biases (batch norm folded
  in), embedding tables, layer-norm scales and constants it stores, and the MACs of its
  convolutions, linear layers and matrix products (scales and zero points are not counted).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from slimkit.layers.attention import LinearAttention, SoftmaxAttention
from slimkit.measure.counters import (
    LayerCost,
    register_layer_table,
    register_mac_rule,
    register_stored_weights,
)
from slimkit.techniques.quantize.dynamic import Int8Linear
from slimkit.techniques.quantize.ir import QOp
from slimkit.techniques.quantize.model import QuantizedModel, run_float


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


@register_mac_rule(Int8Linear)
def int8_linear_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """A linear layer's: ``in_features`` per output value."""
    assert isinstance(module, Int8Linear)
    return int(output.numel()) * module.in_features


@register_stored_weights(Int8Linear)
def int8_linear_weights(module: nn.Module) -> list[torch.Tensor]:
    """The int8 weight (its scales are not counted)."""
    assert isinstance(module, Int8Linear)
    return [module.weight_int8]


def _op_tensors(op: QOp) -> list[torch.Tensor]:
    """The values one graph op stores: weight, bias, layer-norm scale and shift, a float
    constant (a parameter the model used directly, such as a position table)."""
    found = [op.weight, op.bias]
    if op.kind == "layer_norm":
        found += [op.attrs.get("weight"), op.attrs.get("bias")]
    value = op.attrs.get("value") if op.kind == "constant" else None
    if isinstance(value, torch.Tensor) and value.is_floating_point():  # not an index buffer
        found.append(value)
    return [t for t in found if isinstance(t, torch.Tensor)]


@register_stored_weights(QuantizedModel)
def graph_weights(module: nn.Module) -> list[torch.Tensor]:
    """Every value the graph's ops store (see :func:`_op_tensors`)."""
    assert isinstance(module, QuantizedModel)
    return [t for op in module.graph.ops for t in _op_tensors(op)]


def _op_macs(op: QOp, shapes: dict[str, tuple[int, ...]]) -> int:
    """MACs of one graph op at the batch the shapes were taken at."""
    outputs = math.prod(shapes[op.output])
    if op.kind in ("conv", "linear") and op.weight is not None:
        # conv weight (out, in / groups, kh, kw), linear (out, in): one dot product per output
        return outputs * math.prod(op.weight.shape[1:])
    if op.kind == "matmul":
        return outputs * shapes[op.inputs[0]][-1]
    return 0


@register_layer_table(QuantizedModel)
def graph_layers(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> list[LayerCost]:
    """One row per op of the int8 graph (the float graph is run once for the shapes)."""
    assert isinstance(module, QuantizedModel)
    shapes: dict[str, tuple[int, ...]] = {}

    def visit(op: QOp, value: torch.Tensor) -> None:
        shapes[op.output] = tuple(value.shape)

    run_float(module.graph, inputs[0], visit)
    return [
        LayerCost(
            name=op.layer or op.name,
            type=op.kind,
            output_shape=shapes[op.output][1:],
            params=sum(t.numel() for t in _op_tensors(op)),
            macs=_op_macs(op, shapes),
        )
        for op in module.graph.ops
        if op.kind != "input"
    ]

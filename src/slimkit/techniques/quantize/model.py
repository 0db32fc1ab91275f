"""The quantized model: the IR run in float (for calibration) or with int8 simulation.

:class:`QuantizedModel` is an ``nn.Module`` over a :class:`QGraph`. Its ``forward`` simulates the
integer model exactly as the integer kernels compute it, up to the rounding of the fixed-point
requantization: activations are rounded and clamped to their integer grid at every quantized
tensor, weights are int8, biases int32. Float islands (layer norm, softmax, ...) run in float on
the fake-quantized inputs and their output is rounded to its own grid; exact tensors (token ids)
are computed as they are. ``run_float`` executes the same graph without quantization, which
calibration uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.techniques.quantize.ir import OWN_QPARAMS, QGraph, QOp
from slimkit.techniques.quantize.scheme import QParams, dequantize, quantize
from slimkit.techniques.quantize.tensor_ops import apply_tensor_op

__all__ = ["OWN_QPARAMS", "QuantizedModel", "apply_op", "run_float", "run_simulated"]
CNN_KINDS = ("conv", "linear", "maxpool", "avgpool", "adaptive_avgpool", "flatten", "add", "relu")


def fake_quantize(
    x: torch.Tensor, params: QParams, *, low: int | None = None, high: int | None = None
) -> torch.Tensor:
    """Round ``x`` to the integer grid of ``params`` and back (per-tensor activations)."""
    scale = float(params.scale[0])
    zero = int(params.zero_point[0])
    qmin = params.qmin if low is None else low
    qmax = params.qmax if high is None else high
    return (torch.clamp(torch.round(x / scale) + zero, qmin, qmax) - zero) * scale


def activation_bounds(op: QOp, params: QParams) -> tuple[int, int]:
    """Integer output range of an op with its fused activation (ReLU raises the floor to Z)."""
    zero = int(params.zero_point[0])
    low, high = params.qmin, params.qmax
    if op.activation in ("relu", "relu6"):
        low = max(low, zero)
    if op.activation == "relu6":
        high = min(high, zero + round(6.0 / float(params.scale[0])))
    return low, high


def integer_weight(op: QOp) -> np.ndarray:
    """The int8 weight of a conv/linear/embedding op (int64 array), rounded in float32 as ONNX
    would."""
    assert op.weight is not None and op.weight_qparams is not None
    return quantize(op.weight.detach().float().numpy(), op.weight_qparams)


def quantized_weight(op: QOp) -> torch.Tensor:
    """The int8 weight of a conv/linear op, dequantized (``S_w · q_w``)."""
    assert op.weight_qparams is not None
    return torch.from_numpy(dequantize(integer_weight(op), op.weight_qparams).astype(np.float32))


def bias_scale(op: QOp, input_params: QParams) -> np.ndarray:
    """Scale of the int32 bias: ``S_x · S_w`` (per output channel)."""
    assert op.weight_qparams is not None
    channels = op.weight.shape[0] if op.weight is not None else 1
    return np.broadcast_to(
        float(input_params.scale[0]) * op.weight_qparams.scale, (channels,)
    ).copy()


def integer_bias(op: QOp, input_params: QParams) -> np.ndarray:
    """The int32 bias ``round(b / (S_x S_w))`` (zeros if the layer has none)."""
    scale = bias_scale(op, input_params)
    if op.bias is None:
        return np.zeros(scale.shape, dtype=np.int64)
    return np.rint(op.bias.detach().numpy().astype(np.float64) / scale).astype(np.int64)


def quantized_bias(op: QOp, input_params: QParams) -> torch.Tensor | None:
    """The int32 bias, dequantized."""
    if op.bias is None:
        return None
    value = integer_bias(op, input_params) * bias_scale(op, input_params)
    return torch.from_numpy(value.astype(np.float32))


def apply_op(
    op: QOp, args: list[torch.Tensor], weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """The float computation of one op (activation not applied)."""
    if op.kind not in CNN_KINDS:
        return apply_tensor_op(op, args, weight)
    x = args[0]
    if op.kind == "conv":
        a = op.attrs
        return F.conv2d(x, weight, bias, a["stride"], a["padding"], a["dilation"], a["groups"])  # type: ignore[arg-type]
    if op.kind == "linear":
        return F.linear(x, weight, bias)  # type: ignore[arg-type]
    if op.kind == "maxpool":
        a = op.attrs
        return F.max_pool2d(x, a["kernel"], a["stride"], a["padding"])
    if op.kind == "avgpool":
        a = op.attrs
        return F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"])
    if op.kind == "adaptive_avgpool":
        return F.adaptive_avg_pool2d(x, 1)
    if op.kind == "flatten":
        return torch.flatten(x, 1)
    if op.kind == "add":
        return args[0] + args[1]
    if op.kind == "relu":
        return x
    raise AssertionError(f"unknown op kind {op.kind}")


def apply_activation(op: QOp, y: torch.Tensor) -> torch.Tensor:
    """``op``'s fused ReLU/ReLU6 in float (``y`` itself when it has none)."""
    if op.activation == "relu":
        return F.relu(y)
    if op.activation == "relu6":
        return F.relu6(y)
    return y


def run_float(
    graph: QGraph, x: torch.Tensor, visit: Callable[[QOp, torch.Tensor], None] | None = None
) -> torch.Tensor:
    """Execute the IR in float (no quantization); ``visit(op, output)`` sees every op's output."""
    values: dict[str, torch.Tensor] = {}
    for op in graph.ops:
        if op.kind == "input":
            y = x
        else:
            y = apply_activation(
                op, apply_op(op, [values[name] for name in op.inputs], op.weight, op.bias)
            )
        values[op.output] = y
        if visit is not None:
            visit(op, y)
    return values[graph.output]


SimulatedConstants = dict[str, tuple[torch.Tensor, torch.Tensor | None]]


def simulated_constants(graph: QGraph) -> SimulatedConstants:
    """The dequantized int8 weights and int32 biases of every conv/linear/embedding op, by output.

    They depend only on the graph's weights and scales, so a model that runs many batches
    computes them once (re-quantizing an MLP's weights on every call took 90% of its time).
    """
    constants: SimulatedConstants = {}
    for op in graph.ops:
        if op.kind in ("conv", "linear"):
            bias = quantized_bias(op, graph.qparams[op.inputs[0]])
            constants[op.output] = (quantized_weight(op), bias)
        elif op.kind == "embedding":
            constants[op.output] = (quantized_weight(op), None)
    return constants


def run_simulated(
    graph: QGraph, x: torch.Tensor, constants: SimulatedConstants | None = None
) -> torch.Tensor:
    """Execute the IR with int8 simulation; returns the dequantized output.

    ``constants``: the graph's :func:`simulated_constants`, when the caller keeps them between
    calls (computed here otherwise).
    """
    if constants is None:
        constants = simulated_constants(graph)
    values: dict[str, torch.Tensor] = {}
    for op in graph.ops:
        if op.kind == "input":
            values[op.output] = fake_quantize(x, graph.qparams[op.output]) if op.quantized else x
            continue
        args = [values[name] for name in op.inputs]
        if op.kind in ("conv", "linear", "embedding"):
            weight, bias = constants[op.output]
            y = apply_op(op, args, weight, bias)
        else:
            y = apply_op(op, args, None, None)
        if not op.quantized:
            y = apply_activation(op, y)  # an exact tensor: computed as it is
        elif op.kind in OWN_QPARAMS or op.kind == "relu":
            params = graph.qparams[op.output]
            low, high = activation_bounds(op, params)
            y = fake_quantize(y, params, low=low, high=high)
        values[op.output] = y
    return values[graph.output]


class QuantizedModel(nn.Module):
    """An int8 model: the IR with its scales, simulated in PyTorch, exportable to int8 runtimes.

    Attributes:
        graph: the quantized IR.
        config: the technique config that produced it (embedded in reports and exports).
    """

    def __init__(self, graph: QGraph, config: Any = None, slimkit_spec: Any = None) -> None:
        super().__init__()
        self.graph = graph
        self.config = config
        if slimkit_spec is not None:
            self.slimkit_spec = slimkit_spec
        self._constants: tuple[tuple[int, ...], SimulatedConstants] | None = None

    def _simulated_constants(self) -> SimulatedConstants:
        """The graph's constants, recomputed only if a weight or scale object was replaced."""
        key = tuple(
            id(obj)
            for op in self.graph.ops
            if op.kind in ("conv", "linear", "embedding")
            for obj in (op.weight, op.bias, op.weight_qparams, self.graph.qparams.get(op.inputs[0]))
        )
        if self._constants is None or self._constants[0] != key:
            self._constants = (key, simulated_constants(self.graph))
        return self._constants[1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return self.graph.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) float → (N, classes) dequantized logits
        with torch.no_grad():
            return run_simulated(self.graph, x, self._simulated_constants())

    def summary(self) -> list[dict[str, Any]]:
        """One row per op: layer, kind, activation, output scale/zero point, weight bits."""
        rows = []
        for op in self.graph.ops:
            params = self.graph.qparams.get(op.output)
            rows.append(
                {
                    "layer": op.layer or op.name,
                    "kind": op.kind,
                    "activation": op.activation,
                    "scale": float(params.scale[0]) if params else None,
                    "zero_point": int(params.zero_point[0]) if params else None,
                    "weight_bits": 8 if op.weight is not None else None,
                    "per_channel": bool(op.weight_qparams and op.weight_qparams.per_channel),
                }
            )
        return rows

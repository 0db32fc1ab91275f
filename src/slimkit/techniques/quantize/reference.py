"""The integer-only reference executor: the oracle every int8 runtime is held against.

It runs a :class:`QGraph` on integers only, as Jacob et al. 2018 describe: int8 × int8 products
summed into int32 accumulators (checked not to overflow), int32 biases, requantization by a
fixed-point multiplier ``M0 · 2^-n`` with gemmlowp's rounding, saturation to the output range, and
a fused ReLU as a clamp at the zero point. Additions rescale both inputs in fixed point with a
20-bit left shift (TFLite's reference ``Add``); average pooling divides its int32 sum by the window
size within the requantization multiplier.

Integer-only arithmetic covers convolutions, linear layers, additions, ReLU, pooling and matrix
products of two activations (``q·kᵀ``, ``attention·v``: int8 × int8 summed in int32, requantized
like a linear layer). Data movement (reshape, transpose, slicing, concatenation with one shared
scale) moves the integers themselves. Every other op is a float island, as ONNX Runtime also runs
it between ``DequantizeLinear`` and ``QuantizeLinear``: layer norm, softmax, GELU, hard-swish,
hard-sigmoid, sigmoid, ELU, element-wise products and quotients, means and sums over dimensions,
and embedding lookups run in float32 on the dequantized int8 inputs (``S (q - Z)``, as ONNX
dequantizes), and their output is quantized to its own int8 grid (float32 division, rounding half
to even, as ONNX quantizes). Exact tensors (token ids, and the arithmetic that computes them from
the input) are carried as they are.

It is slow and plain on purpose. Convolutions and matrix products are evaluated exactly with
float64 arithmetic on integer values (every partial sum is an integer far below 2^53, so the
result is the exact integer), then cast back to int64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.ir import MOVES, QGraph, QOp
from slimkit.techniques.quantize.model import (
    activation_bounds,
    apply_activation,
    apply_op,
    integer_bias,
    integer_weight,
)
from slimkit.techniques.quantize.scheme import (
    DTYPE_RANGES,
    QParams,
    dequantize,
    multiply_by_quantized_multiplier,
    quantize,
    quantize_multiplier,
    requantize,
)

INT32_MIN, INT32_MAX = DTYPE_RANGES["int32"]
INTEGER_KINDS = (
    "conv",
    "linear",
    "maxpool",
    "avgpool",
    "adaptive_avgpool",
    "flatten",
    "relu",
    "add",
)
ADD_LEFT_SHIFT = 20


def _exact(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float64))


def _to_int(y: torch.Tensor, what: str) -> np.ndarray:
    acc = np.rint(y.numpy()).astype(np.int64)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ConfigError(f"int32 accumulator overflow in {what}: range [{acc.min()}, {acc.max()}]")
    return acc


def _requantize_op(
    op: QOp, acc: np.ndarray, multipliers: np.ndarray, out: QParams, axis: int | None
) -> np.ndarray:
    low, high = activation_bounds(op, out)
    return requantize(acc, multipliers, int(out.zero_point[0]), low, high, axis)


def run_integer(graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Run the graph on float input ``x`` (quantized at the input) and return the output integers.

    Use :func:`run_reference` for dequantized logits.
    """
    values: dict[str, np.ndarray] = {}
    for op in graph.ops:
        if not op.quantized:  # an exact tensor (token ids): computed as it is
            if op.kind == "input":
                values[op.output] = np.asarray(x, dtype=np.float32)
            else:
                y = apply_op(op, _real_inputs(op, values, graph), op.weight, op.bias)
                values[op.output] = apply_activation(op, y).numpy()
            continue
        out = graph.qparams[op.output]
        if op.kind == "input":
            values[op.output] = quantize(np.asarray(x, dtype=np.float32), out)
            continue
        if op.kind == "constant":
            values[op.output] = quantize(op.attrs["value"].detach().float().numpy(), out)
            continue
        if op.kind in MOVES:
            values[op.output] = _move(op, values, graph)
            continue
        if op.kind == "matmul":
            values[op.output] = _integer_matmul(op, values, graph)
            continue
        if op.kind not in INTEGER_KINDS:
            values[op.output] = _float_island(op, values, graph)
            continue
        inp = graph.qparams[op.inputs[0]]
        q = values[op.inputs[0]]
        z_in = int(inp.zero_point[0])
        if op.kind in ("conv", "linear"):
            w = integer_weight(op)
            b = integer_bias(op, inp)
            shifted = _exact(q - z_in)
            if op.kind == "conv":
                a = op.attrs
                y = F.conv2d(
                    shifted, _exact(w), None, a["stride"], a["padding"], a["dilation"], a["groups"]
                )
                acc = _to_int(y, op.layer) + b.reshape(1, -1, 1, 1)
            else:
                acc = _to_int(shifted @ _exact(w).T, op.layer) + b.reshape(1, -1)
            multipliers = float(inp.scale[0]) * op.weight_qparams.scale / float(out.scale[0])  # type: ignore[union-attr]
            channel_axis = 1 if op.kind == "conv" else acc.ndim - 1  # linear: (..., C)
            values[op.output] = _requantize_op(
                op, acc, multipliers, out, channel_axis if multipliers.size > 1 else None
            )
        elif op.kind == "maxpool":
            a = op.attrs
            y = F.max_pool2d(_exact(q), a["kernel"], a["stride"], a["padding"])
            values[op.output] = np.rint(y.numpy()).astype(np.int64)
        elif op.kind in ("avgpool", "adaptive_avgpool"):
            if op.kind == "avgpool":
                a = op.attrs
                count = a["kernel"][0] * a["kernel"][1]
                window_sum = (
                    F.avg_pool2d(_exact(q - z_in), a["kernel"], a["stride"], a["padding"]) * count
                )
            else:
                count = q.shape[2] * q.shape[3]
                window_sum = _exact(q - z_in).sum(dim=(2, 3), keepdim=True)
            acc = _to_int(window_sum, op.layer)
            multiplier = np.array([float(inp.scale[0]) / (float(out.scale[0]) * count)])
            values[op.output] = _requantize_op(op, acc, multiplier, out, None)
        elif op.kind == "flatten":
            values[op.output] = q.reshape(q.shape[0], -1)
        elif op.kind == "relu":
            low, high = activation_bounds(op, out)
            values[op.output] = np.clip(q, low, high)
        elif op.kind == "add":
            values[op.output] = _integer_add(op, values, graph)
        else:  # pragma: no cover - build_graph admits no other kind
            raise ConfigError(f"no integer kernel for {op.kind}")
    return values[graph.output]


def _real(q: np.ndarray, params: QParams) -> np.ndarray:
    """``S (q - Z)`` in float32, as ONNX ``DequantizeLinear`` computes it (per tensor)."""
    return (q - int(params.zero_point[0])).astype(np.float32) * np.float32(params.scale[0])


def _real_inputs(op: QOp, values: dict[str, np.ndarray], graph: QGraph) -> list[torch.Tensor]:
    """The inputs of ``op`` as real numbers: quantized ones dequantized, exact ones as they are."""
    return [
        torch.from_numpy(
            _real(values[name], graph.qparams[name]) if name in graph.qparams else values[name]
        )
        for name in op.inputs
    ]


def _float_island(op: QOp, values: dict[str, np.ndarray], graph: QGraph) -> np.ndarray:
    """Dequantize the inputs, run the float op in float32, quantize its output."""
    table = None
    if op.kind == "embedding":
        assert op.weight_qparams is not None
        scale = op.weight_qparams.scale.astype(np.float32)
        rows = integer_weight(op).astype(np.float32)
        table = torch.from_numpy(rows * (scale.reshape(-1, 1) if scale.size > 1 else scale[0]))
    y = apply_op(op, _real_inputs(op, values, graph), table, None)
    out = graph.qparams[op.output]
    low, high = activation_bounds(op, out)
    return np.clip(quantize(y.numpy(), out), low, high)


def _move(op: QOp, values: dict[str, np.ndarray], graph: QGraph) -> np.ndarray:
    """Reshape, transpose, slice or concatenate the integers themselves."""
    out = graph.qparams[op.output]
    for name in op.inputs:
        params = graph.qparams[name]
        if float(params.scale[0]) != float(out.scale[0]) or int(params.zero_point[0]) != int(
            out.zero_point[0]
        ):
            raise ConfigError(
                f"layer {op.layer or op.name!r} ({op.kind}): input {name!r} has another scale or "
                "zero point than the output; int8 data movement needs one shared by all"
            )
    args = [torch.from_numpy(values[name]) for name in op.inputs]
    return apply_op(op, args, None, None).numpy()


def _integer_matmul(op: QOp, values: dict[str, np.ndarray], graph: QGraph) -> np.ndarray:
    """int8 × int8 → int32 matrix product of two activations, requantized to the output."""
    (a, b), out = op.inputs, graph.qparams[op.output]
    a_params, b_params = graph.qparams[a], graph.qparams[b]
    shifted_a = _exact(values[a] - int(a_params.zero_point[0]))
    shifted_b = _exact(values[b] - int(b_params.zero_point[0]))
    acc = _to_int(torch.matmul(shifted_a, shifted_b), op.layer or op.name)
    multiplier = np.array(
        [float(a_params.scale[0]) * float(b_params.scale[0]) / float(out.scale[0])]
    )
    return _requantize_op(op, acc, multiplier, out, None)


def _integer_add(op: QOp, values: dict[str, np.ndarray], graph: QGraph) -> np.ndarray:
    """TFLite's reference quantized Add: rescale both inputs to a common fixed-point scale."""
    a_params, b_params = (graph.qparams[name] for name in op.inputs)
    out = graph.qparams[op.output]
    s_a, s_b, s_out = float(a_params.scale[0]), float(b_params.scale[0]), float(out.scale[0])
    twice_max = 2 * max(s_a, s_b)
    scaled = []
    for name, params, s in ((op.inputs[0], a_params, s_a), (op.inputs[1], b_params, s_b)):
        shifted = (values[name] - int(params.zero_point[0])) * (1 << ADD_LEFT_SHIFT)
        m0, shift = quantize_multiplier(s / twice_max)
        scaled.append(multiply_by_quantized_multiplier(shifted, m0, shift))
    raw = scaled[0] + scaled[1]
    m0, shift = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
    low, high = activation_bounds(op, out)
    return np.clip(
        multiply_by_quantized_multiplier(raw, m0, shift) + int(out.zero_point[0]), low, high
    )


def run_reference(graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Integer-only inference on ``x`` (float32, N×C×H×W); returns float logits ``S (q - Z)``."""
    return dequantize(run_integer(graph, x), graph.qparams[graph.output]).astype(np.float32)

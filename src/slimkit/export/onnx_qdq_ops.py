"""QDQ patterns of the IR's data movement, matrix product and float-island kinds.

Each op reads its inputs through ``DequantizeLinear`` (exact tensors, such as token ids, as they
are), computes in float with plain ONNX operators, and writes its output through
``QuantizeLinear`` with slimkit's scale:

- data movement (``Reshape``, ``Transpose``, ``Slice``/``Squeeze``, ``Concat``) keeps the input's
  scale, so ONNX Runtime drops the Q/DQ pair and moves the int8 values themselves;
- ``MatMul`` of two dequantized activations, which ONNX Runtime fuses into an integer
  ``QLinearMatMul``;
- float islands (``LayerNormalization``, softmax and GELU written out with ``Exp`` and ``Erf``,
  ``HardSwish``, ``HardSigmoid``, ``Sigmoid``, ``Elu``, ``Mul``/``Div``/...,
  ``ReduceMean``/``ReduceSum``, ``Gather`` from an int8 embedding table) run in float between the
  two;
- a parameter used directly is an int8 initializer read through ``DequantizeLinear``;
- a linear layer on tokens ``(..., C)`` is ``Reshape`` to rows → ``Gemm`` → ``Reshape`` back, with
  Q/DQ pairs around the ``Gemm`` so that it stays an integer ``QGemm``.

:func:`emit_op` is called by :mod:`slimkit.export.onnx_qdq`'s builder for these kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from slimkit.errors import ExportError
from slimkit.techniques.quantize.ir import QOp
from slimkit.techniques.quantize.scheme import quantize

ELEMENTWISE = {
    "hardswish": "HardSwish",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "round": "Round",
}
BINARY = {"add_constant": "Add", "mul": "Mul", "div": "Div", "sub": "Sub", "pow": "Pow"}


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _onnx_dtype(dtype: torch.dtype) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(_numpy_dtype(dtype)))


def _ints(values: list[int] | tuple[int, ...]) -> np.ndarray:
    return np.array(list(values), dtype=np.int64)


def _dtype_of(b: Any, name: str) -> torch.dtype:
    """dtype of the value an op reads: float32 when dequantized, else the exact tensor's own."""
    return b.graph.tensors[name].dtype if name not in b.graph.qparams else torch.float32


def _slice(b: Any, i: int, op: QOp, x: str) -> str:
    starts, ends, axes, steps, squeeze = [], [], [], [], []
    for axis, item in enumerate(op.attrs["index"]):
        if isinstance(item, slice):
            if item == slice(None):
                continue
            starts.append(item.start)
            ends.append(item.stop)
            steps.append(item.step)
        else:
            starts.append(item)
            ends.append(item + 1)
            steps.append(1)
            squeeze.append(axis)
        axes.append(axis)
    y = x
    if axes:
        args = [b.constant(f"c{i}", _ints(v)) for v in (starts, ends, axes, steps)]
        y = b.node("Slice", [x, *args], f"y{i}", name=op.name)
    if squeeze:
        y = b.node("Squeeze", [y, b.constant(f"c{i}", _ints(squeeze))], f"y{i}s")
    return y


def _gelu(b: Any, i: int, op: QOp, x: str) -> str:
    half = b.constant("half", np.array(0.5, dtype=np.float32))
    one = b.constant("one", np.array(1.0, dtype=np.float32))
    if op.attrs["approximate"] == "tanh":
        cube = b.node("Mul", [x, b.node("Mul", [x, x], f"y{i}a")], f"y{i}b")
        coef = b.constant("gelu_c", np.array(0.044715, dtype=np.float32))
        inner = b.node("Add", [x, b.node("Mul", [cube, coef], f"y{i}c")], f"y{i}d")
        root = b.constant("gelu_k", np.array(math.sqrt(2 / math.pi), dtype=np.float32))
        core = b.node("Tanh", [b.node("Mul", [inner, root], f"y{i}e")], f"y{i}f")
    else:
        root2 = b.constant("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
        core = b.node("Erf", [b.node("Div", [x, root2], f"y{i}a")], f"y{i}f")
    y = b.node("Mul", [x, b.node("Add", [core, one], f"y{i}g")], f"y{i}h")
    return b.node("Mul", [y, half], f"y{i}", name=op.name)


def _softmax(b: Any, i: int, op: QOp, x: str) -> str:
    """``exp(x - max) / sum exp(x - max)`` in plain operators, so that it stays float.

    A ``Softmax`` between Q/DQ pairs becomes ONNX Runtime's ``QLinearSoftmax``, a lookup-table
    kernel that differs from the float softmax by one step on about 2% of its outputs (measured on
    49 logits); written out, ONNX Runtime runs the float softmax the reference executor runs.
    """
    axes = b.constant(f"c{i}", _ints([op.attrs["dim"]]))
    peak = b.node("ReduceMax", [x, axes], f"y{i}a", keepdims=1)
    exp = b.node("Exp", [b.node("Sub", [x, peak], f"y{i}b")], f"y{i}c")
    total = b.node("ReduceSum", [exp, axes], f"y{i}d", keepdims=1)
    return b.node("Div", [exp, total], f"y{i}", name=op.name)


def _binary(b: Any, i: int, op: QOp, inputs: list[str]) -> str:
    dtype = b.graph.tensors[op.output].dtype
    cast = []
    for name, value in zip(op.inputs, inputs, strict=True):
        if _dtype_of(b, name) != dtype:
            value = b.node("Cast", [value], f"y{i}t", to=_onnx_dtype(dtype))
        cast.append(value)
    if len(cast) == 1:
        constant = np.array(op.attrs["constant"], dtype=_numpy_dtype(dtype))
        other = b.constant(f"k{i}", constant)
        cast = [other, cast[0]] if op.attrs.get("reverse") else [cast[0], other]
    left, right = cast
    if op.kind != "remainder":
        return b.node(BINARY[op.kind], [left, right], f"y{i}", name=op.name)
    if not dtype.is_floating_point:
        return b.node("Mod", [left, right], f"y{i}", name=op.name)
    # Python's modulo (sign of the divisor): x - floor(x / y) · y
    floor = b.node("Floor", [b.node("Div", [left, right], f"y{i}a")], f"y{i}b")
    return b.node("Sub", [left, b.node("Mul", [floor, right], f"y{i}c")], f"y{i}", name=op.name)


def _layer_norm(b: Any, i: int, op: QOp, x: str) -> str:
    a = op.attrs
    shape = tuple(a["normalized_shape"])
    weight = a["weight"].numpy() if a["weight"] is not None else np.ones(shape, np.float32)
    inputs = [x, b.constant(f"ln{i}w", weight.astype(np.float32))]
    if a["bias"] is not None:
        inputs.append(b.constant(f"ln{i}b", a["bias"].numpy().astype(np.float32)))
    return b.node(
        "LayerNormalization", inputs, f"y{i}", name=op.name, axis=-len(shape), epsilon=a["eps"]
    )


def _clamp(b: Any, i: int, op: QOp, x: str) -> str:
    dtype = _numpy_dtype(b.graph.tensors[op.output].dtype)
    bounds = [
        "" if v is None else b.constant(f"k{i}", np.array(v, dtype=dtype))
        for v in (op.attrs["min"], op.attrs["max"])
    ]
    return b.node("Clip", [x, *bounds], f"y{i}", name=op.name)


def _reduce(b: Any, i: int, op: QOp, x: str) -> str:
    kind = "ReduceMean" if op.kind == "mean" else "ReduceSum"
    axes = b.constant(f"c{i}", _ints(op.attrs["dims"]))
    return b.node(kind, [x, axes], f"y{i}", name=op.name, keepdims=int(op.attrs["keepdim"]))


def _linear_rows(b: Any, i: int, op: QOp, x: str) -> str:
    """A linear layer on ``(..., C)``: rows → Gemm (integer, between Q/DQ pairs) → shape back."""
    g = b.graph
    assert op.weight is not None
    in_params, out_params = g.qparams[op.inputs[0]], g.qparams[op.output]
    rows = b.node("Reshape", [x, b.constant("rows", _ints([-1, op.weight.shape[1]]))], f"y{i}r")
    inputs = [b.requantized(rows, in_params, i), b.weight(op, i)]
    if op.bias is not None:
        inputs.append(b.bias(op, i, in_params))
    y = b.node("Gemm", inputs, f"y{i}", name=op.name, transB=1)
    y = b.requantized(b.activation(op, i, y), out_params, i)
    shape = b.constant(f"c{i}", _ints(g.tensors[op.output].shape))
    return b.node("Reshape", [y, shape], f"y{i}s")


def _embedding(b: Any, i: int, op: QOp, ids: str) -> str:
    return b.node("Gather", [b.weight(op, i), ids], f"y{i}", name=op.name, axis=0)


UNARY: dict[str, Callable[[Any, int, QOp, str], str]] = {
    "reshape": lambda b, i, op, x: b.node(
        "Reshape", [x, b.constant(f"c{i}", _ints(op.attrs["shape"]))], f"y{i}", name=op.name
    ),
    "transpose": lambda b, i, op, x: b.node(
        "Transpose", [x], f"y{i}", name=op.name, perm=op.attrs["perm"]
    ),
    "slice": _slice,
    "layer_norm": _layer_norm,
    "softmax": _softmax,
    "gelu": _gelu,
    "hardsigmoid": lambda b, i, op, x: b.node(
        "HardSigmoid", [x], f"y{i}", name=op.name, alpha=1.0 / 6.0, beta=0.5
    ),
    "silu": lambda b, i, op, x: b.node(
        "Mul", [x, b.node("Sigmoid", [x], f"y{i}a")], f"y{i}", name=op.name
    ),
    "elu": lambda b, i, op, x: b.node("Elu", [x], f"y{i}", name=op.name, alpha=op.attrs["alpha"]),
    "mean": _reduce,
    "sum": _reduce,
    "clamp": _clamp,
    "cast": lambda b, i, op, x: b.node(
        "Cast", [x], f"y{i}", name=op.name, to=_onnx_dtype(op.attrs["dtype"])
    ),
    "embedding": _embedding,
    "linear": _linear_rows,
    "relu": lambda b, i, op, x: x,  # an exact ReLU: its activation below
    "flatten": lambda b, i, op, x: b.node("Flatten", [x], f"y{i}", name=op.name, axis=1),
    **{
        kind: (lambda t: lambda b, i, op, x: b.node(t, [x], f"y{i}", name=op.name))(op_type)
        for kind, op_type in ELEMENTWISE.items()
    },
}


def _constant(b: Any, i: int, op: QOp) -> None:
    value = op.attrs["value"].detach()
    if not op.quantized:
        b.raw[op.output] = b.constant(f"k{i}", value.numpy())
        return
    params = b.graph.qparams[op.output]
    dtype = np.uint8 if params.dtype == "uint8" else np.int8
    stored = b.constant(f"k{i}", quantize(value.float().numpy(), params).astype(dtype))
    b.stored[op.output] = (stored, b.scale(f"s{i}", params), b.zero_point(f"z{i}", params))


def emit_op(b: Any, i: int, op: QOp) -> None:
    """Append the ONNX nodes of op number ``i`` to the builder ``b`` and register its output."""
    if op.kind == "constant":
        _constant(b, i, op)
        return
    inputs = [b.read(name) for name in op.inputs]
    if op.kind == "concat":
        y = b.node("Concat", inputs, f"y{i}", name=op.name, axis=op.attrs["axis"])
    elif op.kind == "matmul":
        y = b.node("MatMul", inputs, f"y{i}", name=op.name)
    elif op.kind == "add":  # two exact tensors (integer ids and offsets)
        y = b.node("Add", inputs, f"y{i}", name=op.name)
    elif op.kind in BINARY or op.kind == "remainder":
        y = _binary(b, i, op, inputs)
    elif op.kind in UNARY:
        y = UNARY[op.kind](b, i, op, inputs[0])
    else:
        raise ExportError(f"layer {op.layer or op.name!r}: no QDQ pattern for {op.kind}")
    if op.kind != "linear":  # the rows' Gemm applied it
        y = b.activation(op, i, y)
    if op.quantized:
        b.qdq(op.output, y, b.graph.qparams[op.output])
    else:
        b.raw[op.output] = y

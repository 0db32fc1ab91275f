"""The float computation of the IR's data movement, matrix product and float-island kinds.

One function for every consumer: calibration runs it on float activations, the simulated model on
fake-quantized ones, and the integer reference executor on dequantized int8 values (for the float
islands) or on exact tensors; data movement gives the same result on integers as on floats.

Example:
    >>> import torch
    >>> from slimkit.techniques.quantize.ir import QOp
    >>> op = QOp("transpose", "t", ["x"], "t", attrs={"perm": [0, 2, 1]})
    >>> apply_tensor_op(op, [torch.zeros(2, 3, 4)]).shape
    torch.Size([2, 4, 3])
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from slimkit.techniques.quantize.ir import QOp

BINARY_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "add_constant": operator.add,
    "mul": operator.mul,
    "div": operator.truediv,
    "sub": operator.sub,
    "pow": operator.pow,
    "remainder": operator.mod,
}
UNARY_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "round": torch.round,
}


def apply_tensor_op(
    op: QOp, args: list[torch.Tensor], weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The float (or exact integer) computation of one op of the kinds this module covers.

    Args:
        op: the op.
        args: its input tensors, in ``op.inputs`` order.
        weight: the table of an ``embedding`` (``op.weight`` when None).
    """
    a, kind = op.attrs, op.kind
    if kind == "constant":
        return a["value"]
    x = args[0]
    if kind == "reshape":
        return x.reshape(a["shape"])
    if kind == "transpose":
        return x.permute(a["perm"])
    if kind == "slice":
        return x[a["index"]]
    if kind == "concat":
        return torch.cat(args, a["axis"])
    if kind == "matmul":
        return torch.matmul(args[0], args[1])
    if kind == "layer_norm":
        return F.layer_norm(x, a["normalized_shape"], a["weight"], a["bias"], a["eps"])
    if kind == "softmax":
        return torch.softmax(x, a["dim"])
    if kind == "gelu":
        return F.gelu(x, approximate=a["approximate"])
    if kind == "elu":
        return F.elu(x, a["alpha"])
    if kind in UNARY_FUNCTIONS:
        return UNARY_FUNCTIONS[kind](x)
    if kind in BINARY_FUNCTIONS:
        other = args[1] if len(args) > 1 else a["constant"]
        left, right = (other, x) if a.get("reverse") else (x, other)
        return BINARY_FUNCTIONS[kind](left, right)
    if kind == "mean":
        return x.mean(a["dims"], keepdim=a["keepdim"])
    if kind == "sum":
        return x.sum(a["dims"], keepdim=a["keepdim"])
    if kind == "clamp":
        return x.clamp(a["min"], a["max"])
    if kind == "cast":
        return x.to(a["dtype"])
    if kind == "embedding":
        table = weight if weight is not None else op.weight
        assert table is not None
        return F.embedding(x, table)
    raise AssertionError(f"unknown op kind {kind}")

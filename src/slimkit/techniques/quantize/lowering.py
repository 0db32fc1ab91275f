"""Lowering the nodes of attention, embedding and channel-shuffle models to IR ops.

:func:`lower_node` turns one ``torch.fx`` node that :func:`~slimkit.techniques.quantize.graph.
build_graph` does not handle itself into a :class:`QOp` of the kinds listed in
:mod:`slimkit.techniques.quantize.ir`: data movement (reshape, transpose, indexing, chunk, split,
concatenation), matrix products of two activations, and float islands (layer norm, softmax,
activations, element-wise arithmetic, reductions, embedding lookups). Shapes come from
:class:`~slimkit.techniques.quantize.shapes.TracedValues`, so ``x.reshape(n, g, c // g, h, w)``
becomes a reshape to ``(-1, g, c/g, h, w)`` whatever code computed the sizes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.ir import QOp
from slimkit.techniques.quantize.shapes import TensorMeta, TracedValues

RESHAPES = (
    "reshape",
    "view",
    torch.reshape,
    "flatten",
    torch.flatten,
    "unsqueeze",
    torch.unsqueeze,
    "squeeze",
    torch.squeeze,
    "unflatten",
)
IDENTITIES = ("contiguous", "clone", torch.clone, "detach")
CASTS = {"long": torch.int64, "int": torch.int32, "float": torch.float32}
TRANSPOSES = ("transpose", torch.transpose, "permute", torch.permute, "t")
SPLITS = ("chunk", torch.chunk, "split", torch.split, "unbind", torch.unbind)
BINARY = {
    "add_constant": (operator.add, torch.add, "add"),
    "mul": (operator.mul, torch.mul, "mul"),
    "div": (operator.truediv, torch.div, torch.true_divide, "div"),
    "sub": (operator.sub, torch.sub, "sub"),
    "pow": (operator.pow, torch.pow, "pow"),
    "remainder": (operator.mod, torch.remainder, "remainder"),
}
UNARY_FUNCTIONS: dict[Any, str] = {
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    "sigmoid": "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    "tanh": "tanh",
    F.silu: "silu",
    torch.round: "round",
    "round": "round",
}
UNARY_MODULES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Hardswish, "hardswish"),
    (nn.Hardsigmoid, "hardsigmoid"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.SiLU, "silu"),
)
MATMULS = (operator.matmul, torch.matmul, "matmul", torch.bmm, "bmm")
REDUCTIONS = {"mean": ("mean", torch.mean), "sum": ("sum", torch.sum)}
SOFTMAXES = ("softmax", torch.softmax, F.softmax)
CLAMPS = ("clamp", "clip", torch.clamp, torch.clip)
CONCATS = (torch.cat, torch.concat, torch.concatenate)


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of a call (``self`` is argument 0 of a method), or keyword ``name``."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _axis(dim: int, meta: TensorMeta, layer: str, *, batch_ok: bool = True) -> int:
    axis = dim + meta.rank if dim < 0 else dim
    if not 0 <= axis < meta.rank:
        raise ConfigError(f"layer {layer!r}: dimension {dim} is out of range for rank {meta.rank}")
    if not batch_ok and meta.shape[axis] == -1:
        raise ConfigError(
            f"layer {layer!r} works across the batch dimension; int8 quantization supports "
            "operations within one sample only"
        )
    return axis


def _number(value: Any, layer: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"layer {layer!r}: expected a number, got {value!r}")
    return value


class _Lowering:
    """The state one call of :func:`lower_node` needs: the node, its layer name and the values."""

    def __init__(
        self,
        gm: fx.GraphModule,
        node: fx.Node,
        values: TracedValues,
        source: Callable[[Any], str],
        layer: str,
    ) -> None:
        self.gm, self.node, self.values, self.source, self.layer = gm, node, values, source, layer

    def op(self, kind: str, inputs: list[Any], **attrs: Any) -> QOp:
        return QOp(
            kind,
            self.node.name,
            [self.source(i) for i in inputs],
            self.node.name,
            self.layer,
            None,
            attrs,
        )

    def static(self, value: Any) -> Any:
        return self.values.static(value, self.layer)

    def meta(self, node: Any) -> TensorMeta:
        return self.values.meta(node)

    def is_tensor(self, value: Any) -> bool:
        return self.values.is_tensor(value)

    def reshape(self, x: fx.Node) -> QOp | str:
        shape = self.meta(self.node).shape
        if shape == self.meta(x).shape:
            return self.source(x)
        if shape.count(-1) > 1:
            raise ConfigError(
                f"layer {self.layer!r}: reshape to {shape} has more than one dimension that "
                "depends on the batch"
            )
        return self.op("reshape", [x], shape=list(shape))

    def transpose(self, x: fx.Node) -> QOp | str:
        meta, target = self.meta(x), self.node.target
        perm = list(range(meta.rank))
        if target in ("permute", torch.permute):
            dims = self.static(list(self.node.args[1:]) or self.node.kwargs.get("dims"))
            if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
                dims = dims[0]
            perm = [_axis(int(d), meta, self.layer) for d in dims]
        elif target == "t":
            perm = perm[::-1]
        else:
            a = _axis(int(self.static(_arg(self.node, 1, "dim0"))), meta, self.layer)
            b = _axis(int(self.static(_arg(self.node, 2, "dim1"))), meta, self.layer)
            perm[a], perm[b] = perm[b], perm[a]
        if perm == list(range(meta.rank)):
            return self.source(x)
        return self.op("transpose", [x], perm=perm)

    def index(self, x: fx.Node, index: Any) -> QOp:
        meta = self.meta(x)
        items = index if isinstance(index, tuple) else (index,)
        if any(item is Ellipsis for item in items):
            at = items.index(Ellipsis)
            fill = (slice(None),) * (meta.rank - len(items) + 1)
            items = items[:at] + fill + items[at + 1 :]
        if len(items) > meta.rank:
            raise ConfigError(f"layer {self.layer!r}: too many indices for rank {meta.rank}")
        normalized: list[Any] = []
        for axis, item in enumerate(items):
            if isinstance(item, slice):
                bounds = [self.static(v) for v in (item.start, item.stop, item.step)]
                if bounds == [None, None, None]:
                    normalized.append(slice(None))
                    continue
                _axis(axis, meta, self.layer, batch_ok=False)
                start, stop, step = slice(*bounds).indices(meta.shape[axis])
                if step < 1:
                    raise ConfigError(f"layer {self.layer!r}: int8 slicing needs a step >= 1")
                normalized.append(slice(start, stop, step))
            elif isinstance(item, int) and not isinstance(item, bool):
                _axis(axis, meta, self.layer, batch_ok=False)
                size = meta.shape[axis]
                if not -size <= item < size:
                    raise ConfigError(f"layer {self.layer!r}: index {item} out of range {size}")
                normalized.append(item % size)
            else:
                raise ConfigError(
                    f"layer {self.layer!r}: int8 indexing supports integers and slices; got "
                    f"{item!r}"
                )
        return self.op("slice", [x], index=tuple(normalized))

    def piece(self, parts: fx.Node, i: int) -> QOp:
        """``getitem`` on the result of ``chunk``/``split``/``unbind``: a slice of its input."""
        if parts.target not in SPLITS:
            raise ConfigError(
                f"layer {self.layer!r}: int8 quantization cannot index the result of "
                f"{getattr(parts.target, '__name__', parts.target)}"
            )
        x = parts.args[0]
        meta = self.meta(x)
        position = 1 if parts.target in ("unbind", torch.unbind) else 2
        dim = _axis(
            int(self.static(_arg(parts, position, "dim", 0))), meta, self.layer, batch_ok=False
        )
        pieces = self.values.pieces(parts)
        lead: tuple[Any, ...] = (slice(None),) * dim
        if parts.target in ("unbind", torch.unbind):
            return self.op("slice", [x], index=(*lead, i))
        start = sum(p.shape[dim] for p in pieces[:i])
        return self.op("slice", [x], index=(*lead, slice(start, start + pieces[i].shape[dim], 1)))

    def binary(self, kind: str) -> QOp:
        a, b = self.node.args[0], self.node.args[1]
        if kind == "div" and self.node.kwargs.get("rounding_mode") is not None:
            raise ConfigError(f"layer {self.layer!r}: int8 division supports true division only")
        if kind == "add_constant" and self.node.kwargs.get("alpha", 1) != 1:
            raise ConfigError(f"layer {self.layer!r}: int8 addition supports alpha=1 only")
        if self.is_tensor(a) and self.is_tensor(b):
            if kind == "add_constant":
                raise ConfigError(
                    f"layer {self.layer!r}: addition of an exact and a quantized tensor"
                )
            return self.op(kind, [a, b])
        if self.is_tensor(a):
            return self.op(kind, [a], constant=_number(self.static(b), self.layer), reverse=False)
        return self.op(kind, [b], constant=_number(self.static(a), self.layer), reverse=True)

    def reduction(self, kind: str, x: fx.Node) -> QOp:
        meta = self.meta(x)
        dims = self.static(_arg(self.node, 1, "dim"))
        if dims is None:
            raise ConfigError(
                f"layer {self.layer!r}: int8 {kind} needs dim= (a reduction over the whole "
                "tensor crosses the batch)"
            )
        if self.node.kwargs.get("dtype") is not None:
            raise ConfigError(f"layer {self.layer!r}: int8 {kind} does not support dtype=")
        dims = [dims] if isinstance(dims, int) else list(dims)
        axes = sorted(_axis(int(d), meta, self.layer, batch_ok=False) for d in dims)
        keepdim = bool(self.static(_arg(self.node, 2, "keepdim", False)))
        return self.op(kind, [x], dims=axes, keepdim=keepdim)

    def cast(self, x: fx.Node, dtype: torch.dtype | None) -> QOp | str:
        if dtype is None or dtype == self.meta(x).dtype:
            return self.source(x)
        return self.op("cast", [x], dtype=dtype)

    def module(self, module: nn.Module, x: fx.Node) -> QOp | str | None:
        for cls, kind in UNARY_MODULES:
            if isinstance(module, cls):
                return self.op(kind, [x])
        if isinstance(module, nn.GELU):
            return self.op("gelu", [x], approximate=module.approximate)
        if isinstance(module, nn.ELU):
            return self.op("elu", [x], alpha=float(module.alpha))
        if isinstance(module, nn.Softmax):
            if module.dim is None:
                raise ConfigError(f"layer {self.layer!r}: int8 softmax needs an explicit dim")
            return self.op("softmax", [x], dim=_axis(module.dim, self.meta(x), self.layer))
        if isinstance(module, nn.LayerNorm):
            shape = list(module.normalized_shape)
            return self.op(
                "layer_norm",
                [x],
                normalized_shape=shape,
                eps=float(module.eps),
                weight=None if module.weight is None else module.weight.detach().clone(),
                bias=None if module.bias is None else module.bias.detach().clone(),
            )
        if isinstance(module, nn.Embedding):
            if module.max_norm is not None:
                raise ConfigError(f"layer {self.layer!r}: int8 embedding needs max_norm=None")
            if self.meta(x).dtype.is_floating_point:
                raise ConfigError(f"layer {self.layer!r}: embedding ids must be integers")
            op = self.op("embedding", [x])
            op.weight = module.weight.detach().clone()
            return op
        if isinstance(module, (nn.Flatten, nn.Unflatten)):
            return self.reshape(x)
        return None

    def function(self) -> QOp | str | None:
        node, target = self.node, self.node.target
        x: Any = node.args[0] if node.args else None
        if target in RESHAPES:
            return self.reshape(x)
        if target in TRANSPOSES:
            return self.transpose(x)
        if target in IDENTITIES:
            return self.source(x)
        if target in CASTS:
            return self.cast(x, CASTS[target])
        if target in ("to", "type"):
            dtypes = [
                a for a in (*node.args[1:], *node.kwargs.values()) if isinstance(a, torch.dtype)
            ]
            return self.cast(x, dtypes[0] if dtypes else None)
        if target is operator.getitem:
            if self.values.is_tensor_tuple(x):
                return self.piece(x, int(self.static(node.args[1])))
            return self.index(x, self.static(node.args[1]))
        if target in CONCATS:
            tensors: list[Any] = list(x)
            if not all(self.is_tensor(t) for t in tensors):
                raise ConfigError(f"layer {self.layer!r}: int8 concatenation needs tensors")
            dim = int(self.static(_arg(node, 1, "dim", 0)))
            return self.op("concat", tensors, axis=_axis(dim, self.meta(node), self.layer))
        if target in MATMULS:
            if not (self.is_tensor(node.args[0]) and self.is_tensor(node.args[1])):
                raise ConfigError(f"layer {self.layer!r}: int8 matmul needs two tensors")
            return self.op("matmul", [node.args[0], node.args[1]])
        for kind, targets in BINARY.items():
            if target in targets:
                return self.binary(kind)
        for kind, targets in REDUCTIONS.items():
            if target in targets:
                return self.reduction(kind, x)
        if target in SOFTMAXES:
            if node.kwargs.get("dtype") is not None:
                raise ConfigError(f"layer {self.layer!r}: int8 softmax does not support dtype=")
            dim = self.static(_arg(node, 1, "dim"))
            if dim is None:
                raise ConfigError(f"layer {self.layer!r}: int8 softmax needs an explicit dim")
            return self.op("softmax", [x], dim=_axis(int(dim), self.meta(x), self.layer))
        if target is F.gelu:
            return self.op("gelu", [x], approximate=node.kwargs.get("approximate", "none"))
        if target is F.elu:
            return self.op("elu", [x], alpha=float(self.static(_arg(node, 1, "alpha", 1.0))))
        if target in CLAMPS:
            low = self.static(_arg(node, 1, "min"))
            high = self.static(_arg(node, 2, "max"))
            return self.op("clamp", [x], min=low, max=high)
        if target in UNARY_FUNCTIONS:
            if UNARY_FUNCTIONS[target] == "round" and node.kwargs.get("decimals", 0):
                raise ConfigError(f"layer {self.layer!r}: int8 round supports decimals=0 only")
            return self.op(UNARY_FUNCTIONS[target], [x])
        return None


def lower_node(
    gm: fx.GraphModule,
    node: fx.Node,
    values: TracedValues,
    source: Callable[[Any], str],
    layer: str,
) -> QOp | str | None:
    """The IR op of one node, or the tensor it aliases (an identity), or None if unsupported.

    Args:
        gm: the traced model.
        node: a ``call_module``, ``call_function`` or ``call_method`` node computing a tensor.
        values: shapes and scalars of every node.
        source: maps a node argument to the IR tensor it stands for.
        layer: the layer's name, for error messages.

    Raises:
        ConfigError: when the node is a supported operation used in an unsupported way.
    """
    lowering = _Lowering(gm, node, values, source, layer)
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        x: Any = node.args[0]
        return lowering.module(module, x)
    return lowering.function()

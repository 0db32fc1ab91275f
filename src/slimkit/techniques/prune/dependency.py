"""Channel dependency analysis: which channels must be removed together.

Removing output channel ``c`` of a convolution also removes input channel ``c`` of every layer that
reads it — through batch norm, activations, pooling, depthwise convolutions, ``flatten → linear``
(where channel ``c`` is ``H·W`` consecutive features), residual additions (every tensor added
together must drop the same channels: they are *coupled*) and concatenation (channel ``c`` of an
input is channel ``offset + c`` of the output). The analysis traces the model with ``torch.fx``,
propagates shapes, and gives each tensor a *channel space* on its channel axis (dim 1 of images,
the last dim of tokens ``(N, L, C)``); spaces joined by an addition are merged (union-find). A
:class:`ChannelGroup` is one merged space: the layers whose output channels create it (producers),
and every layer that reads or carries it.

Grouped convolutions and channel shuffles (ShuffleNet) prune evenly: the same in-group index of
every group goes together (a *unit*), and the shuffle's permutation maps the indices of the layers
after it (:mod:`~slimkit.techniques.prune.reshapes`). Transformers prune their MLP hidden units
(``fc1`` outputs through the activation to ``fc2`` inputs); the residual stream stays whole, pinned
by the layer norms and the position embedding, and so do the attention heads, whose ``qkv`` output
is split into q, k, v and heads by one reshape the analysis does not follow (whole heads are
removed by :func:`~slimkit.techniques.prune.heads.prune_heads` instead).

Whatever the analysis does not understand pins (freezes) the channels it touches, with the reason:
pruning a pattern it cannot follow would silently produce a wrong model.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.errors import ConfigError
from slimkit.techniques.prune.channel_spaces import ChannelGroup, ChannelSpaces, Layout, Use
from slimkit.techniques.prune.reshapes import (
    check_shape_query,
    is_reduction,
    is_reshape,
    is_transpose,
    shape_of,
    visit_reduction,
    visit_reshape,
    visit_transpose,
)

__all__ = ["ChannelGroup", "Use", "analyze"]

# modules and functions that keep channel c in channel c, whatever the channel axis
ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Dropout,
    nn.Identity,
)
ELEMENTWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.hardswish,
    F.hardsigmoid,
    F.silu,
    F.gelu,
    F.elu,
    F.leaky_relu,
    F.dropout,
    F.hardtanh,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
# spatial ops on (N, C, ...) that keep channel c in channel c
SPATIAL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
SPATIAL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d}
COUPLING = {
    operator.add,
    operator.mul,
    operator.sub,
    operator.truediv,
    torch.add,
    torch.mul,
    torch.sub,
    torch.div,
    "add",
    "mul",
    "sub",
    "div",
    "__add__",
    "__mul__",
}
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORMALIZATIONS = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.RMSNorm)
SHAPE_QUERIES = {"size", "dim", "ndimension", "numel"}


def analyze(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """The channel groups of ``model`` for inputs of ``input_shape`` (one sample's shape)."""
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as error:
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx for channel pruning "
            f"({type(error).__name__}: {str(error).splitlines()[0][:160]})"
        ) from error
    ShapeProp(gm).propagate(torch.zeros((2, *input_shape)))
    a = ChannelSpaces()
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    for node in gm.graph.nodes:
        _visit(gm, node, a, calls)
    return a.groups()


def _inputs(node: fx.Node) -> list[fx.Node]:
    """Every node among the arguments, lists and keyword arguments included."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _pin_inputs(a: ChannelSpaces, node: fx.Node, reason: str) -> None:
    for arg in _inputs(node):
        a.pin(a.layouts.get(arg.name), reason)


def _unsupported(node: fx.Node, name: str, module: nn.Module | None) -> str:
    what = (
        type(module).__name__
        if module is not None
        else getattr(node.target, "__name__", str(node.target))
    )
    if isinstance(module, NORMALIZATIONS):
        return f"layer {name!r} ({what}) normalizes over the channels"
    return f"layer {name!r} ({what}) is not supported by channel pruning"


def _visit(gm: fx.GraphModule, node: fx.Node, a: ChannelSpaces, calls: dict[str, int]) -> None:
    shape = shape_of(node)
    name = str(node.target) if node.op == "call_module" else node.name
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
    first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    layout = a.layouts.get(first.name) if first is not None else None
    if node.op == "placeholder":
        if shape and len(shape) > 1:
            a.layouts[node.name] = a.fresh(shape[1], axis=1)
            a.pin(a.layouts[node.name], "the model input")
        return
    if node.op == "output":
        _pin_inputs(a, node, "the model output")
        return
    if node.op == "get_attr":
        return  # a parameter or buffer: untracked; whatever combines it with channels pins them
    if shape is None:  # not a tensor: shape queries, or ops returning tuples
        is_query = (node.op == "call_function" and node.target is getattr) or (
            node.op == "call_method" and node.target in SHAPE_QUERIES
        )
        if is_query:
            check_shape_query(a, node)
        else:
            _pin_inputs(a, node, _unsupported(node, name, module))
        return
    if module is not None and calls.get(str(node.target), 0) > 1 and list(module.parameters()):
        _pin_inputs(a, node, f"layer {name!r} is called more than once")
        return
    if isinstance(module, CONVOLUTIONS):
        _visit_convolution(a, node, name, module, layout)
    elif isinstance(module, nn.Linear):
        rank = len(shape)
        if layout is not None and (layout.axis != rank - 1 or layout.split is not None):
            a.pin(layout, f"linear layer {name!r} reads another dim than the channels")
        elif layout is not None:
            a.use_positions(layout, name, "consumer")
        a.layouts[node.name] = a.fresh(module.out_features, rank - 1, (name, "producer"))
    elif isinstance(module, nn.Embedding):
        a.pin(layout, f"embedding {name!r} reads them as ids")
        a.layouts[node.name] = a.fresh(module.embedding_dim, len(shape) - 1, (name, "producer"))
        if module.max_norm is not None:
            a.pin(a.layouts[node.name], f"embedding {name!r} renormalizes its rows (max_norm)")
    elif isinstance(module, BATCH_NORMS):
        if layout is not None and layout.axis == 1 and layout.split is None:
            a.use_positions(layout, name, "batch_norm")
            a.layouts[node.name] = layout
        else:
            a.pin(layout, _unsupported(node, name, module))
    elif (
        isinstance(module, ELEMENTWISE_MODULES)
        or (node.op == "call_function" and node.target in ELEMENTWISE_FUNCTIONS)
        or (node.op == "call_method" and node.target in ELEMENTWISE_METHODS)
    ):
        if layout is not None:
            a.layouts[node.name] = layout
    elif isinstance(module, SPATIAL_MODULES) or (
        node.op == "call_function" and node.target in SPATIAL_FUNCTIONS
    ):
        in_shape = shape_of(first)
        if layout is None:
            return
        if layout.axis == 1 and layout.split is None and in_shape and in_shape[1] == shape[1]:
            a.layouts[node.name] = layout
        else:
            a.pin(layout, f"pooling {name!r} over the channels")
    elif is_reduction(node):
        visit_reduction(a, node, name)
    elif is_reshape(node, module):
        visit_reshape(a, node, name)
    elif is_transpose(node):
        visit_transpose(a, node, name)
    elif node.op in ("call_function", "call_method") and node.target in COUPLING:
        _visit_coupling(a, node, name, shape, _inputs(node))
    elif node.op == "call_function" and node.target is torch.cat:
        tensors: Any = node.args[0]
        dim: Any = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        _visit_cat(a, node, name, shape, list(tensors), dim)
    else:
        _pin_inputs(a, node, _unsupported(node, name, module))


def _visit_convolution(
    a: ChannelSpaces, node: fx.Node, name: str, module: nn.Module, layout: Layout | None
) -> None:
    assert isinstance(module, CONVOLUTIONS)
    first = node.args[0]
    rank = len(shape_of(first) or ())
    if layout is not None and not (
        layout.axis == 1
        and layout.expand == 1
        and layout.split is None
        and rank == module.weight.dim()
    ):
        a.pin(layout, f"convolution {name!r} reads them in another layout")
        layout = None
    groups = module.groups
    if groups == module.in_channels == module.out_channels and groups > 1:  # depthwise
        if layout is not None:
            a.use_positions(layout, name, "depthwise")
            a.layouts[node.name] = layout
        return
    if layout is not None:
        a.use_positions(layout, name, "consumer")
        if groups > 1:  # the same in-group index of every input group goes together
            positions = layout.positions()
            per_group = module.in_channels // groups
            for i in range(per_group):
                members = [positions[g * per_group + i] for g in range(groups)]
                a.tie(members, f"grouped convolution {name!r}")
    out = a.fresh(module.out_channels, 1, (name, "producer"))
    if groups > 1:  # and of every output group
        positions, per_group = out.positions(), module.out_channels // groups
        for i in range(per_group):
            members = [positions[g * per_group + i] for g in range(groups)]
            a.tie(members, f"grouped convolution {name!r}")
    a.layouts[node.name] = out


def _visit_coupling(
    a: ChannelSpaces, node: fx.Node, name: str, shape: tuple[int, ...], inputs: list[fx.Node]
) -> None:
    """Elementwise ops of several tensors (residual adds, scales): their channels merge."""
    operands = [(t, s) for t in inputs if (s := shape_of(t)) is not None]
    rank = len(shape)
    axis = None  # the output dim of the channels: that of an operand that spans it in full
    for t, s in operands:
        layout = a.layouts.get(t.name)
        if layout is not None and s[layout.axis] == shape[layout.axis + rank - len(s)]:
            axis = layout.axis + rank - len(s)
            break
    joined: list[Layout] = []
    problem = "" if axis is not None else f"operation {name!r} combines channels along other dims"
    for t, s in operands:
        layout = a.layouts.get(t.name)
        dim = (axis if axis is not None else 0) - (rank - len(s))
        extent = s[dim] if 0 <= dim < len(s) else 1
        if layout is not None and layout.axis == dim and axis is not None and extent == shape[axis]:
            joined.append(layout)
        elif layout is not None and s[layout.axis] > 1:
            problem = problem or f"operation {name!r} combines channels along other dims"
        elif layout is None and extent > 1:
            what = f"parameter {t.target!r}" if t.op == "get_attr" else f"untracked {t.name!r}"
            problem = problem or f"operation {name!r} combines them with {what}"
    if not problem and not all(j.plain and j.expand == joined[0].expand for j in joined):
        problem = f"operation {name!r} on concatenated, shuffled or reshaped channels"
    if problem:
        for t, _ in operands:
            a.pin(a.layouts.get(t.name), problem)
    else:
        for other in joined[1:]:
            a.union(joined[0].pieces[0].space, other.pieces[0].space, name)
    if joined and axis is not None:
        a.layouts[node.name] = replace(joined[0], axis=axis)


def _visit_cat(
    a: ChannelSpaces,
    node: fx.Node,
    name: str,
    shape: tuple[int, ...],
    tensors: list[Any],
    dim: Any,
) -> None:
    """Along the channels: inputs side by side; along another dim: channels merge, as in an add."""
    layouts = [a.layouts.get(t.name) if isinstance(t, fx.Node) else None for t in tensors]
    dim = dim % len(shape) if isinstance(dim, int) else None
    tracked = [layout for layout in layouts if layout is not None]
    if not tracked:
        return
    first = tracked[0]
    if len(tracked) == len(layouts) and all(
        t.axis == first.axis and t.split is None and t.expand == first.expand for t in tracked
    ):
        if dim == first.axis:
            pieces = tuple(piece for t in tracked for piece in t.pieces)
            a.layouts[node.name] = Layout(pieces, first.axis, first.expand)
            return
        if dim is not None and all(t.plain for t in tracked):
            for other in tracked[1:]:
                a.union(first.pieces[0].space, other.pieces[0].space, name)
            a.layouts[node.name] = first
            return
    for layout in tracked:
        a.pin(layout, f"concatenation {name!r} of channels it cannot line up")

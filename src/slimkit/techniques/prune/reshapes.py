"""How reshapes, transposes and reductions move a tensor's channel axis, for the channel dependency
analysis: ``flatten`` before a linear layer, token tensors ``(N, L, C)`` whose channels are the last
dim, and the channel shuffle of ShuffleNet (Zhang et al. 2018, "ShuffleNet: An Extremely Efficient
Convolutional Neural Network for Mobile Devices"): ``reshape (N, g, C/g, ...) → transpose →
reshape (N, C, ...)``.

After pruning, every reshape must still compute the right shape from the smaller tensor: a size
argument at the channel dim must be ``-1`` or the run-time channel count of the same channels
(``x.shape[1]``, ``x.size(1) // g``). A literal number there would break the pruned model, so it
pins the channels instead; so does a channel count read for anything but such a reshape.

Channel shuffle, with ``m = C / g``: channel ``a·m + i`` moves to position ``i·g + a``. The pruned
model runs the same shuffle on its smaller tensor, which equals the dense shuffle restricted to the
kept channels only when every group keeps the same indices ``i``: the split ties channel ``i`` of
all ``g`` groups, and the merge maps every later use of the channels through the permutation.
"""

from __future__ import annotations

import math
import operator
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from slimkit.techniques.prune.channel_spaces import ChannelSpaces, Layout, Split, pieces_of

RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
RESHAPE_FUNCTIONS = {torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze}
TRANSPOSES = {"transpose", "permute", torch.transpose, torch.permute}
REDUCTIONS = {"mean", "sum", "amax", torch.mean, torch.sum, torch.amax}


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The propagated shape of a tensor node (``None`` for anything else)."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def is_reshape(node: fx.Node, module: nn.Module | None) -> bool:
    """``view``, ``reshape``, ``flatten``, ``squeeze``, ``unsqueeze`` (method, function, module)."""
    return (
        isinstance(module, nn.Flatten)
        or (node.op == "call_method" and node.target in RESHAPE_METHODS)
        or (node.op == "call_function" and node.target in RESHAPE_FUNCTIONS)
    )


def is_transpose(node: fx.Node) -> bool:
    return node.op in ("call_method", "call_function") and node.target in TRANSPOSES


def is_reduction(node: fx.Node) -> bool:
    return node.op in ("call_method", "call_function") and node.target in REDUCTIONS


def _size_args(node: fx.Node) -> list[Any] | None:
    """The target sizes of ``view``/``reshape`` (``None`` for ops that take none)."""
    if node.op == "call_method" and node.target in ("view", "reshape"):
        rest = list(node.args[1:]) or [node.kwargs.get("shape", node.kwargs.get("size"))]
    elif node.op == "call_function" and node.target is torch.reshape:
        rest = [node.args[1] if len(node.args) > 1 else node.kwargs.get("shape")]
    else:
        return None
    return list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest


def _whole_shape(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target is getattr and node.args[1] == "shape") or (
        node.op == "call_method" and node.target == "size" and len(node.args) == 1
    )


def size_source(arg: Any) -> tuple[fx.Node, int, int] | None:
    """``(tensor, dim, divisor)`` when ``arg`` computes ``tensor.shape[dim] // divisor``."""
    divisor = 1
    if (
        isinstance(arg, fx.Node)
        and arg.op == "call_function"
        and arg.target is operator.floordiv
        and isinstance(arg.args[1], int)
    ):
        divisor, arg = arg.args[1], arg.args[0]
    if not isinstance(arg, fx.Node):
        return None
    if arg.op == "call_method" and arg.target == "size" and len(arg.args) == 2:
        tensor, dim = arg.args
    elif arg.op == "call_function" and arg.target is operator.getitem:
        holder, dim = arg.args
        if not (isinstance(holder, fx.Node) and _whole_shape(holder)):
            return None
        tensor = holder.args[0]
    else:
        return None
    rank = len(shape_of(tensor) or ())
    if not (isinstance(tensor, fx.Node) and isinstance(dim, int) and rank):
        return None
    return tensor, dim % rank, divisor


def _signature(a: ChannelSpaces, layout: Layout) -> list[tuple[int, int]]:
    """The channels a layout holds, in any order: equal signatures stay equal after pruning."""
    return sorted((a.find(space), channel) for space, channel in layout.positions())


def check_shape_query(a: ChannelSpaces, node: fx.Node) -> None:
    """Pin a tensor whose channel count (``x.shape[c]``, ``x.size(c)``) is read for anything but
    the size argument of a reshape (which :func:`visit_reshape` checks); or whose whole shape or
    element count is passed on."""
    tensor = node.args[0] if node.args else None
    layout = a.layouts.get(tensor.name) if isinstance(tensor, fx.Node) else None
    if layout is None or tensor is None:
        return
    rank = len(shape_of(tensor) or ())
    reason = f"its channel count is read by {node.name!r} for something other than a reshape"
    values: list[fx.Node] = []
    if _whole_shape(node):
        for user in node.users:
            index = user.args[1] if user.target is operator.getitem else None
            if not isinstance(index, int):
                a.pin(layout, reason)
                return
            if index % rank == layout.axis:
                values.append(user)
    elif node.op == "call_method" and node.target == "size":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dim, int) and dim % rank == layout.axis:
            values.append(node)
    elif node.op == "call_method" and node.target in ("dim", "ndimension"):
        return
    elif not (
        node.op == "call_function" and node.args[1:2] in (("dtype",), ("device",), ("ndim",))
    ):
        a.pin(layout, reason)  # numel(), unknown attributes
        return
    for value in values:
        for user in value.users:
            readers = [user]
            if user.target is operator.floordiv and isinstance(user.args[1], int):
                readers = list(user.users)
            if not all(_size_args(reader) is not None for reader in readers):
                a.pin(layout, reason)
                return


def visit_reshape(a: ChannelSpaces, node: fx.Node, name: str) -> None:
    """Follow the channel axis through a reshape; pin the channels where it cannot."""
    source = node.args[0]
    assert isinstance(source, fx.Node)
    layout = a.layouts.get(source.name)
    in_shape, out_shape = shape_of(source), shape_of(node)
    sizes = _size_args(node)
    new = None
    if layout is not None and in_shape is not None and out_shape is not None:
        new = (
            _merge(layout, in_shape, out_shape)
            if layout.split
            else _keep(layout, in_shape, out_shape)
        )
        if new is not None and not _sizes_follow(a, node, layout, new, sizes):
            new = None
    # a channel count used anywhere else in the sizes would not follow the pruning
    for position, arg in enumerate(sizes or []):
        found = size_source(arg)
        src = a.layouts.get(found[0].name) if found is not None else None
        misplaced = new is None or position not in _channel_dims(new)
        if found is not None and src is not None and found[1] == src.axis and misplaced:
            a.pin(src, f"reshape {name!r} uses its channel count at another dim")
    if layout is None:
        return
    if new is None:
        a.pin(layout, f"reshape {name!r} mixes the channels with other dims")
        return
    if new.split is not None and layout.split is None:
        positions = layout.positions()
        groups = new.split.groups
        per_group = len(positions) // groups
        for i in range(per_group):
            members = [positions[g * per_group + i] for g in range(groups)]
            a.tie(members, f"reshape {name!r} into {groups} groups")
    a.layouts[node.name] = new


def _channel_dims(layout: Layout) -> tuple[int, ...]:
    return (layout.split.dim, layout.split.dim + 1) if layout.split else (layout.axis,)


def _keep(layout: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Layout | None:
    """Channel dim kept, merged with the dims after it (``flatten``), or split in two."""
    k = layout.axis
    before = math.prod(in_shape[:k])
    for k2 in range(len(out_shape)):
        if math.prod(out_shape[:k2]) != before:
            continue
        for j in range(k + 1, len(in_shape) + 1):
            if out_shape[k2] == math.prod(in_shape[k:j]) and math.prod(in_shape[j:]) == math.prod(
                out_shape[k2 + 1 :]
            ):
                return replace(
                    layout, axis=k2, expand=layout.expand * math.prod(in_shape[k + 1 : j])
                )
    if layout.expand != 1:
        return None
    for k2 in range(len(out_shape) - 1):  # (.., C, ..) -> (.., g, C / g, ..)
        if (
            math.prod(out_shape[:k2]) == before
            and out_shape[k2] * out_shape[k2 + 1] == in_shape[k]
            and math.prod(out_shape[k2 + 2 :]) == math.prod(in_shape[k + 1 :])
            and min(out_shape[k2], out_shape[k2 + 1]) > 1
        ):
            return replace(layout, axis=k2, split=Split(k2, out_shape[k2]))
    return None


def _merge(layout: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Layout | None:
    """The two dims of a split channel axis merged back, shuffled if they were transposed."""
    assert layout.split is not None
    d = layout.split.dim
    for k2 in range(len(out_shape)):
        if (
            math.prod(out_shape[:k2]) == math.prod(in_shape[:d])
            and out_shape[k2] == in_shape[d] * in_shape[d + 1]
            and math.prod(out_shape[k2 + 1 :]) == math.prod(in_shape[d + 2 :])
        ):
            positions = layout.positions()
            groups = layout.split.groups
            per_group = len(positions) // groups
            if layout.split.transposed:  # position i·g + a holds channel a·m + i
                positions = [
                    positions[g * per_group + i] for i in range(per_group) for g in range(groups)
                ]
            return Layout(pieces_of(positions), axis=k2)
    return None


def _sizes_follow(
    a: ChannelSpaces, node: fx.Node, layout: Layout, new: Layout, sizes: list[Any] | None
) -> bool:
    """True when the size arguments at the channel dims follow the channel count at run time."""
    if sizes is None:
        return True
    if len(sizes) != len(shape_of(node) or ()):
        return False
    signature = _signature(a, layout)

    def follows(arg: Any, divisor: int) -> bool:
        if not isinstance(arg, fx.Node) and arg == -1:
            return True
        found = size_source(arg)
        if found is None:
            return False
        src = a.layouts.get(found[0].name)
        return (
            src is not None
            and found[1:] == (src.axis, divisor)
            and src.expand == 1
            and src.split is None
            and _signature(a, src) == signature
        )

    if new.split is not None:
        d = new.split.dim
        literal = isinstance(sizes[d], int) and not isinstance(sizes[d], bool)
        return literal and sizes[d] == new.split.groups and follows(sizes[d + 1], new.split.groups)
    arg = sizes[new.axis]
    return (not isinstance(arg, fx.Node) and arg == -1) or (new.expand == 1 and follows(arg, 1))


def visit_transpose(a: ChannelSpaces, node: fx.Node, name: str) -> None:
    """Move the channel axis through ``transpose``/``permute``; flip a split channel axis."""
    source = node.args[0]
    assert isinstance(source, fx.Node)
    layout = a.layouts.get(source.name)
    rank = len(shape_of(source) or ())
    if layout is None or not rank:
        return
    order = list(range(rank))
    if node.target in ("transpose", torch.transpose):
        d0 = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim0")
        d1 = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim1")
        if not (isinstance(d0, int) and isinstance(d1, int)):
            a.pin(layout, f"transpose {name!r} with unknown dims")
            return
        order[d0 % rank], order[d1 % rank] = order[d1 % rank], order[d0 % rank]
    else:
        dims: Any = node.args[1:] if len(node.args) > 1 else node.kwargs.get("dims", ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        if len(dims) != rank or not all(isinstance(d, int) for d in dims):
            a.pin(layout, f"permute {name!r} with unknown dims")
            return
        order = [d % rank for d in dims]
    if layout.split is not None:
        d = layout.split.dim
        swapped = list(range(rank))
        swapped[d], swapped[d + 1] = d + 1, d
        if order == swapped:
            split = replace(layout.split, transposed=not layout.split.transposed)
            a.layouts[node.name] = replace(layout, split=split)
        elif order == list(range(rank)):
            a.layouts[node.name] = layout
        else:
            a.pin(layout, f"transpose {name!r} moves a split channel axis")
        return
    a.layouts[node.name] = replace(layout, axis=order.index(layout.axis))


def visit_reduction(a: ChannelSpaces, node: fx.Node, name: str) -> None:
    """``mean``/``sum``/``amax`` over dims other than the channels (global pooling, token mean)."""
    source = node.args[0]
    assert isinstance(source, fx.Node)
    layout = a.layouts.get(source.name)
    in_shape, out_shape = shape_of(source), shape_of(node)
    if layout is None or in_shape is None or out_shape is None:
        return
    raw: Any = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim: Any = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    raw = (raw,) if isinstance(raw, int) else tuple(raw or ())
    if layout.split is None and raw and all(isinstance(d, int) for d in raw):
        dims = {d % len(in_shape) for d in raw}
        axis = layout.axis if keepdim else layout.axis - sum(d < layout.axis for d in dims)
        if layout.axis not in dims and out_shape[axis : axis + 1] == in_shape[layout.axis :][:1]:
            a.layouts[node.name] = replace(layout, axis=axis)
            return
    a.pin(layout, f"reduction {name!r} over the channels")

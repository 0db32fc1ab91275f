"""Channel dependency analysis: which channels must be removed together.

Removing output channel ``c`` of a convolution also removes input channel ``c`` of every layer that
reads it — through batch norm, activations, pooling, depthwise convolutions, ``flatten → linear``
(where channel ``c`` is ``H·W`` consecutive features), residual additions (every tensor added
together must drop the same channels: they are *coupled*) and concatenation (channel ``c`` of an
input is channel ``offset + c`` of the output). The analysis traces the model with ``torch.fx``,
propagates shapes, and gives each tensor a *channel space*; spaces joined by an addition or a
depthwise convolution are merged (union-find). A :class:`ChannelGroup` is one merged space: the
layers whose output channels create it (producers), and every layer that reads or carries it.

Anything it does not understand raises :class:`ConfigError` naming the layer — pruning a pattern
it cannot follow would silently produce a wrong model.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.errors import ConfigError

# modules and functions that keep channel c in channel c
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
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
ELEMENTWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.hardswish,
    F.hardsigmoid,
    F.silu,
    F.gelu,
    F.dropout,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.hardtanh,
}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
SPATIAL_REDUCTIONS = {"mean", "sum", "amax", torch.mean, torch.sum, torch.amax}
COUPLING = {
    operator.add,
    operator.mul,
    operator.sub,
    torch.add,
    torch.mul,
    "add",
    "mul",
    "__add__",
    "__mul__",
}


@dataclass
class Space:
    """A set of channels flowing through the network (union-find node)."""

    size: int
    parent: int
    pinned: str = ""  # why these channels cannot be pruned ("" = prunable)


@dataclass
class Use:
    """One layer's relation to a channel space.

    ``role`` is ``producer`` (output channels of a conv/linear), ``consumer`` (input channels of a
    conv/linear; ``expand`` > 1 when read through ``flatten`` as ``expand`` features per channel;
    ``offset`` when read through a concatenation), ``batch_norm`` or ``depthwise``.
    """

    layer: str
    role: str
    expand: int = 1
    offset: int = 0


@dataclass
class ChannelGroup:
    """Channels that are removed together."""

    size: int
    uses: list[Use] = field(default_factory=list)
    pinned: str = ""

    @property
    def producers(self) -> list[str]:
        """Layers whose output channels make up this group."""
        return [u.layer for u in self.uses if u.role == "producer"]

    @property
    def prunable(self) -> bool:
        """True when the group may shrink (has a producer and nothing pins it)."""
        return not self.pinned and bool(self.producers)


class _Analysis:
    def __init__(self) -> None:
        self.spaces: list[Space] = []
        self.uses: dict[int, list[Use]] = {}
        # a tensor's channels: a list of (space, size) pieces (several after a concatenation)
        self.layout: dict[str, list[tuple[int, int]]] = {}
        self.expand: dict[str, int] = {}  # features per channel after flatten

    def new_space(self, size: int, pinned: str = "") -> int:
        self.spaces.append(Space(size, len(self.spaces), pinned))
        return len(self.spaces) - 1

    def find(self, i: int) -> int:
        while self.spaces[i].parent != i:
            self.spaces[i].parent = self.spaces[self.spaces[i].parent].parent
            i = self.spaces[i].parent
        return i

    def union(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.spaces[ra].size != self.spaces[rb].size:
            raise ConfigError(
                f"layer {where!r} joins {self.spaces[ra].size} and {self.spaces[rb].size} channels"
            )
        self.spaces[rb].parent = ra
        pinned = self.spaces[ra].pinned or self.spaces[rb].pinned
        self.spaces[ra].pinned = pinned

    def use(self, space: int, use: Use) -> None:
        self.uses.setdefault(space, []).append(use)

    def pin(self, tensor: str, reason: str) -> None:
        for space, _ in self.layout.get(tensor, []):
            root = self.find(space)
            self.spaces[root].pinned = self.spaces[root].pinned or reason


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def analyze(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """The channel groups of ``model`` for inputs of ``input_shape`` (C, H, W)."""
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as error:
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx for channel pruning "
            f"({type(error).__name__}: {str(error).splitlines()[0][:160]})"
        ) from error
    ShapeProp(gm).propagate(torch.zeros((2, *input_shape)))
    a = _Analysis()
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    for node in gm.graph.nodes:
        _visit(gm, node, a, calls)
    groups: dict[int, ChannelGroup] = {}
    for index in range(len(a.spaces)):
        root = a.find(index)
        group = groups.setdefault(
            root, ChannelGroup(a.spaces[root].size, pinned=a.spaces[root].pinned)
        )
        group.uses += a.uses.get(index, [])
    return [g for g in groups.values() if g.uses]


def _channels(a: _Analysis, node: fx.Node) -> list[tuple[int, int]]:
    return a.layout.get(node.name, [])


def _visit(gm: fx.GraphModule, node: fx.Node, a: _Analysis, calls: dict[str, int]) -> None:
    shape = _shape(node)
    name = str(node.target) if node.op == "call_module" else node.name
    if node.op == "placeholder":
        a.layout[node.name] = (
            [(a.new_space(shape[1], "the model input"), shape[1])]
            if shape and len(shape) > 1
            else []
        )
        return
    if node.op == "output":
        result = node.args[0]
        if isinstance(result, fx.Node):
            a.pin(result.name, "the model output")
        return
    if node.op == "get_attr":
        return
    if shape is None and node.op in ("call_function", "call_method"):
        return  # not a tensor (x.size(0), getattr of a shape): no channels to follow
    inputs = [arg for arg in node.args if isinstance(arg, fx.Node)]
    first = inputs[0] if inputs else None
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
    if module is not None and calls.get(str(node.target), 0) > 1 and list(module.parameters()):
        for arg in inputs:
            a.pin(arg.name, f"layer {name!r} is called more than once")
        a.layout[node.name] = (
            [(a.new_space(shape[1], f"layer {name!r} is shared"), shape[1])]
            if shape and len(shape) > 1
            else []
        )
        return
    if isinstance(module, nn.Conv2d):
        pieces = _channels(a, first) if first is not None else []
        depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
        if depthwise:
            for space, _ in pieces:
                a.use(space, Use(name, "depthwise"))
            a.layout[node.name] = list(pieces)
            return
        if module.groups > 1:
            for arg in inputs:
                a.pin(arg.name, f"grouped convolution {name!r}")
            a.layout[node.name] = [
                (
                    a.new_space(module.out_channels, f"grouped convolution {name!r}"),
                    module.out_channels,
                )
            ]
            return
        offset = 0
        for space, size in pieces:
            a.use(space, Use(name, "consumer", 1, offset))
            offset += size
        out = a.new_space(module.out_channels)
        a.use(out, Use(name, "producer"))
        a.layout[node.name] = [(out, module.out_channels)]
        return
    if isinstance(module, nn.Linear):
        pieces = _channels(a, first) if first is not None else []
        expand = a.expand.get(first.name, 1) if first is not None else 1
        in_shape = _shape(first) if first is not None else None
        if in_shape is not None and len(in_shape) != 2:
            for arg in inputs:
                a.pin(arg.name, f"linear layer {name!r} on a {len(in_shape)}-D input")
        else:
            offset = 0
            for space, size in pieces:
                a.use(space, Use(name, "consumer", expand, offset))
                offset += size
        out = a.new_space(module.out_features)
        a.use(out, Use(name, "producer"))
        a.layout[node.name] = [(out, module.out_features)]
        return
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        pieces = _channels(a, first) if first is not None else []
        for space, _ in pieces:
            a.use(space, Use(name, "batch_norm"))
        a.layout[node.name] = list(pieces)
        return
    if (
        isinstance(module, ELEMENTWISE_MODULES)
        or (node.op == "call_function" and node.target in ELEMENTWISE_FUNCTIONS)
        or (node.op == "call_method" and node.target in ELEMENTWISE_METHODS)
    ):
        if first is not None:
            a.layout[node.name] = list(_channels(a, first))
            if first.name in a.expand:
                a.expand[node.name] = a.expand[first.name]
        return
    if node.target in SPATIAL_REDUCTIONS and first is not None:
        in_shape = _shape(first)
        raw: Any = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims: tuple[int, ...] = (raw,) if isinstance(raw, int) else tuple(raw or ())
        rank = len(in_shape) if in_shape else 0
        if (
            in_shape
            and shape
            and dims
            and all(d % rank >= 2 for d in dims)
            and shape[1] == in_shape[1]
        ):
            a.layout[node.name] = list(_channels(a, first))
            return
    if (
        isinstance(module, nn.Flatten)
        or (node.op == "call_function" and node.target is torch.flatten)
        or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
    ):
        in_shape = _shape(first) if first is not None else None
        if in_shape is None or shape is None or len(shape) != 2 or shape[0] != in_shape[0]:
            for arg in inputs:
                a.pin(arg.name, f"reshape {name!r}")
            return
        a.layout[node.name] = list(_channels(a, first))  # type: ignore[arg-type]
        a.expand[node.name] = math.prod(in_shape[2:]) * a.expand.get(first.name, 1)  # type: ignore[union-attr]
        return
    if (node.op in ("call_function", "call_method")) and node.target in COUPLING:
        operands = [arg for arg in inputs if _shape(arg) is not None]
        full = [t for t in operands if _shape(t) == shape]
        for t in operands:
            if _shape(t) != shape and _shape(t)[1:2] == shape[1:2] and len(_shape(t)) == len(shape):  # type: ignore[index,arg-type]
                full.append(t)  # broadcast over space (squeeze-and-excitation scales)
        layouts = [_channels(a, t) for t in full]
        if any(len(lay) != 1 for lay in layouts):
            for t in operands:
                a.pin(t.name, f"operation {name!r} on concatenated channels")
            a.layout[node.name] = layouts[0] if layouts else []
            return
        for lay in layouts[1:]:
            a.union(layouts[0][0][0], lay[0][0], name)
        a.layout[node.name] = layouts[0] if layouts else []
        return
    if node.op == "call_function" and node.target is torch.cat:
        tensors: Any = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim in (1, -3) and isinstance(tensors, (list, tuple)):
            a.layout[node.name] = [piece for t in tensors for piece in _channels(a, t)]
            return
    what = (
        type(module).__name__
        if module is not None
        else getattr(node.target, "__name__", str(node.target))
    )
    raise ConfigError(
        f"layer {name!r} ({what}) is not supported by channel pruning; supported: Conv2d (dense or "
        "depthwise), Linear, BatchNorm, activations, pooling, flatten, add/mul (coupled channels), "
        "cat along channels. Exclude it from the scope or prune another model"
    )

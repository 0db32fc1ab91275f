"""Channel spaces: the bookkeeping of the channel dependency analysis.

A *space* is a set of channels created by one layer (a convolution's or linear layer's output
channels, an embedding's width). Spaces joined by an addition are merged (union-find): they must
lose the same channels, channel ``c`` of one being channel ``c`` of the other. Inside a space a
*tie* binds channels that can only be removed together — the same in-group index in every group of
a grouped convolution or of a channel shuffle — so a space is pruned in *units* of tied channels.

A tensor's :class:`Layout` says which channel of which space sits at each position of its channel
axis: one identity :class:`Piece` for a plain tensor, several side by side after a concatenation,
permuted ones after a channel shuffle. A tensor without a layout carries no prunable channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from slimkit.errors import ConfigError


@dataclass
class Space:
    """A set of channels flowing through the network (union-find node)."""

    size: int
    parent: int
    pinned: str = ""  # why these channels cannot be pruned ("" = prunable)


@dataclass
class Use:
    """One layer's relation to a channel space.

    ``role`` is ``producer`` (output channels of a conv, linear or embedding), ``consumer`` (input
    channels of a conv or linear), ``batch_norm`` or ``depthwise``. Channel positions ``offset ..
    offset + n - 1`` of the layer hold the space's channels ``channels`` (``None``: ``0 .. n - 1``
    in order; a permutation after a channel shuffle); read through ``flatten``, each position is
    ``expand`` consecutive features.
    """

    layer: str
    role: str
    expand: int = 1
    offset: int = 0
    channels: tuple[int, ...] | None = None

    def columns(self, channels: torch.Tensor) -> torch.Tensor:
        """The layer's feature indices that hold ``channels`` of the space (1-D, int64)."""
        if self.channels is None:
            positions = channels.to(torch.long)
        else:
            wanted = set(channels.tolist())
            positions = torch.tensor(
                [p for p, c in enumerate(self.channels) if c in wanted], dtype=torch.long
            )
        columns = positions[:, None] * self.expand + torch.arange(self.expand)[None, :]
        return columns.reshape(-1) + self.offset * self.expand


@dataclass
class ChannelGroup:
    """Channels that are removed together.

    ``units`` lists the channels tied together (removed all or none); empty when every channel
    stands alone.
    """

    size: int
    uses: list[Use] = field(default_factory=list)
    pinned: str = ""
    units: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def producers(self) -> list[str]:
        """Layers whose output channels make up this group."""
        return [u.layer for u in self.uses if u.role == "producer"]

    @property
    def prunable(self) -> bool:
        """True when the group may shrink (has a producer and nothing pins it)."""
        return not self.pinned and bool(self.producers)

    def channel_units(self) -> list[tuple[int, ...]]:
        """The units of tied channels (one channel each when nothing ties them)."""
        return list(self.units) if self.units else [(c,) for c in range(self.size)]


@dataclass(frozen=True)
class Piece:
    """Consecutive positions of a tensor's channel axis that hold channels of one space."""

    space: int
    channels: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """The channel axis reshaped into ``(groups, C / groups)`` at dims ``dim, dim + 1`` (swapped
    to ``(C / groups, groups)`` when ``transposed``): the first half of a channel shuffle."""

    dim: int
    groups: int
    transposed: bool = False


@dataclass(frozen=True)
class Layout:
    """Where a tensor's channels come from, along dim ``axis``; after ``flatten`` every channel is
    ``expand`` consecutive features of that dim."""

    pieces: tuple[Piece, ...]
    axis: int
    expand: int = 1
    split: Split | None = None

    def positions(self) -> list[tuple[int, int]]:
        """``(space, channel)`` at every position of the channel axis."""
        return [(piece.space, c) for piece in self.pieces for c in piece.channels]

    @property
    def plain(self) -> bool:
        """One space in its own order, not split: what an addition can merge."""
        return (
            len(self.pieces) == 1
            and self.split is None
            and self.pieces[0].channels == tuple(range(len(self.pieces[0].channels)))
        )


def pieces_of(positions: Sequence[tuple[int, int]]) -> tuple[Piece, ...]:
    """Positions ``(space, channel)`` regrouped into runs of the same space."""
    pieces: list[Piece] = []
    for space, channel in positions:
        if pieces and pieces[-1].space == space:
            pieces[-1] = Piece(space, (*pieces[-1].channels, channel))
        else:
            pieces.append(Piece(space, (channel,)))
    return tuple(pieces)


class ChannelSpaces:
    """The analysis state: spaces (union-find), their uses and ties, and every tensor's layout."""

    def __init__(self) -> None:
        self.spaces: list[Space] = []
        self.uses: dict[int, list[Use]] = {}
        self.layouts: dict[str, Layout] = {}
        self.ties: list[tuple[list[tuple[int, int]], str]] = []

    def new_space(self, size: int, pinned: str = "") -> int:
        self.spaces.append(Space(size, len(self.spaces), pinned))
        return len(self.spaces) - 1

    def fresh(self, size: int, axis: int, role: tuple[str, str] | None = None) -> Layout:
        """A layout of a new space of ``size`` channels; ``role`` (layer, role) records a use."""
        space = self.new_space(size)
        if role is not None:
            self.use(space, Use(*role))
        return Layout((Piece(space, tuple(range(size))),), axis)

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
        self.spaces[ra].pinned = self.spaces[ra].pinned or self.spaces[rb].pinned

    def use(self, space: int, use: Use) -> None:
        self.uses.setdefault(space, []).append(use)

    def use_positions(self, layout: Layout, layer: str, role: str) -> None:
        """Record that ``layer`` reads (or carries) every position of ``layout``."""
        offset = 0
        for piece in layout.pieces:
            identity = piece.channels == tuple(range(len(piece.channels)))
            channels = None if identity else piece.channels
            self.use(piece.space, Use(layer, role, layout.expand, offset, channels))
            offset += len(piece.channels)

    def pin_space(self, space: int, reason: str) -> None:
        root = self.find(space)
        self.spaces[root].pinned = self.spaces[root].pinned or reason

    def pin(self, layout: Layout | None, reason: str) -> None:
        """Freeze every space of ``layout`` (nothing to do for an untracked tensor)."""
        for piece in layout.pieces if layout is not None else ():
            self.pin_space(piece.space, reason)

    def tie(self, members: list[tuple[int, int]], reason: str) -> None:
        """Channels ``(space, channel)`` that can only be removed together."""
        if len(members) > 1:
            self.ties.append((members, reason))

    def groups(self) -> list[ChannelGroup]:
        """The merged spaces with their uses, pins and units of tied channels."""
        tied: dict[int, list[list[int]]] = {}
        reasons: dict[int, list[str]] = {}
        for members, reason in self.ties:
            roots = {self.find(space) for space, _ in members}
            if len(roots) > 1:  # a tie across two groups: they cannot be chosen independently
                for root in roots:
                    self.pin_space(root, f"{reason} ties its channels to another group's")
                continue
            root = roots.pop()
            tied.setdefault(root, []).append([c for _, c in members])
            reasons.setdefault(root, [])
            if reason not in reasons[root]:
                reasons[root].append(reason)
        groups: dict[int, ChannelGroup] = {}
        for index in range(len(self.spaces)):
            root = self.find(index)
            group = groups.setdefault(
                root, ChannelGroup(self.spaces[root].size, pinned=self.spaces[root].pinned)
            )
            group.uses += self.uses.get(index, [])
        for root, group in groups.items():
            units = _units(group.size, tied.get(root, []))
            if any(len(unit) > 1 for unit in units):
                group.units = units
            if len(units) == 1 and group.size > 1 and not group.pinned:
                group.pinned = f"{', '.join(reasons[root])} tie all its channels together"
        return [g for g in groups.values() if g.uses]


def _units(size: int, ties: list[list[int]]) -> list[tuple[int, ...]]:
    """Connected components of ``size`` channels under ``ties``, ordered by first channel."""
    parent = list(range(size))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in ties:
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    components: dict[int, list[int]] = {}
    for channel in range(size):
        components.setdefault(find(channel), []).append(channel)
    return [tuple(c) for c in components.values()]

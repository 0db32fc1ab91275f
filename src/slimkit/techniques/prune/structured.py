"""Structured (channel) pruning that physically removes channels.

Each prunable :class:`~slimkit.techniques.prune.dependency.ChannelGroup` keeps its most important
channels; every layer of the group is sliced accordingly, so the result is a plain, smaller
``nn.Module`` of the same class that exports to ONNX like any other and really runs faster.

Importance of a channel (summed over the group's producers):

- ``l1`` / ``l2``: norm of the producer's output-channel weights (Li et al. 2017, "Pruning
  Filters for Efficient ConvNets");
- ``bn_scale``: ``|γ|`` of the batch norms in the group (network slimming: Liu et al. 2017);
- ``taylor``: first-order Taylor estimate of the loss change, ``|Σ w · ∂L/∂w|`` over the
  channel's weights, on a few training batches (Molchanov et al. 2019).

Channels the analysis ties together (the same in-group index of a grouped convolution or a channel
shuffle) are kept or removed as whole units, ranked by their mean score.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError, check_choice
from slimkit.techniques.prune.dependency import ChannelGroup, analyze
from slimkit.techniques.registry import CompressContext, register_technique

logger = logging.getLogger(__name__)

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor")


def check_ratio(ratio: Any) -> None:
    """A fraction of channels or heads to remove: a number in [0, 1), else ConfigError."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ConfigError(f"ratio must be in [0, 1); got {ratio!r}")


def check_epochs(epochs: Any) -> None:
    """Fine-tuning epochs after pruning: an int >= 0, else ConfigError."""
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be an int >= 0; got {epochs!r}")


def _input_shape(model: nn.Module, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    spec = getattr(model, "slimkit_spec", None)
    if spec is None:
        raise ConfigError("input_shape is needed for a model not built by slimkit.create_model")
    return tuple(spec.input_shape)


def channel_importance(
    model: nn.Module,
    group: ChannelGroup,
    importance: str,
    gradients: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One score per channel of ``group`` (higher = keep)."""
    score = torch.zeros(group.size)
    if importance == "bn_scale":
        norms = [u.layer for u in group.uses if u.role == "batch_norm"]
        if not norms:
            raise ConfigError(
                f"importance 'bn_scale' needs a batch norm after layer(s) {group.producers}; "
                "use l1, l2 or taylor for this model"
            )
        for name in norms:
            bn = model.get_submodule(name)
            assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))
            score += bn.weight.detach().abs() if bn.affine else torch.ones(group.size)
        return score
    for name in group.producers:
        weight = _output_rows(model.get_submodule(name))
        if importance == "l1":
            score += weight.abs().sum(dim=1)
        elif importance == "l2":
            score += weight.pow(2).sum(dim=1).sqrt()
        else:
            assert gradients is not None
            rows = _output_rows(model.get_submodule(name), gradients[name])
            score += (weight * rows).sum(dim=1).abs()
    return score


def _output_rows(layer: nn.Module, tensor: torch.Tensor | None = None) -> torch.Tensor:
    """A producer's weight (or a tensor shaped like it) as one row per output channel."""
    weight = tensor if tensor is not None else layer.weight
    assert isinstance(weight, torch.Tensor)
    weight = weight.detach()
    if isinstance(layer, nn.Embedding):  # (vocabulary, width): the channels are the columns
        return weight.t()
    return weight.reshape(weight.shape[0], -1)


def taylor_gradients(
    model: nn.Module, data: Dataset, batches: int = 8, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Accumulated loss gradients of every conv/linear weight over a few training batches."""
    work = model.train()
    work.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(data.train.batches(batch_size)):
        if step == batches:
            break
        F.cross_entropy(work(x), y).backward()
    grads = {
        name: module.weight.grad.detach().clone()
        for name, module in work.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding))
        and module.weight.grad is not None
    }
    work.zero_grad(set_to_none=True)
    work.eval()
    return grads


def _slice(parameter: torch.Tensor | None, index: torch.Tensor, dim: int) -> nn.Parameter | None:
    if parameter is None:
        return None
    return nn.Parameter(
        parameter.detach().index_select(dim, index).clone(), requires_grad=parameter.requires_grad
    )


def _slice_outputs(module: Any, keep: torch.Tensor) -> None:
    """Keep output channels ``keep`` of a producer (conv, linear, embedding)."""
    if isinstance(module, nn.Embedding):  # weight (vocabulary, width)
        table: Any = module
        table.weight = _slice(table.weight, keep, 1)
        table.embedding_dim = len(keep)
        return
    module.weight = _slice(module.weight, keep, 0)
    if getattr(module, "bias", None) is not None:
        module.bias = _slice(module.bias, keep, 0)
    if isinstance(module, nn.Linear):
        module.out_features = len(keep)
    else:
        module.out_channels = len(keep)


def _slice_inputs(module: Any, drop: set[int]) -> None:
    """Remove input columns ``drop`` of a consumer; a grouped convolution loses the same in-group
    columns from every group (the analysis ties them)."""
    width = module.in_features if isinstance(module, nn.Linear) else module.in_channels
    groups = getattr(module, "groups", 1)
    per_group = width // groups
    in_group = [{c % per_group for c in drop if c // per_group == g} for g in range(groups)]
    if any(columns != in_group[0] for columns in in_group):
        raise RuntimeError(
            f"channel pruning would remove different input channels from the groups of a grouped "
            f"convolution ({sorted(drop)}); this is a bug of the dependency analysis"
        )
    keep = torch.tensor([c for c in range(per_group) if c not in in_group[0]], dtype=torch.long)
    module.weight = _slice(module.weight, keep, 1)
    if isinstance(module, nn.Linear):
        module.in_features = len(keep)
    else:
        module.in_channels = len(keep) * groups


def _slice_carrier(module: Any, role: str, drop: set[int]) -> None:
    """Remove channels ``drop`` from a depthwise convolution or a batch norm."""
    width = module.num_features if role == "batch_norm" else module.out_channels
    keep = torch.tensor([c for c in range(width) if c not in drop], dtype=torch.long)
    if role == "depthwise":
        module.weight = _slice(module.weight, keep, 0)
        if module.bias is not None:
            module.bias = _slice(module.bias, keep, 0)
        module.in_channels = module.out_channels = module.groups = len(keep)
        return
    if module.affine:
        module.weight = _slice(module.weight, keep, 0)
        module.bias = _slice(module.bias, keep, 0)
    module.running_mean = module.running_mean.index_select(0, keep).clone()
    module.running_var = module.running_var.index_select(0, keep).clone()
    module.num_features = len(keep)


def apply_channel_selection(
    model: nn.Module, selections: Sequence[tuple[ChannelGroup, torch.Tensor]]
) -> nn.Module:
    """Slice every layer of each group to its kept channels, in place; returns ``model``.

    A layer that reads several groups (after a concatenation) loses the positions of every group's
    dropped channels and keeps all others; after a channel shuffle, the positions are those the
    shuffle moved the channels to.
    """
    drops: dict[tuple[str, str], list[torch.Tensor]] = {}
    for group, keep in selections:
        keep = torch.sort(keep).values
        kept = set(keep.tolist())
        dropped = torch.tensor([c for c in range(group.size) if c not in kept], dtype=torch.long)
        for use in group.uses:
            if use.role == "producer":
                _slice_outputs(model.get_submodule(use.layer), keep)
            elif len(dropped):
                drops.setdefault((use.layer, use.role), []).append(use.columns(dropped))
    for (name, role), columns in drops.items():
        drop = set(torch.cat(columns).tolist())
        if role == "consumer":
            _slice_inputs(model.get_submodule(name), drop)
        else:
            _slice_carrier(model.get_submodule(name), role, drop)
    return model


def _keep_units(
    group: ChannelGroup, score: torch.Tensor, ratio: float, round_to: int
) -> torch.Tensor | None:
    """The channels of the best units of tied channels (``None``: keep them all)."""
    units = group.channel_units()
    sizes = {len(unit) for unit in units}
    step = math.lcm(round_to, *sizes) if len(sizes) == 1 else round_to
    keep_count = min(group.size, max(step, round(group.size * (1 - ratio) / step) * step))
    unit_scores = torch.stack([score[list(unit)].mean() for unit in units])
    kept: list[int] = []
    for index in torch.argsort(unit_scores, descending=True, stable=True).tolist():
        if len(kept) >= keep_count:
            break
        kept += units[index]
    if len(kept) >= group.size:
        return None
    return torch.tensor(kept, dtype=torch.long)


def select_channels(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    *,
    ratio: float,
    importance: str = "l1",
    scope: Sequence[str] | None = None,
    round_to: int = 1,
    gradients: dict[str, torch.Tensor] | None = None,
) -> list[tuple[ChannelGroup, torch.Tensor]]:
    """For each prunable group in scope: the indices of the channels to keep.

    Tied channels (grouped convolutions, channel shuffles) are kept or removed as whole units,
    ranked by their mean score.
    """
    selections = []
    for group in groups:
        if not group.prunable:
            continue
        if scope and not any(
            fnmatch.fnmatch(p, pattern) for p in group.producers for pattern in scope
        ):
            continue
        if group.units:
            score = channel_importance(model, group, importance, gradients)
            units_kept = _keep_units(group, score, ratio, round_to)
            if units_kept is not None:
                selections.append((group, units_kept))
            continue
        keep_count = max(round_to, round(group.size * (1 - ratio) / round_to) * round_to)
        keep_count = min(keep_count, group.size)
        if keep_count == group.size:
            continue
        score = channel_importance(model, group, importance, gradients)
        keep = torch.topk(score, keep_count).indices
        selections.append((group, keep))
    return selections


def prune_channels(
    model: nn.Module,
    *,
    ratio: float,
    importance: str = "l1",
    input_shape: tuple[int, ...] | None = None,
    scope: Sequence[str] | None = None,
    round_to: int = 1,
    data: Dataset | None = None,
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of every prunable group removed.

    Args:
        model: the model (not modified).
        ratio: fraction of channels to remove from each group, in [0, 1).
        importance: ``l1``, ``l2``, ``bn_scale`` or ``taylor`` (needs ``data``).
        input_shape: one sample's shape; defaults to the model's spec.
        scope: glob patterns of producer layer names that may be pruned (default: all).
        round_to: keep a multiple of this many channels (vector units like multiples of 4 or 8).
        data: training data for the ``taylor`` importance.

    Example:
        >>> smaller = prune_channels(create_model("lenet5"), ratio=0.5)  # doctest: +SKIP
    """
    check_ratio(ratio)
    check_choice("importance", importance, IMPORTANCES)
    shape = _input_shape(model, input_shape)
    pruned = copy.deepcopy(model).eval()
    groups = analyze(pruned, shape)
    if scope:
        names = [p for g in groups for p in g.producers]
        for pattern in scope:
            if not any(fnmatch.fnmatch(name, pattern) for name in names):
                raise ConfigError(
                    f"scope pattern {pattern!r} matches no prunable layer; "
                    f"layers: {', '.join(names)}"
                )
    gradients = None
    if importance == "taylor":
        if data is None:
            raise ConfigError("importance 'taylor' needs training data (data=...)")
        gradients = taylor_gradients(pruned, data)
    selections = select_channels(
        pruned,
        groups,
        ratio=ratio,
        importance=importance,
        scope=scope,
        round_to=round_to,
        gradients=gradients,
    )
    if not selections and ratio > 0:
        pinned = [f"{g.producers or '(input)'}: {g.pinned}" for g in groups if g.pinned]
        raise ConfigError(
            f"no channel group of {type(model).__name__} can be pruned; pinned: {pinned}"
        )
    apply_channel_selection(pruned, selections)
    logger.info("pruned %d channel groups of %s", len(selections), type(model).__name__)
    return pruned


@dataclass(frozen=True)
class ChannelPruningConfig:
    """Remove a fraction of the channels of every prunable layer group, then fine-tune.

    Args:
        ratio: fraction of each group's channels to remove, in [0, 1).
        importance: ``l1``, ``l2``, ``bn_scale`` (network slimming) or ``taylor``.
        scope: glob patterns of layer names whose output channels may be pruned (None = all).
        round_to: keep multiples of this many channels.
        epochs: fine-tuning epochs after pruning (0 = none).
        lr: fine-tuning learning rate.
        batch_size: fine-tuning batch size.
        seed: fine-tuning seed.
    """

    ratio: float = 0.5
    importance: str = "l1"
    scope: tuple[str, ...] | None = None
    round_to: int = 1
    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        check_choice("importance", self.importance, IMPORTANCES)
        if self.scope is not None:
            object.__setattr__(self, "scope", tuple(self.scope))
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise ConfigError(f"round_to must be an int >= 1; got {self.round_to!r}")
        check_epochs(self.epochs)


@register_technique("channel_pruning", ChannelPruningConfig)
def _apply_channel_pruning(
    model: nn.Module, config: ChannelPruningConfig, context: CompressContext
) -> nn.Module:
    if config.importance == "taylor" or config.epochs > 0:
        context.require_data("channel pruning with taylor importance or fine-tuning")
    pruned = prune_channels(
        model,
        ratio=config.ratio,
        importance=config.importance,
        scope=config.scope,
        round_to=config.round_to,
        data=context.data,
        input_shape=(
            context.data.input_shape
            if context.data is not None and getattr(model, "slimkit_spec", None) is None
            else None
        ),
    )
    return finish_pruned(model, pruned, context, config)


def finish_pruned(
    model: nn.Module, pruned: nn.Module, context: CompressContext, config: Any
) -> nn.Module:
    """Mark a structurally pruned copy of ``model`` and fine-tune it for ``config.epochs``.

    The copy keeps ``model``'s spec (which rebuilds the dense architecture, so the copy is marked
    ``slimkit_pruned``); ``config`` gives ``epochs``, ``lr``, ``batch_size`` and ``seed``.
    """
    from slimkit.train import TrainConfig, train

    spec = getattr(model, "slimkit_spec", None)
    if spec is not None:
        pruned.slimkit_spec = spec  # the spec rebuilds the dense architecture, not this one
        setattr(pruned, "slimkit_pruned", True)  # noqa: B010
    if config.epochs > 0 and context.data is not None:
        train(
            pruned,
            context.data,
            TrainConfig(
                epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed
            ),
            callbacks=list(context.callbacks),
        )
    return pruned.eval()

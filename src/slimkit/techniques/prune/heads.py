"""Attention-head pruning: remove whole heads of slimkit's multi-head attention layers.

Head ``h`` of a :class:`~slimkit.layers.attention.MultiHeadAttention` with ``H`` heads of width
``d`` owns rows ``s·H·d + h·d … s·H·d + (h+1)·d`` of the ``qkv`` projection (``s`` = 0, 1, 2 for
q, k, v) and columns ``h·d … (h+1)·d`` of ``proj``. The attention kernel works per head, so
slicing those rows and columns removes the head exactly: the pruned layer computes what the full
one computes with that head's output set to zero, and the residual stream keeps its width, so no
other layer changes. Channel pruning (:func:`~slimkit.techniques.prune.prune_channels`) leaves the
heads whole (the analysis pins them); the two compose: heads first, then the MLP hidden units.

Importance per head (ranked within each layer, every layer keeping the same share; or, with
``ranking="global"``, across layers after dividing each layer's scores by their L2 norm):

- ``l1`` / ``l2``: norm of the head's ``qkv`` rows and ``proj`` columns;
- ``taylor``: ``|Σ w · ∂L/∂w|`` over the same weights on a few training batches, the first-order
  estimate of the loss change when the head is removed (the head-importance score of Michel et
  al. 2019, "Are Sixteen Heads Really Better than One?", in its weight form).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError, check_choice
from slimkit.layers.attention import MultiHeadAttention
from slimkit.techniques.prune.structured import (
    check_epochs,
    check_ratio,
    finish_pruned,
    taylor_gradients,
)
from slimkit.techniques.registry import CompressContext, register_technique

logger = logging.getLogger(__name__)

HEAD_IMPORTANCES = ("l1", "l2", "taylor")
HEAD_RANKINGS = ("layer", "global")


def attention_layers(model: nn.Module) -> dict[str, MultiHeadAttention]:
    """The model's multi-head attention layers by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)}


def heads_by_layer(model: nn.Module) -> dict[str, int]:
    """How many heads each attention layer has (after pruning: how many it kept)."""
    return {name: layer.num_heads for name, layer in attention_layers(model).items()}


def _proj_columns(layer: MultiHeadAttention, heads: torch.Tensor) -> torch.Tensor:
    """Indices of ``heads``' features in the layer's ``h·d`` attention output (``proj`` inputs)."""
    d = layer.head_dim
    return (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)


def _qkv_rows(layer: MultiHeadAttention, heads: torch.Tensor) -> torch.Tensor:
    """Indices of the ``qkv`` output rows of ``heads`` (q rows, then k, then v)."""
    inner = layer.num_heads * layer.head_dim
    within = _proj_columns(layer, heads)
    return torch.cat([s * inner + within for s in range(3)])


def head_importance(
    layer: MultiHeadAttention,
    importance: str = "l1",
    qkv_grad: torch.Tensor | None = None,
    proj_grad: torch.Tensor | None = None,
) -> torch.Tensor:
    """One score per head of ``layer`` (higher = more important).

    Args:
        layer: the attention layer.
        importance: ``l1``, ``l2`` or ``taylor`` (needs the weight gradients).
        qkv_grad: loss gradient of ``layer.qkv.weight`` (``taylor`` only).
        proj_grad: loss gradient of ``layer.proj.weight`` (``taylor`` only).
    """
    check_choice("importance", importance, HEAD_IMPORTANCES)
    if importance == "taylor" and (qkv_grad is None or proj_grad is None):
        raise ConfigError("importance 'taylor' needs the gradients of the qkv and proj weights")
    qkv, proj = layer.qkv.weight.detach(), layer.proj.weight.detach()
    scores = []
    for h in range(layer.num_heads):
        head = torch.tensor([h])
        rows, cols = _qkv_rows(layer, head), _proj_columns(layer, head)
        weights = torch.cat([qkv[rows].reshape(-1), proj[:, cols].reshape(-1)])
        if importance == "l1":
            scores.append(weights.abs().sum())
        elif importance == "l2":
            scores.append(weights.pow(2).sum().sqrt())
        else:
            assert qkv_grad is not None and proj_grad is not None
            grads = torch.cat([qkv_grad[rows].reshape(-1), proj_grad[:, cols].reshape(-1)])
            scores.append((weights * grads).sum().abs())
    return torch.stack(scores)


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep ``index`` of ``linear``'s outputs (dim 0) or inputs (dim 1), in place."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if dim == 0:
        linear.out_features = len(index)
        if linear.bias is not None:
            bias = linear.bias.detach()[index].clone()
            linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
    else:
        linear.in_features = len(index)


def remove_heads(layer: MultiHeadAttention, keep: torch.Tensor) -> None:
    """Keep only heads ``keep`` (indices, in their original order) of ``layer``, in place."""
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values
    if len(keep) == 0 or len(torch.unique(keep)) != len(keep) or keep.max() >= layer.num_heads:
        raise ConfigError(
            f"keep must name distinct heads among 0..{layer.num_heads - 1}, at least one; "
            f"got {keep.tolist()}"
        )
    _slice_linear(layer.qkv, _qkv_rows(layer, keep), 0)
    _slice_linear(layer.proj, _proj_columns(layer, keep), 1)
    layer.num_heads = len(keep)


def prune_heads(
    model: nn.Module,
    *,
    ratio: float,
    importance: str = "l1",
    min_heads: int = 1,
    data: Dataset | None = None,
    ranking: str = "layer",
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of its attention heads removed.

    With ``ranking="layer"`` each layer keeps ``max(min_heads, H - floor(ratio · H))`` of its
    ``H`` heads, its most important ones. With ``"global"`` the ``floor(ratio · total)`` heads of
    lowest importance across all layers go, each layer's scores divided by their L2 norm first
    (Michel et al. 2019), so some layers lose more heads than others; none keeps fewer than
    ``min_heads``.

    Args:
        model: the model (not modified); it must have slimkit attention layers.
        ratio: fraction of each layer's heads to remove, in [0, 1).
        importance: ``l1``, ``l2`` or ``taylor`` (needs ``data``).
        min_heads: never keep fewer heads than this in a layer.
        data: training data for the ``taylor`` importance.
        ranking: ``layer`` (the same share from every layer) or ``global``.

    Example:
        >>> vit = create_model("vit_small", input_shape=(1, 28, 28), num_heads=4)  # doctest: +SKIP
        >>> heads_by_layer(prune_heads(vit, ratio=0.5))  # doctest: +SKIP
        {'blocks.0.attn': 2, 'blocks.1.attn': 2, 'blocks.2.attn': 2}
    """
    check_ratio(ratio)
    check_choice("importance", importance, HEAD_IMPORTANCES)
    check_choice("ranking", ranking, HEAD_RANKINGS)
    if not isinstance(min_heads, int) or min_heads < 1:
        raise ConfigError(f"min_heads must be an int >= 1; got {min_heads!r}")
    pruned = copy.deepcopy(model).eval()
    layers = attention_layers(pruned)
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no slimkit MultiHeadAttention layer, so no heads to "
            "prune; use channel_pruning for convolutional and MLP models"
        )
    gradients: dict[str, torch.Tensor] = {}
    if importance == "taylor":
        if data is None:
            raise ConfigError("importance 'taylor' needs training data (data=...)")
        gradients = taylor_gradients(pruned, data)
    scores = {}
    for name, layer in layers.items():
        prefix = f"{name}." if name else ""
        scores[name] = head_importance(
            layer, importance, gradients.get(f"{prefix}qkv"), gradients.get(f"{prefix}proj")
        )
    kept = (
        _global_counts(scores, ratio, min_heads)
        if ranking == "global"
        else {
            name: min(len(s), max(min_heads, len(s) - math.floor(ratio * len(s))))
            for name, s in scores.items()
        }
    )
    for name, layer in layers.items():
        total = layer.num_heads
        if kept[name] == total:
            continue
        order = torch.argsort(scores[name], descending=True, stable=True)  # ties: lower index
        remove_heads(layer, order[: kept[name]])
        logger.info("%s: kept %d of %d heads", name, kept[name], total)
    return pruned


def _global_counts(scores: dict[str, torch.Tensor], ratio: float, min_heads: int) -> dict[str, int]:
    """Heads each layer keeps when ``ratio`` of all heads go, lowest normalized score first.

    Scores are divided by their layer's L2 norm (Michel et al. 2019), so layers whose weights
    or gradients differ in scale compare by how a head stands within its own layer; no layer
    drops below ``min_heads``.
    """
    candidates = []
    for name, s in scores.items():
        norm = float(s.norm())
        normalized = s / norm if norm > 0 else torch.zeros_like(s)
        candidates += [(float(v), name, h) for h, v in enumerate(normalized)]
    kept = {name: len(s) for name, s in scores.items()}
    to_remove = math.floor(ratio * len(candidates))
    for _, name, _ in sorted(candidates, key=lambda c: (c[0], c[1], c[2])):
        if to_remove == 0:
            break
        if kept[name] > min_heads:
            kept[name] -= 1
            to_remove -= 1
    return kept


@dataclass(frozen=True)
class HeadPruningConfig:
    """Remove a fraction of the attention heads (per layer or ranked globally), then fine-tune.

    Args:
        ratio: fraction of the heads to remove, in [0, 1).
        importance: ``l1``, ``l2`` or ``taylor``.
        min_heads: heads every layer keeps at least.
        ranking: ``layer`` (each layer loses ``ratio`` of its heads) or ``global`` (the least
            important heads of the whole model, scores normalized per layer).
        epochs: fine-tuning epochs after pruning (0 = none).
        lr: fine-tuning learning rate.
        batch_size: fine-tuning batch size.
        seed: fine-tuning seed.
    """

    ratio: float = 0.5
    importance: str = "l1"
    min_heads: int = 1
    ranking: str = "layer"
    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        check_choice("importance", self.importance, HEAD_IMPORTANCES)
        check_choice("ranking", self.ranking, HEAD_RANKINGS)
        if not isinstance(self.min_heads, int) or self.min_heads < 1:
            raise ConfigError(f"min_heads must be an int >= 1; got {self.min_heads!r}")
        check_epochs(self.epochs)


@register_technique("head_pruning", HeadPruningConfig)
def _apply_head_pruning(
    model: nn.Module, config: HeadPruningConfig, context: CompressContext
) -> nn.Module:
    if config.importance == "taylor" or config.epochs > 0:
        context.require_data("head pruning with taylor importance or fine-tuning")
    pruned = prune_heads(
        model,
        ratio=config.ratio,
        importance=config.importance,
        min_heads=config.min_heads,
        data=context.data,
        ranking=config.ranking,
    )
    return finish_pruned(model, pruned, context, config)

"""Magnitude masks, and keeping them through training.

A mask keeps the weights of largest magnitude and zeros the rest: per layer (each layer loses
exactly ``round(s · n)`` of its ``n`` weights) or globally (one threshold over all the layers in
scope: exactly ``round(s · N)`` of their ``N`` weights go, wherever they are). Ties go to the lower
flat index, so a mask is a pure function of the weights.

:class:`PruningMasks` holds the masks of a model's layers while it trains: a gradient hook zeros
the gradient of every pruned weight, and :meth:`PruningMasks.apply` zeros the weights again after
each optimizer step, because an optimizer with momentum (SGD with momentum, Adam) keeps moving a
weight after its gradient became zero and would otherwise regrow it. The model stays a plain model
throughout (no wrapper, no parametrization): its ``state_dict`` and its export do not change, and
:meth:`PruningMasks.remove` leaves real zeros in plain weights.

Example:
    >>> from slimkit.models import create_model
    >>> model = create_model("lenet300_100", input_shape=(1, 28, 28))
    >>> masks = PruningMasks(model, ["layers.1", "layers.3", "layers.5"])
    >>> masks.update({"layers.1": 0.5, "layers.3": 0.5, "layers.5": 0.5})
    >>> masks.sparsity()
    0.5
    >>> masks.remove()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from slimkit.errors import ConfigError

GRANULARITIES = ("global", "layer")


def pruned_count(sparsity: float, size: int) -> int:
    """How many of ``size`` weights a sparsity prunes: ``round(sparsity · size)``, halves up."""
    return int(sparsity * size + 0.5)


def magnitude_masks(
    weights: Mapping[str, torch.Tensor],
    sparsity: float | Mapping[str, float],
    *,
    granularity: str = "layer",
    pruned: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks (``True`` = kept) of the largest-magnitude weights.

    Args:
        weights: name → weight tensor.
        sparsity: the fraction to prune; per layer for ``granularity="layer"`` (one number for
            all, or name → fraction), over all the weights together for ``"global"``.
        granularity: ``layer`` or ``global``.
        pruned: name → keep-mask of an earlier update. Those weights are ranked below every other
            one, so a rising sparsity only adds to them (the masks of a schedule are nested).

    Returns:
        name → bool tensor of the weight's shape.
    """
    if granularity not in GRANULARITIES:
        raise ConfigError(
            f"granularity must be one of {', '.join(GRANULARITIES)}; got {granularity!r}"
        )

    def scores(name: str) -> torch.Tensor:
        score = weights[name].detach().abs().flatten().double()
        if pruned is not None and name in pruned:
            score = score.masked_fill(~pruned[name].flatten(), -1.0)
        return score

    names = list(weights)
    if granularity == "global":
        if not isinstance(sparsity, (int, float)):
            raise ConfigError("global pruning takes one sparsity for all layers; got a mapping")
        flat = torch.cat([scores(n) for n in names])
        keep = _keep_largest(flat, pruned_count(float(sparsity), flat.numel()))
        masks, start = {}, 0
        for name in names:
            size = weights[name].numel()
            masks[name] = keep[start : start + size].reshape(weights[name].shape)
            start += size
        return masks
    result = {}
    for name in names:
        fraction = sparsity if isinstance(sparsity, (int, float)) else sparsity[name]
        score = scores(name)
        keep = _keep_largest(score, pruned_count(float(fraction), score.numel()))
        result[name] = keep.reshape(weights[name].shape)
    return result


def _keep_largest(score: torch.Tensor, n_pruned: int) -> torch.Tensor:
    # score: (N,) → bool (N,), False at the n_pruned smallest scores (ties: lower index first)
    keep = torch.ones_like(score, dtype=torch.bool)
    order = torch.argsort(score, stable=True)
    keep[order[:n_pruned]] = False
    return keep


class PruningMasks:
    """The masks of a model's layers, enforced on their weights and gradients while it trains.

    Args:
        model: the model whose layers are pruned (in place).
        layers: names of the modules whose ``weight`` is masked.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        self.model = model
        self.layers = list(layers)
        self.modules = {name: model.get_submodule(name) for name in self.layers}
        self.masks: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for name in self.layers:
            self._handles.append(self._weight(name).register_hook(self._gradient_hook(name)))

    def _weight(self, name: str) -> torch.Tensor:
        weight = self.modules[name].weight
        assert isinstance(weight, torch.Tensor)
        return weight

    def _gradient_hook(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(grad: torch.Tensor) -> torch.Tensor:
            mask = self.masks.get(name)
            return grad if mask is None else grad.masked_fill(~mask, 0.0)

        return hook

    def weights(self) -> dict[str, torch.Tensor]:
        """name → current weight tensor of every masked layer."""
        return {name: self._weight(name) for name in self.layers}

    def update(self, sparsity: float | Mapping[str, float], granularity: str = "layer") -> None:
        """Recompute the masks from the current weights (nested in the previous ones) and apply."""
        masks = magnitude_masks(
            self.weights(), sparsity, granularity=granularity, pruned=self.masks or None
        )
        self.masks = {name: mask.to(self._weight(name).device) for name, mask in masks.items()}
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (call after each optimizer step)."""
        for name, mask in self.masks.items():
            weight = self._weight(name)
            if mask.device != weight.device:  # the model moved (e.g. to a GPU)
                mask = self.masks[name] = mask.to(weight.device)
            weight.masked_fill_(~mask, 0.0)

    def sparsity(self) -> float:
        """Fraction of the masked layers' weights that are pruned."""
        total = sum(self._weight(n).numel() for n in self.layers)
        pruned = sum(int((~m).sum()) for m in self.masks.values())
        return pruned / total

    def remove(self) -> None:
        """Apply the masks a last time and drop the hooks: the model is plain again."""
        self.apply()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

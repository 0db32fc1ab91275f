"""Low-rank factorization by truncated SVD (Denton et al. 2014; Jaderberg et al. 2014).

A linear layer ``W`` (out × in) becomes two: ``in → r → out`` with ``W ≈ (U_r √S_r)(√S_r V_rᵀ)``,
the best rank-``r`` approximation in Frobenius norm (Eckart–Young): its error is the root of the
sum of the discarded squared singular values. A convolution ``W`` (out × in·kh·kw) becomes a
``kh × kw`` convolution to ``r`` channels (same stride, padding, dilation) followed by a 1×1
convolution to ``out``. The rank is given, or chosen as the smallest that keeps ``energy`` of
``Σ σ²``; a layer is factorized only if that saves parameters.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques.registry import CompressContext, register_technique

logger = logging.getLogger(__name__)


def choose_rank(singular_values: torch.Tensor, *, rank: int | None, energy: float | None) -> int:
    """The given rank, or the smallest keeping ``energy`` of the squared singular values."""
    if rank is not None:
        return max(1, min(rank, singular_values.numel()))
    assert energy is not None
    cumulative = torch.cumsum(singular_values**2, 0) / torch.sum(singular_values**2)
    return int(torch.searchsorted(cumulative, torch.tensor(energy * (1 - 1e-9))).item()) + 1


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` → ``Linear(in, r, bias=False) → Linear(r, out)``."""
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).float())
        second.weight.copy_((u[:, :rank] * root[None, :]).float())
        if layer.bias is not None and second.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_conv(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """``Conv(in, out, k)`` → ``Conv(in, r, k)`` (same stride/padding) → ``Conv(r, out, 1)``."""
    if layer.groups != 1:
        raise ConfigError(
            f"SVD factorization needs groups=1 convolutions; got groups={layer.groups}"
        )
    out_channels = layer.out_channels
    matrix = layer.weight.detach().double().reshape(out_channels, -1)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, bias=False)  # type: ignore[arg-type]
    first.stride, first.padding, first.dilation = layer.stride, layer.padding, layer.dilation
    second = nn.Conv2d(rank, out_channels, 1, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_((root[:, None] * vh[:rank]).float().reshape(first.weight.shape))
        second.weight.copy_((u[:, :rank] * root[None, :]).float().reshape(second.weight.shape))
        if layer.bias is not None and second.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _params(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def low_rank(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float | None = 0.9,
    scope: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` with its linear and (groups=1) conv layers factorized where it pays."""
    if rank is None and energy is None:
        raise ConfigError("give rank or energy for low-rank factorization")
    factorized = copy.deepcopy(model)
    replaced = 0
    for parent_name, parent in list(factorized.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if scope and not any(fnmatch.fnmatch(name, pattern) for pattern in scope):
                continue
            if isinstance(child, nn.Linear):
                s = torch.linalg.svdvals(child.weight.detach().double())
                new: nn.Module = factorize_linear(child, choose_rank(s, rank=rank, energy=energy))
            elif isinstance(child, nn.Conv2d) and child.groups == 1:
                s = torch.linalg.svdvals(
                    child.weight.detach().double().reshape(child.out_channels, -1)
                )
                new = factorize_conv(child, choose_rank(s, rank=rank, energy=energy))
            else:
                continue
            if _params(new) < _params(child):
                setattr(parent, child_name, new)
                replaced += 1
    if scope and replaced == 0:
        raise ConfigError(f"scope {list(scope)} matched no layer that factorization makes smaller")
    logger.info("low-rank: factorized %d layers", replaced)
    return factorized


@dataclass(frozen=True)
class LowRankConfig:
    """Truncated-SVD factorization of linear and convolution layers, then optional fine-tuning.

    Args:
        rank: fixed rank for every layer (overrides ``energy``).
        energy: keep the smallest rank holding this fraction of ``Σ σ²`` (in (0, 1]).
        scope: glob patterns of layer names to factorize (None = all that get smaller).
        epochs: fine-tuning epochs (0 = none).
        lr: fine-tuning learning rate.
    """

    rank: int | None = None
    energy: float | None = 0.9
    scope: tuple[str, ...] | None = None
    epochs: int = 0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ConfigError(f"rank must be None or an int >= 1; got {self.rank!r}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ConfigError(f"energy must be in (0, 1]; got {self.energy!r}")
        if self.scope is not None:
            object.__setattr__(self, "scope", tuple(self.scope))


@register_technique("low_rank", LowRankConfig)
def _apply_low_rank(model: nn.Module, config: LowRankConfig, context: CompressContext) -> nn.Module:
    from slimkit.train import TrainConfig, train

    factorized = low_rank(model, rank=config.rank, energy=config.energy, scope=config.scope)
    spec = getattr(model, "slimkit_spec", None)
    if spec is not None:
        factorized.slimkit_spec = spec
    if config.epochs > 0:
        data = context.require_data("low-rank fine-tuning")
        train(
            factorized,
            data,
            TrainConfig(epochs=config.epochs, lr=config.lr),
            callbacks=list(context.callbacks),
        )
    return factorized.eval()

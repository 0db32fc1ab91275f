"""Data augmentation for small images: random shifts, mixup and cutmix, deterministic by seed.

The training loop applies an :class:`AugmentConfig` to every training batch (never to
validation or test data) through an :class:`Augmenter` seeded from the training seed, with its
own generators, so turning augmentation on does not change the shuffling order.

- **Shifts** ("jitter"): every image moves by a random integer number of pixels in
  ``[-shift, shift]`` along each axis, with zeros filling the vacated border; Hinton et al. 2015
  ("Distilling the Knowledge in a Neural Network", §3) jitter MNIST by up to two pixels.
- **Mixup** (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", ICLR): a batch is
  blended with a shuffled copy of itself, ``x = λ x + (1 − λ) x[perm]``, ``λ ~ Beta(α, α)``,
  and so are the one-hot targets.
- **CutMix** (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV): a random box of the shuffled copy is pasted into each image and
  the targets are mixed by the pasted area.

When a batch is mixed, its targets become class probabilities of shape ``(N, classes)`` that sum
to 1 per sample; ``F.cross_entropy`` (and slimkit's distillation loss) take either form.

Example:
    >>> config = AugmentConfig(shift=2, mixup_alpha=0.2)
    >>> augmenter = Augmenter(config, num_classes=10, seed=0)
    >>> x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    >>> x_aug, targets = augmenter(x, y)
    >>> tuple(targets.shape)
    (8, 10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from slimkit.errors import ConfigError, check_fraction, check_positive


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations the training loop applies to training batches.

    Args:
        shift: largest shift in pixels along each axis (0 disables shifting); each image gets its
            own integer shifts, drawn uniformly from ``[-shift, shift]``.
        mixup_alpha: ``α`` of the ``Beta(α, α)`` mixing weight of mixup (0 disables it).
        cutmix_alpha: ``α`` of the ``Beta(α, α)`` area weight of cutmix (0 disables it).
        mix_probability: probability that a batch is mixed at all (mixup or cutmix).
        cutmix_probability: when both mixup and cutmix are on, the probability that a mixed batch
            uses cutmix rather than mixup.

    Example:
        >>> AugmentConfig(shift=2).to_dict()["shift"]
        2
    """

    shift: int = 0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_probability: float = 1.0
    cutmix_probability: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ConfigError(f"augment shift must be an int >= 0 (pixels); got {self.shift!r}")
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number >= 0; got {value!r}")
            check_positive(name, value, allow_zero=True)
        check_fraction("mix_probability", self.mix_probability)
        check_fraction("cutmix_probability", self.cutmix_probability)

    @property
    def mixes(self) -> bool:
        """Whether some batches get mixed (and so carry probability targets)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_probability > 0

    @property
    def changes_inputs(self) -> bool:
        """Whether the loop sees different inputs than the stored training split."""
        return self.shift > 0 or self.mixes

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown augmentation option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))


def coerce_augment_config(value: object) -> AugmentConfig | None:
    """``None``, an :class:`AugmentConfig` or its dict form → ``AugmentConfig | None``."""
    if value is None or isinstance(value, AugmentConfig):
        return value
    if isinstance(value, Mapping):
        return AugmentConfig.from_dict(value)
    raise ConfigError(
        f"augment must be None, an AugmentConfig or a dict of its options; got {value!r}"
    )


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Move image ``n`` by ``dy[n]`` rows (down) and ``dx[n]`` columns (right), filling with 0.

    ``out[n, :, i, j] = x[n, :, i - dy[n], j - dx[n]]`` where that pixel exists, else 0.

    Args:
        x: images ``(N, C, H, W)``.
        dy: integer row shifts ``(N,)``.
        dx: integer column shifts ``(N,)``.
    """
    n, _, h, w = x.shape
    pad = int(max(int(dy.abs().max()), int(dx.abs().max()))) if n else 0
    if pad == 0:
        return x.clone()
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H + 2p, W + 2p)
    rows = torch.arange(h, device=x.device)[None, :] + pad - dy.to(x.device)[:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + pad - dx.to(x.device)[:, None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def one_hot_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer labels ``(N,)`` → float one-hot probabilities ``(N, num_classes)``."""
    return F.one_hot(y, num_classes).to(torch.float32)


def mixup(
    x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup with weight ``lam``: blend every sample with sample ``perm[n]`` (Zhang et al. 2018).

    Args:
        x: images ``(N, C, H, W)``.
        targets: class probabilities ``(N, K)``.
        lam: weight of the original sample, in [0, 1].
        perm: partner of each sample ``(N,)``.
    """
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def cutmix(
    x: torch.Tensor, targets: torch.Tensor, box: tuple[int, int, int, int], perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``box = (top, left, bottom, right)`` of sample ``perm[n]`` into sample ``n``.

    The targets are mixed by the pasted area: ``λ = 1 − box area / image area`` (Yun et al. 2019).
    """
    top, left, bottom, right = box
    h, w = x.shape[-2:]
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, lam * targets + (1 - lam) * targets[perm]


def cutmix_box(
    height: int, width: int, lam: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A box of about ``(1 − lam)`` of the image area at a uniform centre, clipped to the image."""
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = round(height * cut), round(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - box_h // 2, 0), min(cy + (box_h - box_h // 2), height)
    left, right = max(cx - box_w // 2, 0), min(cx + (box_w - box_w // 2), width)
    return top, left, bottom, right


class Augmenter:
    """Applies an :class:`AugmentConfig` to training batches, deterministically for a seed.

    Args:
        config: what to apply.
        num_classes: number of classes (the width of mixed targets).
        seed: seed of the augmenter's own random generators.
    """

    def __init__(self, config: AugmentConfig, num_classes: int, seed: int) -> None:
        self.config = config
        self.num_classes = num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one batch (on the CPU).

        Args:
            x: images ``(N, C, H, W)``.
            y: integer labels ``(N,)``.

        Returns:
            ``(x, targets)``: targets are ``y`` unchanged, or ``(N, K)`` probabilities when the
            batch was mixed.
        """
        config = self.config
        if config.shift > 0:
            dy, dx = torch.randint(
                -config.shift, config.shift + 1, (2, len(x)), generator=self.generator
            )
            x = shift_images(x, dy, dx)
        if not config.mixes or self.rng.random() >= config.mix_probability:
            return x, y
        perm = torch.randperm(len(x), generator=self.generator)
        targets = one_hot_targets(y, self.num_classes)
        use_cutmix = config.cutmix_alpha > 0 and (
            config.mixup_alpha == 0 or self.rng.random() < config.cutmix_probability
        )
        if use_cutmix:
            lam = float(self.rng.beta(config.cutmix_alpha, config.cutmix_alpha))
            box = cutmix_box(x.shape[-2], x.shape[-1], lam, self.rng)
            return cutmix(x, targets, box, perm)
        lam = float(self.rng.beta(config.mixup_alpha, config.mixup_alpha))
        return mixup(x, targets, lam, perm)

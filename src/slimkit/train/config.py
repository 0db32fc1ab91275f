"""The training configuration: one frozen dataclass shared by Python, the CLI and recipes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from slimkit.errors import ConfigError, check_choice, check_fraction, check_positive
from slimkit.train.augment import AugmentConfig, coerce_augment_config

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a model.

    Args:
        epochs: passes over the training split.
        batch_size: samples per optimizer step.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (with Nesterov momentum).
        lr: peak learning rate.
        weight_decay: L2 penalty (decoupled for ``adamw``).
        momentum: momentum of ``sgd``.
        schedule: ``cosine`` (to 0 over all steps), ``step`` (x0.1 at 50% and 75%), ``constant``.
        label_smoothing: smoothing of the one-hot targets in the cross-entropy loss (also of
            probability targets, e.g. mixed by mixup).
        early_stopping_patience: stop after this many epochs without a better validation
            accuracy and restore the best weights; ``None`` trains all epochs (best weights are
            still restored).
        seed: seeds weight initialisation order, shuffling and dropout.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
        threads: CPU threads to train with (``None``: the count in effect, see
            :func:`slimkit.threads.compute_threads`, else every CPU this process may use).
        augment: augmentation of the training batches (shifts, mixup, cutmix), or ``None``; a
            dict of :class:`~slimkit.train.augment.AugmentConfig` options is accepted too.

    Example:
        >>> TrainConfig(epochs=5, lr=3e-3).to_dict()["epochs"]
        5
        >>> TrainConfig(augment={"shift": 2}).augment.shift
        2
    """

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    augment: AugmentConfig | None = None

    def __post_init__(self) -> None:
        # a dict (from to_dict, a recipe or the search) becomes the config it describes
        object.__setattr__(self, "augment", coerce_augment_config(self.augment))
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1; got {value!r}")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_fraction("momentum", self.momentum, high_open=True)
        check_fraction("label_smoothing", self.label_smoothing, high_open=True)
        patience = self.early_stopping_patience
        if patience is not None and (not isinstance(patience, int) or patience < 1):
            raise ConfigError(
                f"early_stopping_patience must be None or an int >= 1; got {patience!r}"
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be None or an int >= 1; got {self.threads!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

"""The distillation configs: :class:`DistillationConfig`, :class:`HintConfig`, the teacher.

A config is plain data so that recipes and the search can describe it, with one exception: the
teacher may be a live ``nn.Module``. Such a config trains, but cannot be serialized; it is held in
a :class:`LiveTeacher` whose copy and pickling raise a :class:`~slimkit.errors.ConfigError` that
says to save the teacher with :func:`slimkit.train.save_checkpoint` and pass its path instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.errors import ConfigError, check_fraction, check_positive
from slimkit.train import TrainConfig
from slimkit.train.augment import AugmentConfig, coerce_augment_config

LIVE_TEACHER_MESSAGE = (
    "a DistillationConfig whose teacher is a live nn.Module cannot be copied or serialized; "
    "save the teacher with slimkit.save_checkpoint(teacher, 'teacher.safetensors') and pass "
    "teacher='teacher.safetensors'"
)


class LiveTeacher:
    """A teacher given as a live module: usable for training, never copied or serialized.

    ``config_to_dict`` (which deep-copies field values) and pickling raise :class:`ConfigError`
    with :data:`LIVE_TEACHER_MESSAGE`, instead of writing a module into a JSON document.

    Attributes:
        module: the teacher, exactly as given.
    """

    __slots__ = ("module",)

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __repr__(self) -> str:
        return f"LiveTeacher({type(self.module).__name__})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiveTeacher) and other.module is self.module

    def __hash__(self) -> int:
        return id(self.module)

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveTeacher:
        raise ConfigError(LIVE_TEACHER_MESSAGE)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise ConfigError(LIVE_TEACHER_MESSAGE)


@dataclass(frozen=True)
class HintConfig:
    """One FitNets hint: match a student layer's output to a teacher layer's output.

    A learned adapter (a 1x1 convolution for feature maps, a linear layer otherwise) maps the
    student feature to the teacher feature's shape; the loss adds ``weight`` times their mean
    squared difference (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", ICLR).

    Args:
        student_layer: module name in the student (as in ``model.named_modules()``).
        teacher_layer: module name in the teacher.
        weight: weight of this hint's loss.

    Example:
        >>> HintConfig("layers.2", "layers.4").weight
        1.0
    """

    student_layer: str
    teacher_layer: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("student_layer", "teacher_layer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"hint {name} must be a module name (a string); got {value!r}")
        check_positive("hint weight", self.weight)


def coerce_hint(value: object) -> HintConfig:
    """A :class:`HintConfig`, its dict form, or ``"student_layer:teacher_layer"``."""
    if isinstance(value, HintConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return HintConfig(**dict(value))
        except TypeError as error:
            raise ConfigError(
                f"a hint takes student_layer, teacher_layer and weight; got {dict(value)!r}"
            ) from error
    if isinstance(value, str) and value.count(":") == 1:
        student, teacher = value.split(":")
        return HintConfig(student.strip(), teacher.strip())
    raise ConfigError(
        "a hint must be a HintConfig, a dict with student_layer and teacher_layer, or "
        f"'STUDENT_LAYER:TEACHER_LAYER'; got {value!r}"
    )


@dataclass(frozen=True)
class DistillationConfig:
    """Knowledge distillation from a teacher into the model being compressed.

    The student minimises ``α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)``
    plus ``Σ weight · MSE(adapter(student feature), teacher feature)`` over the hints, where ``s``
    and ``t`` are student and teacher logits (Hinton, Vinyals and Dean 2015, "Distilling the
    Knowledge in a Neural Network"). The teacher runs in eval mode without gradients.

    Args:
        teacher: a slimkit checkpoint path (loaded with :func:`slimkit.train.load_checkpoint`)
            or a live ``nn.Module`` (held in a :class:`LiveTeacher`; such a config cannot be
            serialized).
        temperature: ``T`` > 0 of the softened distributions (Hinton et al. use 20 on MNIST).
        alpha: weight of the soft-target loss in [0, 1]; ``1 − alpha`` weighs the hard labels.
        epochs: training epochs of the student.
        lr: peak learning rate.
        batch_size: samples per step.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        weight_decay: L2 penalty (decoupled for ``adamw``).
        schedule: ``cosine``, ``step`` or ``constant``.
        label_smoothing: smoothing of the hard-label targets.
        augment: augmentation of the transfer set (the teacher sees the augmented inputs too);
            a dict of :class:`~slimkit.train.AugmentConfig` options is accepted.
        hints: FitNets hints: :class:`HintConfig`, dicts, or ``"student_layer:teacher_layer"``.
        cache_teacher_logits: compute the teacher's logits on the training split once, before
            the first epoch, when nothing changes the inputs between epochs (no augmentation, no
            hints); otherwise the teacher runs on every batch.
        seed: training seed (shuffling, dropout, augmentation).
        device: ``cpu``, ``cuda`` or ``auto``.

    Example:
        >>> config = DistillationConfig(teacher="teacher.safetensors", temperature=20, alpha=0.9)
        >>> config.train_config().epochs
        10
    """

    teacher: str | nn.Module | LiveTeacher | None = None
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    augment: AugmentConfig | None = None
    hints: Sequence[HintConfig] = ()
    cache_teacher_logits: bool = True
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        teacher = self.teacher
        if isinstance(teacher, nn.Module):
            object.__setattr__(self, "teacher", LiveTeacher(teacher))
        elif isinstance(teacher, os.PathLike):
            object.__setattr__(self, "teacher", os.fspath(teacher))
        elif teacher is None or (isinstance(teacher, str) and not teacher.strip()):
            raise ConfigError(
                "distillation needs a teacher: a slimkit checkpoint path or an nn.Module; "
                f"got {teacher!r}"
            )
        elif not isinstance(teacher, (str, LiveTeacher)):
            raise ConfigError(
                "teacher must be a slimkit checkpoint path or an nn.Module; "
                f"got {type(teacher).__name__} {teacher!r}"
            )
        temperature = self.temperature
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ConfigError(
                f"temperature must be a finite number > 0 (Hinton et al. use 1 to 20); "
                f"got {temperature!r}"
            )
        check_fraction("alpha", self.alpha)
        if isinstance(self.hints, (str, Mapping, HintConfig)):
            raise ConfigError(f"hints must be a list of hints; got {self.hints!r}")
        object.__setattr__(self, "hints", tuple(coerce_hint(h) for h in self.hints))
        object.__setattr__(self, "augment", coerce_augment_config(self.augment))
        if not isinstance(self.cache_teacher_logits, bool):
            raise ConfigError(
                f"cache_teacher_logits must be true or false; got {self.cache_teacher_logits!r}"
            )
        self.train_config()  # validates the shared training options

    def train_config(self) -> TrainConfig:
        """The :class:`~slimkit.train.TrainConfig` of the student's training."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            label_smoothing=self.label_smoothing,
            augment=self.augment,
            seed=self.seed,
            device=self.device,
        )

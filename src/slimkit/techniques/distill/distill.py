"""Knowledge distillation through slimkit's training loop, and its ``distillation`` technique.

Hinton, Vinyals and Dean 2015 ("Distilling the Knowledge in a Neural Network"): the student
learns from the teacher's class probabilities softened at temperature ``T`` as well as from the
labels; Romero et al. 2015 ("FitNets: Hints for Thin Deep Nets", ICLR) add hints between
intermediate layers. :func:`distill` checks everything it can before training (the class counts
of teacher, student and data, the hint layers, the inputs), then trains with
:func:`slimkit.train.train`, passing a :class:`DistillationLoss` that is both the loss and the
callback which puts the teacher in eval mode and, when the inputs do not change between epochs,
computes the teacher's logits on the training split once and looks them up by sample index.

Example:
    >>> config = DistillationConfig(teacher="teacher.safetensors", temperature=20, epochs=10)
    >>> result = distill(student, data, config)  # doctest: +SKIP
    >>> small = compress(model, [DistillationConfig(teacher=big)], data=data)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence

import torch
from torch import nn

from slimkit.data import Dataset, Split
from slimkit.errors import ConfigError
from slimkit.techniques.distill.config import DistillationConfig, HintConfig, LiveTeacher
from slimkit.techniques.distill.hints import FeatureRecorder, HintAdapter, HintedStudent
from slimkit.techniques.distill.loss import distillation_loss, hint_loss
from slimkit.techniques.registry import CompressContext, register_technique
from slimkit.train import (
    Callback,
    TrainResult,
    TrainState,
    load_checkpoint,
    resolve_device,
    train,
)

logger = logging.getLogger(__name__)


def load_teacher(teacher: str | nn.Module | LiveTeacher | None) -> nn.Module:
    """The teacher module of a config: a checkpoint loaded with ``load_checkpoint``, or as given."""
    if isinstance(teacher, LiveTeacher):
        return teacher.module
    if isinstance(teacher, nn.Module):
        return teacher
    if isinstance(teacher, str):
        return load_checkpoint(teacher).model
    raise ConfigError(f"teacher must be a checkpoint path or an nn.Module; got {teacher!r}")


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor | Split, *, batch_size: int = 1024
) -> torch.Tensor:
    """Logits ``(N, K)`` of ``model`` in eval mode on ``x`` (a tensor, or a split read batch by
    batch), on the model's device."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    if isinstance(x, Split):
        chunks = [model(batch.to(device)) for batch, _ in x.batches(batch_size)]
    else:
        chunks = [model(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(chunks)


class DistillationLoss(Callback):
    """The distillation loss of one training run; pass it as ``loss_fn`` *and* as a callback.

    As a callback it moves the teacher to the student's device in eval mode when training starts
    (restoring its mode at the end) and, if :attr:`caches`, computes the teacher's logits on
    ``data.train`` once; each step then reads the batch's rows by ``state.batch_index``.

    Args:
        teacher: the teacher (never trained: it runs under ``torch.no_grad()``).
        config: temperature, alpha, label smoothing, augmentation and caching.
        data: the data set the loop trains on (the cache is indexed by its training split).
        hints: hints with their adapters and the recorders that catch the features.
    """

    def __init__(
        self,
        teacher: nn.Module,
        config: DistillationConfig,
        data: Dataset,
        *,
        hints: Sequence[tuple[HintConfig, HintAdapter]] = (),
        student_recorder: FeatureRecorder | None = None,
        teacher_recorder: FeatureRecorder | None = None,
    ) -> None:
        self.teacher = teacher
        self.config = config
        self.data = data
        self.hints = list(hints)
        self.student_recorder = student_recorder
        self.teacher_recorder = teacher_recorder
        self.cached_logits: torch.Tensor | None = None
        self._state: TrainState | None = None
        self._teacher_was_training = teacher.training

    @property
    def caches(self) -> bool:
        """Whether the teacher's logits are computed once: asked for, and inputs never change."""
        augment = self.config.augment
        unchanged = augment is None or not augment.changes_inputs
        return self.config.cache_teacher_logits and unchanged and not self.config.hints

    def on_train_start(self, state: TrainState) -> None:
        self._state = state
        self._teacher_was_training = self.teacher.training
        device = next((p.device for p in state.model.parameters()), torch.device("cpu"))
        self.teacher.to(device).eval()
        if self.caches:
            self.cached_logits = predict_logits(self.teacher, self.data.train)
            logger.info("cached the teacher's logits on %d training samples", len(self.data.train))

    def on_train_end(self, state: TrainState) -> None:
        self.cached_logits = None
        self._state = None
        self.teacher.train(self._teacher_was_training)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for batch ``x``: from the cache when the loop gave the indices."""
        index = self._state.batch_index if self._state is not None else None
        if self.cached_logits is not None and index is not None:
            return self.cached_logits[index.to(self.cached_logits.device)]
        with torch.no_grad():
            return self.teacher(x)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W); y: (N,) labels or (N, K) probabilities
        student_logits = model(x)  # (N, K); the student's hooks record its hint features
        teacher_logits = self.teacher_logits(x)  # (N, K); the teacher's hooks record its own
        loss = distillation_loss(
            student_logits,
            teacher_logits,
            y,
            temperature=self.config.temperature,
            alpha=self.config.alpha,
            label_smoothing=self.config.label_smoothing,
        )
        if self.hints:
            assert self.student_recorder is not None and self.teacher_recorder is not None
            for hint, adapter in self.hints:
                student_feature = self.student_recorder.get(hint.student_layer)
                teacher_feature = self.teacher_recorder.get(hint.teacher_layer)
                loss = loss + hint.weight * hint_loss(adapter(student_feature), teacher_feature)
        return loss


def _probe(model: nn.Module, x: torch.Tensor, role: str) -> torch.Tensor:
    """Run ``model`` once in eval mode without gradients; a failure is a :class:`ConfigError`."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError) as error:
        raise ConfigError(
            f"the {role} cannot run on the data's inputs of shape {tuple(x.shape[1:])}: "
            f"{str(error).splitlines()[0]}"
        ) from error
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the {role} must return logits of shape (N, classes); got {shape}")
    return out


def check_models(student: nn.Module, teacher: nn.Module, data: Dataset) -> None:
    """Refuse, before training, a teacher and student that cannot be distilled on ``data``.

    Raises:
        ConfigError: teacher and student are one object, cannot run on the data's inputs, or
            have different numbers of classes (from each other or from the data).
    """
    if teacher is student:
        raise ConfigError("the teacher and the student are the same module; pass two models")
    x = data.train.head(2)
    student_classes = _probe(student, x.to(_device_of(student)), "student").shape[1]
    teacher_classes = _probe(teacher, x.to(_device_of(teacher)), "teacher").shape[1]
    if teacher_classes != student_classes:
        raise ConfigError(
            "the teacher and the student must have the same number of classes; the teacher "
            f"outputs {teacher_classes} logits, the student {student_classes}"
        )
    if student_classes != data.num_classes:
        raise ConfigError(
            f"the models output {student_classes} logits but data {data.name!r} has "
            f"{data.num_classes} classes; build them with num_classes={data.num_classes}"
        )


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def prepare_hints(
    student: nn.Module, teacher: nn.Module, data: Dataset, config: DistillationConfig
) -> tuple[list[tuple[HintConfig, HintAdapter]], FeatureRecorder, FeatureRecorder]:
    """Resolve the hint layers by name, record their shapes on two samples, build the adapters.

    Raises:
        ConfigError: a hint layer does not exist (the message lists the model's layers), does
            not run in the forward pass, or does not return one tensor.
    """
    hints = list(config.hints)
    student_recorder = FeatureRecorder(student, [h.student_layer for h in hints], role="student")
    try:
        teacher_recorder = FeatureRecorder(
            teacher, [h.teacher_layer for h in hints], role="teacher"
        )
    except ConfigError:
        student_recorder.remove()
        raise
    try:
        x = data.train.head(2)
        _probe(student, x.to(_device_of(student)), "student")
        _probe(teacher, x.to(_device_of(teacher)), "teacher")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # adapters start the same for a seed
            adapters = [
                HintAdapter(
                    student_recorder.get(h.student_layer).shape[1:],
                    teacher_recorder.get(h.teacher_layer).shape[1:],
                )
                for h in hints
            ]
    except ConfigError:
        student_recorder.remove()
        teacher_recorder.remove()
        raise
    student_recorder.clear()
    teacher_recorder.clear()
    for hint, adapter in zip(hints, adapters, strict=True):
        logger.info(
            "hint %s -> %s through %s", hint.student_layer, hint.teacher_layer, adapter.layer
        )
    return list(zip(hints, adapters, strict=True)), student_recorder, teacher_recorder


def distill(
    student: nn.Module,
    data: Dataset,
    config: DistillationConfig,
    *,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``student`` in place on ``data`` by distillation from ``config.teacher``.

    The teacher is loaded (a path) or used as given (a module), checked against the student and
    the data, then run in eval mode without gradients; the training runs through
    :func:`slimkit.train.train` with ``config.train_config()``, and the best epoch's weights (by
    validation accuracy) are restored.

    Args:
        student: the model to train; modified in place and returned in the result.
        data: the data set; its training split is the transfer set.
        config: teacher, temperature, alpha, hints and training options.
        callbacks: training callbacks (progress bars, schedules).

    Returns:
        The training result; ``result.model`` is ``student``.

    Raises:
        ConfigError: before any training, for a teacher and student with different numbers of
            classes, hint layers that do not exist, or models that cannot run on the data.
        CheckpointError: the teacher path is not a readable slimkit checkpoint.
    """
    if not isinstance(config, DistillationConfig):
        raise ConfigError(f"distill needs a DistillationConfig; got {type(config).__name__}")
    train_config = config.train_config()
    teacher = load_teacher(config.teacher)
    device = resolve_device(train_config.device)
    student.to(device)
    teacher.to(device)
    check_models(student, teacher, data)
    model: nn.Module = student
    hints: list[tuple[HintConfig, HintAdapter]] = []
    student_recorder = teacher_recorder = None
    if config.hints:
        hints, student_recorder, teacher_recorder = prepare_hints(student, teacher, data, config)
        model = HintedStudent(student, [adapter for _, adapter in hints])
    loss = DistillationLoss(
        teacher,
        config,
        data,
        hints=hints,
        student_recorder=student_recorder,
        teacher_recorder=teacher_recorder,
    )
    logger.info(
        "distilling %s into %s at T=%g, alpha=%g%s",
        type(teacher).__name__,
        type(student).__name__,
        config.temperature,
        config.alpha,
        " (teacher logits cached)" if loss.caches else "",
    )
    try:
        result = train(model, data, train_config, callbacks=[loss, *callbacks], loss_fn=loss)
    finally:
        for recorder in (student_recorder, teacher_recorder):
            if recorder is not None:
                recorder.remove()
    return dataclasses.replace(result, model=student)


@register_technique("distillation", DistillationConfig)
def _apply_distillation(
    model: nn.Module, config: DistillationConfig, context: CompressContext
) -> nn.Module:
    data = context.require_data("distillation")
    student = copy.deepcopy(model)
    distill(student, data, config, callbacks=tuple(context.callbacks))
    return student.eval()

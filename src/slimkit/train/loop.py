"""The training loop: plain, readable, and open to callbacks.

One function, :func:`train`, fits a model on a :class:`~slimkit.data.Dataset` with the optimizer,
schedule and early stopping of a :class:`TrainConfig`, and the training-batch augmentation of its
``augment`` (:mod:`slimkit.train.augment`). Everything beyond that (progress bars, pruning
schedules, search pruners, distillation) plugs in through :class:`Callback` hooks or a custom
``loss_fn``; the loop itself stays short.

Example:
    >>> from slimkit.data import load_dataset
    >>> from slimkit.models import create_model
    >>> data = load_dataset("digits")
    >>> model = create_model("lenet5", input_shape=data.input_shape)
    >>> result = train(model, data, TrainConfig(epochs=1))
    >>> 0.0 <= result.best_val_accuracy <= 1.0
    True
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset, Split
from slimkit.errors import ConfigError
from slimkit.progress import Progress, ProgressEvent, ProgressFn, reporting
from slimkit.threads import compute_threads
from slimkit.train.augment import Augmenter
from slimkit.train.config import TrainConfig
from slimkit.train.resume import load_resume_state, save_resume_state

logger = logging.getLogger(__name__)

# loss_fn(model, x, targets): targets are int labels (N,), or class probabilities (N, K) in
# batches that augmentation mixed
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


@dataclass
class TrainState:
    """The loop's live state, handed to every callback hook.

    A callback may set ``should_stop = True`` to end training after the current epoch.
    ``batch_index`` holds, during a step, the indices into ``data.train`` of the batch being
    trained on (before augmentation), so that a loss may look up per-sample data (e.g. cached
    teacher logits).
    """

    model: nn.Module
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    total_steps: int
    epoch: int = 0
    step: int = 0
    last_loss: float = math.nan
    history: list[EpochStats] = field(default_factory=list)
    should_stop: bool = False
    batch_index: torch.Tensor | None = None


class Callback:
    """Hooks into :func:`train`; override what you need. All hooks do nothing by default."""

    def on_train_start(self, state: TrainState) -> None:
        """Called once, before the first epoch."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before each epoch; ``state.epoch`` is the 0-based epoch about to run."""

    def on_step_end(self, state: TrainState) -> None:
        """Called after each optimizer step; ``state.last_loss`` holds the batch loss."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after validation; ``state.history[-1]`` holds the epoch's stats."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once, after the best weights were restored."""


class EpochProgress(Callback):
    """Reports training as :class:`~slimkit.progress.ProgressEvent` s: epochs done of epochs."""

    def __init__(self, report: ProgressFn, stage: str = "train") -> None:
        self.report = report
        self.stage = stage

    def on_train_start(self, state: TrainState) -> None:
        self.report(ProgressEvent(self.stage, len(state.history), state.config.epochs))

    def on_epoch_end(self, state: TrainState) -> None:
        last = state.history[-1]
        info = f"loss {last.train_loss:.4f} val {100 * last.val_accuracy:.2f}%"
        self.report(ProgressEvent(self.stage, last.epoch, state.config.epochs, info))


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`; ``model`` is the trained model (the same object passed in)."""

    model: nn.Module
    config: TrainConfig
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (without the model)."""
        return {
            "config": self.config.to_dict(),
            "history": [asdict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
        }


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` → a torch device; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
    return torch.device(name)


def iterate_batch_indices(
    n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Yield the sample indices of each mini-batch of a split of ``n`` samples."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def iterate_batches(
    split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` mini-batches of a split (read ahead in workers where it decodes files)."""
    batches = iterate_batch_indices(len(split), batch_size, shuffle=shuffle, generator=generator)
    for _, x, y in split.load(batches):
        yield x, y


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    """The default loss: cross-entropy of the model's logits, optionally with label smoothing.

    Targets may be int labels ``(N,)`` or class probabilities ``(N, K)`` (mixup, cutmix); label
    smoothing then mixes the probabilities with the uniform distribution the same way.
    """

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss_fn


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, *, batch_size: int = 512, device: torch.device | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split`` in eval mode.

    Returns:
        ``(loss, accuracy)`` with accuracy in [0, 1].
    """
    if len(split) == 0:
        raise ConfigError("cannot evaluate on an empty split")
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in iterate_batches(split, batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    model.train(was_training)
    return total_loss / len(split), correct / len(split)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _lr_factor(schedule: str, step: int, total_steps: int) -> float:
    progress = step / max(total_steps, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0
    return 1.0


def _augment_seed(seed: int) -> int:
    """The augmenter's seed: derived from the training seed, distinct from the shuffling one."""
    return (seed * 2654435761 + 97) % 2**63


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    loss_fn: LossFn | None = None,
    resume_file: str | os.PathLike[str] | None = None,
    progress: Progress = None,
) -> TrainResult:
    """Fit ``model`` in place on ``data.train``, validating on ``data.val`` after every epoch.

    The weights of the epoch with the best validation accuracy are restored at the end.

    Args:
        model: the model to train; it is modified in place and returned in the result.
        data: a loaded data set (see :func:`slimkit.data.load_dataset`).
        config: optimizer, schedule, epochs, seed and device; defaults to ``TrainConfig()``.
        callbacks: hooks called during training (progress bars, schedules, search pruners).
        loss_fn: ``loss_fn(model, x, y) -> loss``; defaults to cross-entropy with the config's
            label smoothing. Distillation and other techniques pass their own. ``y`` holds class
            probabilities ``(N, K)`` instead of labels in batches that ``config.augment`` mixed.
        resume_file: a file where the loop's whole state (weights, optimizer, random generators,
            history) is written after every epoch, atomically; if it exists when training starts
            (a killed run), training continues after its last epoch and ends with the same
            weights as an uninterrupted run. The caller removes it when done with it.
            Callbacks keep no state across a resume.
        progress: a :class:`~slimkit.progress.ProgressEvent` per epoch (stage ``train``) to a
            function, a tqdm bar (``True``), nothing (``False``); ``None``: a bar in a notebook
            only (see :mod:`slimkit.progress`).

    Returns:
        The per-epoch history, the best epoch and its validation accuracy.
    """
    with reporting(progress) as report:
        shown = (EpochProgress(report),) if report is not None else ()
        return _fit(model, data, config, (*callbacks, *shown), loss_fn, resume_file)


def _fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None,
    callbacks: Sequence[Callback],
    loss_fn: LossFn | None,
    resume_file: str | os.PathLike[str] | None,
) -> TrainResult:
    """The loop of :func:`train`."""
    config = config or TrainConfig()
    if len(data.train) == 0 or len(data.val) == 0:
        raise ConfigError(
            f"data set {data.name!r} has an empty train or validation split "
            f"({len(data.train)} / {len(data.val)} samples)"
        )
    with compute_threads(config.threads):
        run = _Run(model, data, config, loss_fn or cross_entropy_loss(config.label_smoothing))
        if resume_file is not None and Path(resume_file).is_file():
            run.load(resume_file)
        for callback in callbacks:
            callback.on_train_start(run.state)
        while not run.finished:
            stats = run.train_epoch(callbacks)
            run.end_epoch(stats, callbacks)
            if resume_file is not None:
                run.save(resume_file)
    model.load_state_dict(run.best_weights)
    model.eval()
    for callback in callbacks:
        callback.on_train_end(run.state)
    return TrainResult(
        model=model,
        config=config,
        history=tuple(run.state.history),
        best_epoch=run.best_epoch,
        best_val_accuracy=run.best_accuracy,
        stopped_early=run.stopped_early,
        seconds=time.perf_counter() - run.started,
    )


class _Run:
    """One training run's state and its steps: an epoch, the end-of-epoch bookkeeping, resume."""

    def __init__(self, model: nn.Module, data: Dataset, config: TrainConfig, loss_fn: LossFn):
        self.model, self.data, self.config, self.loss_fn = model, data, config, loss_fn
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.augmenter = (
            Augmenter(config.augment, data.num_classes, seed=_augment_seed(config.seed))
            if config.augment is not None and config.augment.changes_inputs
            else None
        )
        model.to(self.device)
        optimizer = _make_optimizer(model, config)
        steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
        self.state = TrainState(
            model=model,
            config=config,
            optimizer=optimizer,
            steps_per_epoch=steps_per_epoch,
            total_steps=steps_per_epoch * config.epochs,
        )
        self.best_accuracy, self.best_epoch = -1.0, -1
        self.best_weights = copy.deepcopy(model.state_dict())
        self.epochs_without_gain, self.stopped_early = 0, False
        self.started = time.perf_counter()

    @property
    def finished(self) -> bool:
        return self.stopped_early or len(self.state.history) >= self.config.epochs

    def train_epoch(self, callbacks: Sequence[Callback]) -> EpochStats:
        """One pass over the training split, then validation."""
        state, config, model = self.state, self.config, self.model
        epoch = len(state.history)
        state.epoch = epoch
        for callback in callbacks:
            callback.on_epoch_start(state)
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, seen = 0.0, 0
        batches = iterate_batch_indices(
            len(self.data.train), config.batch_size, shuffle=True, generator=self.generator
        )
        for index, x, y in self.data.train.load(batches):
            loss_sum += self._step(index, x, y, epoch, callbacks)
            seen += len(index)
        state.batch_index = None
        val_loss, val_accuracy = evaluate(model, self.data.val, device=self.device)
        return EpochStats(
            epoch=epoch + 1,
            train_loss=loss_sum / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=state.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - epoch_start,
        )

    def _step(
        self,
        index: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
        callbacks: Sequence[Callback],
    ) -> float:
        """One optimizer step on the samples ``index`` (inputs ``x``, labels ``y``); returns the
        batch's summed loss."""
        state, config = self.state, self.config
        lr = config.lr * _lr_factor(config.schedule, state.step, state.total_steps)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        if self.augmenter is not None:
            x, y = self.augmenter(x, y)
        state.batch_index = index
        x, y = x.to(self.device), y.to(self.device)
        state.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, x, y)
        if not torch.isfinite(loss):
            raise ConfigError(
                f"training diverged: loss is {float(loss.detach())} at epoch {epoch + 1}, step "
                f"{state.step}; lower the learning rate (lr={config.lr})"
            )
        loss.backward()
        state.optimizer.step()
        state.step += 1
        state.last_loss = float(loss.detach())
        for callback in callbacks:
            callback.on_step_end(state)
        return state.last_loss * len(y)

    def end_epoch(self, stats: EpochStats, callbacks: Sequence[Callback]) -> None:
        """Record the epoch, keep the best weights, call back, decide whether to stop."""
        self.state.history.append(stats)
        logger.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f (%.1fs)",
            stats.epoch,
            self.config.epochs,
            stats.train_loss,
            stats.val_loss,
            stats.val_accuracy,
            stats.seconds,
        )
        if stats.val_accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = stats.val_accuracy, stats.epoch
            self.best_weights = copy.deepcopy(self.model.state_dict())
            self.epochs_without_gain = 0
        else:
            self.epochs_without_gain += 1
        for callback in callbacks:
            callback.on_epoch_end(self.state)
        patience = self.config.early_stopping_patience
        if patience is not None and self.epochs_without_gain >= patience:
            logger.info("early stopping: no better validation accuracy for %d epochs", patience)
            self.stopped_early = True
        if self.state.should_stop:
            self.stopped_early = True

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state after an epoch (atomically; loaded with weights_only=True)."""
        save_resume_state(path, self)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Continue from a state :meth:`save` wrote (for the same config)."""
        load_resume_state(path, self)

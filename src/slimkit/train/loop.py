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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset, Split
from slimkit.errors import ConfigError
from slimkit.train.augment import Augmenter
from slimkit.train.config import TrainConfig

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
    """Yield ``(x, y)`` mini-batches by slicing the in-memory split (faster than a DataLoader)."""
    batches = iterate_batch_indices(len(split), batch_size, shuffle=shuffle, generator=generator)
    for index in batches:
        yield split.x[index], split.y[index]


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

    Returns:
        The per-epoch history, the best epoch and its validation accuracy.
    """
    config = config or TrainConfig()
    if len(data.train) == 0 or len(data.val) == 0:
        raise ConfigError(
            f"data set {data.name!r} has an empty train or validation split "
            f"({len(data.train)} / {len(data.val)} samples)"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    augmenter = (
        Augmenter(config.augment, data.num_classes, seed=_augment_seed(config.seed))
        if config.augment is not None and config.augment.changes_inputs
        else None
    )
    model.to(device)
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    optimizer = _make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    state = TrainState(
        model=model,
        config=config,
        optimizer=optimizer,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * config.epochs,
    )
    best_accuracy, best_epoch, best_weights = -1.0, -1, copy.deepcopy(model.state_dict())
    epochs_without_gain, stopped_early = 0, False
    started = time.perf_counter()
    for callback in callbacks:
        callback.on_train_start(state)
    for epoch in range(config.epochs):
        state.epoch = epoch
        for callback in callbacks:
            callback.on_epoch_start(state)
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, seen = 0.0, 0
        for index in iterate_batch_indices(
            len(data.train), config.batch_size, shuffle=True, generator=generator
        ):
            lr = config.lr * _lr_factor(config.schedule, state.step, state.total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = data.train.x[index], data.train.y[index]
            if augmenter is not None:
                x, y = augmenter(x, y)
            state.batch_index = index
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"training diverged: loss is {float(loss.detach())} at epoch {epoch + 1}, step "
                    f"{state.step}; lower the learning rate (lr={config.lr})"
                )
            loss.backward()
            optimizer.step()
            state.step += 1
            state.last_loss = float(loss.detach())
            loss_sum += state.last_loss * len(y)
            seen += len(y)
            for callback in callbacks:
                callback.on_step_end(state)
        state.batch_index = None
        val_loss, val_accuracy = evaluate(model, data.val, device=device)
        stats = EpochStats(
            epoch=epoch + 1,
            train_loss=loss_sum / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - epoch_start,
        )
        state.history.append(stats)
        logger.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f (%.1fs)",
            epoch + 1,
            config.epochs,
            stats.train_loss,
            val_loss,
            val_accuracy,
            stats.seconds,
        )
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch + 1
            best_weights = copy.deepcopy(model.state_dict())
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        for callback in callbacks:
            callback.on_epoch_end(state)
        patience = config.early_stopping_patience
        if patience is not None and epochs_without_gain >= patience:
            logger.info("early stopping: no better validation accuracy for %d epochs", patience)
            stopped_early = True
            break
        if state.should_stop:
            stopped_early = True
            break
    model.load_state_dict(best_weights)
    model.eval()
    for callback in callbacks:
        callback.on_train_end(state)
    return TrainResult(
        model=model,
        config=config,
        history=tuple(state.history),
        best_epoch=best_epoch,
        best_val_accuracy=best_accuracy,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
    )

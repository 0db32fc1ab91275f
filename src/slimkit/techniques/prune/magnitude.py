"""Unstructured magnitude pruning, one-shot or on the gradual schedule, with masked fine-tuning.

The weights of smallest magnitude are set to zero, per layer or with one global threshold, in the
layers of a scope (``Linear`` and convolution weights by default; biases and batch norms are never
touched). Han et al. 2015 ("Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS) prune once and retrain with the pruned weights held at zero; Zhu & Gupta 2017 ("To prune,
or not to prune", arXiv:1710.01878) raise the sparsity gradually during training
(:class:`~slimkit.techniques.prune.schedule.GradualSchedule`). Both run through slimkit's training
loop with the :class:`MagnitudePruning` callback, which keeps the masks (gradients masked, weights
re-masked after every optimizer step) and, at the end, returns the best validation epoch *at the
final sparsity*: the loop alone would restore its best epoch, which during a gradual schedule is
often an earlier, denser one. The result is a plain model whose zeros are real zeros.

Example:
    >>> from slimkit.data import load_dataset
    >>> from slimkit.models import create_model
    >>> from slimkit.techniques import compress
    >>> data = load_dataset("digits")
    >>> model = create_model("mlp", input_shape=data.input_shape)
    >>> config = MagnitudePruningConfig(sparsity=0.8, epochs=1)
    >>> pruned = compress(model, [config], data=data)
    >>> round(global_sparsity(pruned), 2)
    0.8
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError, check_choice, check_fraction
from slimkit.techniques.prune.masks import GRANULARITIES, PruningMasks
from slimkit.techniques.prune.schedule import GradualSchedule
from slimkit.techniques.prune.scope import (
    DEFAULT_LAYER_TYPES,
    check_layer_types,
    first_match,
    patterns,
    select_layers,
)
from slimkit.techniques.registry import CompressContext, register_technique
from slimkit.train import Callback, TrainConfig, TrainState, train

logger = logging.getLogger(__name__)


class MagnitudePruning(Callback):
    """Training callback: prunes by magnitude and keeps the masks while :func:`train` runs.

    Without a schedule it prunes to the final sparsity before the first step; with one it updates
    the masks after the schedule's steps. After every optimizer step it zeros the pruned weights
    again. At the end of training it loads the weights of the best validation epoch among those
    at the final sparsity, removes its hooks and leaves a plain model with real zeros.

    Args:
        layers: names of the modules whose weights are pruned.
        sparsity: the final sparsity: one fraction, or name → fraction (per-layer granularity).
        granularity: ``layer`` or ``global``.
        schedule: the gradual schedule, or ``None`` to prune at once.

    Example:
        >>> pruner = MagnitudePruning(["layers.1"], 0.9)  # doctest: +SKIP
        >>> train(model, data, TrainConfig(epochs=3), callbacks=[pruner])  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Sequence[str],
        sparsity: float | Mapping[str, float],
        *,
        granularity: str = "layer",
        schedule: GradualSchedule | None = None,
    ) -> None:
        check_choice("granularity", granularity, GRANULARITIES)
        self.layers = list(layers)
        self.final = sparsity
        self.granularity = granularity
        self.schedule = schedule
        self.masks: PruningMasks | None = None
        self.best_accuracy = -1.0
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self.current: float | dict[str, float] = 0.0

    def target_at(self, step: int) -> float | dict[str, float]:
        """The sparsity (or per-layer sparsities) the masks have after optimizer step ``step``."""
        schedule = self.schedule
        if isinstance(self.final, Mapping):
            if schedule is None:
                return {n: float(f) for n, f in self.final.items()}
            return {n: schedule.sparsity_at(step, float(f)) for n, f in self.final.items()}
        return float(self.final) if schedule is None else schedule.sparsity_at(step, self.final)

    def final_target(self) -> float | dict[str, float]:
        """The final sparsity (or per-layer sparsities)."""
        return self.target_at(self.schedule.end_step if self.schedule else 0)

    def is_final(self, step: int) -> bool:
        """Whether the masks have reached the final sparsity after step ``step``."""
        return self.schedule is None or step >= self.schedule.end_step

    def _update(self, step: int) -> None:
        assert self.masks is not None
        self.current = self.target_at(step)
        self.masks.update(self.current, self.granularity)
        logger.info("step %d: pruned to sparsity %.4f", step, self.masks.sparsity())

    def prune(self, model: nn.Module) -> None:
        """Prune ``model`` to the final sparsity at once, without training."""
        self.masks = PruningMasks(model, self.layers)
        self.current = self.final_target()
        self.masks.update(self.current, self.granularity)
        self.masks.remove()

    def on_train_start(self, state: TrainState) -> None:
        schedule = self.schedule
        if schedule is not None and schedule.end_step > state.total_steps:
            raise ConfigError(
                f"the gradual schedule ends at step {schedule.end_step} (begin_step + n_updates · "
                f"frequency) but training runs only {state.total_steps} steps "
                f"({state.config.epochs} epochs × {state.steps_per_epoch}); add epochs or end the "
                "schedule sooner"
            )
        self.masks = PruningMasks(state.model, self.layers)
        self.best_accuracy, self.best_epoch, self._best_state = -1.0, None, None
        if schedule is None or schedule.begin_step == 0:
            self._update(0)

    def on_step_end(self, state: TrainState) -> None:
        assert self.masks is not None
        if self.schedule is not None and self.schedule.is_update_step(state.step):
            self._update(state.step)
        else:
            self.masks.apply()

    def on_epoch_end(self, state: TrainState) -> None:
        accuracy = state.history[-1].val_accuracy
        if self.is_final(state.step) and accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, state.history[-1].epoch
            self._best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    def on_train_end(self, state: TrainState) -> None:
        assert self.masks is not None
        if self._best_state is not None:
            state.model.load_state_dict(self._best_state)
            logger.info(
                "kept epoch %d (validation accuracy %.4f at the final sparsity)",
                self.best_epoch,
                self.best_accuracy,
            )
        else:  # training stopped (early stopping, a callback) before the schedule ended
            logger.warning(
                "training stopped at step %d, before the schedule reached its final sparsity; "
                "pruning the restored weights to it without fine-tuning",
                state.step,
            )
            self.masks.update(self.final_target(), self.granularity)
        self.masks.remove()
        self._best_state = None


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class MagnitudePruningConfig:
    """Unstructured magnitude pruning (Han et al. 2015; gradual: Zhu & Gupta 2017).

    Args:
        sparsity: fraction of the weights in scope set to zero, in [0, 1).
        granularity: ``global`` (one threshold over all layers in scope) or ``layer`` (each layer
            loses the same fraction, or its own from ``layer_sparsity``).
        layer_sparsity: module-name glob → sparsity, for ``granularity="layer"`` (first match
            wins; other layers take ``sparsity``). Han et al. prune LeNet-300-100 at 92/91/74%.
        scope: glob patterns of module names to prune (``None``: every layer of ``layer_types``).
        exclude: glob patterns of module names to leave dense.
        layer_types: layer classes whose ``weight`` may be pruned.
        schedule: a :class:`GradualSchedule` (or its dict) to prune during fine-tuning; ``None``
            prunes at once before it.
        epochs: fine-tuning epochs with the masks held (0: prune only; needs no data).
        lr: fine-tuning learning rate.
        optimizer: ``sgd`` (Nesterov momentum 0.9), ``adam`` or ``adamw``.
        batch_size: fine-tuning batch size.
        weight_decay: fine-tuning weight decay.
        seed: fine-tuning seed.

    Example:
        >>> config = MagnitudePruningConfig(sparsity=0.95, epochs=8, schedule=GradualSchedule())
        >>> config.schedule.end_step  # the last of 10 updates, 100 steps apart
        1000
    """

    sparsity: float = 0.9
    granularity: str = "global"
    layer_sparsity: dict[str, float] | None = None
    scope: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = DEFAULT_LAYER_TYPES
    schedule: GradualSchedule | None = None
    epochs: int = 0
    lr: float = 0.01
    optimizer: str = "sgd"
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity, high_open=True)
        check_choice("granularity", self.granularity, GRANULARITIES)
        if self.layer_sparsity is not None:
            if self.granularity != "layer":
                raise ConfigError(
                    "layer_sparsity needs granularity='layer'; got granularity="
                    f"{self.granularity!r}"
                )
            if not isinstance(self.layer_sparsity, Mapping):
                raise ConfigError(
                    "layer_sparsity must map module-name globs to fractions; got "
                    f"{self.layer_sparsity!r}"
                )
            for pattern, value in self.layer_sparsity.items():
                check_fraction(f"layer_sparsity[{pattern!r}]", value, high_open=True)
        object.__setattr__(self, "scope", patterns("scope", self.scope, allow_none=True))
        object.__setattr__(self, "exclude", patterns("exclude", self.exclude))
        object.__setattr__(self, "layer_types", check_layer_types(self.layer_types))
        schedule = self.schedule
        if isinstance(schedule, Mapping):
            schedule = _schedule_from_dict(schedule)
            object.__setattr__(self, "schedule", schedule)
        if schedule is not None and not isinstance(schedule, GradualSchedule):
            raise ConfigError(f"schedule must be None or a GradualSchedule; got {schedule!r}")
        _check_int("epochs", self.epochs, 0)
        if schedule is not None:
            lowest = min([self.sparsity, *(self.layer_sparsity or {}).values()])
            if schedule.initial_sparsity > lowest:
                raise ConfigError(
                    f"schedule.initial_sparsity ({schedule.initial_sparsity}) must not exceed the "
                    f"final sparsity ({lowest})"
                )
            if self.epochs == 0:
                raise ConfigError(
                    "a gradual schedule prunes during fine-tuning and needs epochs >= 1; got "
                    "epochs=0"
                )
        TrainConfig(
            epochs=max(self.epochs, 1),
            lr=self.lr,
            optimizer=self.optimizer,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )


def _schedule_from_dict(data: Mapping[str, Any]) -> GradualSchedule:
    known = set(GradualSchedule.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"schedule has no option(s) {', '.join(unknown)}; its options: "
            f"{', '.join(sorted(known))}"
        )
    return GradualSchedule(**dict(data))


def pruning_callback(model: nn.Module, config: MagnitudePruningConfig) -> MagnitudePruning:
    """The :class:`MagnitudePruning` callback for ``config``'s layers of ``model``."""
    layers = [
        name for name, _ in select_layers(model, config.scope, config.exclude, config.layer_types)
    ]
    sparsity: float | dict[str, float] = float(config.sparsity)
    if config.granularity == "layer" and config.layer_sparsity:
        sparsity = {
            name: float(_or(first_match(name, config.layer_sparsity), config.sparsity))
            for name in layers
        }
    return MagnitudePruning(
        layers, sparsity, granularity=config.granularity, schedule=config.schedule
    )


def _or(value: Any, default: float) -> float:
    return default if value is None else float(value)


def prune_magnitude(
    model: nn.Module,
    config: MagnitudePruningConfig | None = None,
    data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
) -> nn.Module:
    """A pruned copy of ``model``, fine-tuned on ``data`` with the masks held when epochs > 0.

    Returns:
        A plain model (same classes, same state-dict keys) whose pruned weights are exactly 0.

    Raises:
        ConfigError: the scope selects no layer, or fine-tuning was asked for without data.
    """
    config = config or MagnitudePruningConfig()
    pruned = copy.deepcopy(model)
    pruner = pruning_callback(pruned, config)
    if config.epochs == 0:
        pruner.prune(pruned)
        return pruned.eval()
    if not isinstance(data, Dataset):
        raise ConfigError(
            f"magnitude pruning with epochs={config.epochs} fine-tunes and needs a slimkit "
            f"Dataset; got {type(data).__name__} (pass data=..., or epochs=0 to prune only)"
        )
    train_config = TrainConfig(
        epochs=config.epochs,
        lr=config.lr,
        optimizer=config.optimizer,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        seed=config.seed,
    )
    train(pruned, data, train_config, callbacks=[*callbacks, pruner])
    return pruned.eval()


def sparsity_by_layer(
    model: nn.Module,
    scope: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    layer_types: Sequence[str] = DEFAULT_LAYER_TYPES,
) -> dict[str, float]:
    """Fraction of exact zeros in the weight of every layer in scope."""
    result = {}
    for name, module in select_layers(model, scope, exclude, layer_types):
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        result[name] = float((weight == 0).sum()) / weight.numel()
    return result


def global_sparsity(
    model: nn.Module,
    scope: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    layer_types: Sequence[str] = DEFAULT_LAYER_TYPES,
) -> float:
    """Fraction of exact zeros over the weights of all layers in scope together."""
    zeros = total = 0
    for _, module in select_layers(model, scope, exclude, layer_types):
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total


@register_technique("magnitude_pruning", MagnitudePruningConfig)
def _apply_magnitude_pruning(
    model: nn.Module, config: MagnitudePruningConfig, context: CompressContext
) -> nn.Module:
    data = context.require_data("magnitude pruning with epochs > 0") if config.epochs else None
    return prune_magnitude(model, config, data, callbacks=tuple(context.callbacks))

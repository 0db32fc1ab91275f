"""Techniques: frozen config dataclasses, each applied by one registered function.

``compress(model, [cfg1, cfg2, ...], ...)`` applies the configs in order; each technique's function
takes the model and its config (plus the shared :class:`CompressContext`: data, calibration data,
callbacks) and returns the next model. Configs serialize to a versioned dict and are rebuilt
through an allow-list of registered names, never by importing a string, so YAML recipes and the
search describe techniques as plain data.

Example:
    >>> from slimkit.techniques.quantize import StaticInt8Config
    >>> config_to_dict(StaticInt8Config(calibration="mse"))["technique"]
    'static_int8'
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.progress import Progress, ProgressEvent, ProgressFn, reporting
from slimkit.threads import compute_threads

logger = logging.getLogger(__name__)

CONFIG_VERSION = 1


@dataclass
class CompressContext:
    """What techniques may need beyond the model: data, calibration inputs, training callbacks."""

    data: Dataset | None = None
    calibration_data: torch.Tensor | None = None
    callbacks: Sequence[Any] = ()
    progress: ProgressFn | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def require_data(self, technique: str) -> Dataset:
        """The data set, or a clear error naming the technique that needs it."""
        if self.data is None:
            raise ConfigError(
                f"{technique} trains the model and needs data=...; pass compress(..., data=dataset)"
            )
        return self.data


Apply = Callable[[nn.Module, Any, CompressContext], nn.Module]


@dataclass(frozen=True)
class TechniqueInfo:
    """A registered technique: its name, config class and apply function."""

    name: str
    config_class: type
    apply: Apply


_TECHNIQUES: dict[str, TechniqueInfo] = {}


def register_technique(name: str, config_class: type) -> Callable[[Apply], Apply]:
    """Register ``apply(model, config, context) -> model`` for configs of ``config_class``."""

    def decorator(apply: Apply) -> Apply:
        if name in _TECHNIQUES:
            raise ConfigError(f"technique {name!r} is registered twice")
        _TECHNIQUES[name] = TechniqueInfo(name, config_class, apply)
        config_class.technique = name  # type: ignore[attr-defined]
        return apply

    return decorator


def list_techniques() -> list[str]:
    """Names of the registered techniques."""
    return sorted(_TECHNIQUES)


def technique_info(name: str) -> TechniqueInfo:
    """The registry entry for ``name``."""
    if name not in _TECHNIQUES:
        raise ConfigError(
            f"unknown technique {name!r}; choose one of: {', '.join(list_techniques())}"
        )
    return _TECHNIQUES[name]


def _info_for(config: Any) -> TechniqueInfo:
    for info in _TECHNIQUES.values():
        if type(config) is info.config_class:
            return info
    raise ConfigError(
        f"{type(config).__name__} is not a registered technique config; use one of "
        f"{', '.join(i.config_class.__name__ for i in _TECHNIQUES.values())}"
    )


def config_to_dict(config: Any) -> dict[str, Any]:
    """``{"technique": name, "version": 1, **fields}`` (JSON-safe)."""
    info = _info_for(config)
    return {"technique": info.name, "version": CONFIG_VERSION, **dataclasses.asdict(config)}


def config_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild a config from :func:`config_to_dict` output; unknown names and keys are errors."""
    body = dict(data)
    name = body.pop("technique", None)
    version = body.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(
            f"technique config version {version!r} is not supported (expected {CONFIG_VERSION})"
        )
    info = technique_info(str(name))
    known = {f.name for f in dataclasses.fields(info.config_class)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ConfigError(
            f"technique {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(known))}"
        )
    return info.config_class(**body)


def compress(
    model: nn.Module,
    configs: Sequence[Any],
    *,
    data: Dataset | None = None,
    calibration_data: torch.Tensor | None = None,
    callbacks: Sequence[Any] = (),
    progress: Progress = None,
    threads: int | None = None,
) -> nn.Module:
    """Apply technique configs in order and return the compressed model.

    Args:
        model: the float model (not modified; techniques work on copies).
        configs: technique configs, applied first to last (e.g. prune → fine-tune → quantize).
        data: the data set, for techniques that train (QAT, fine-tuning, distillation).
        calibration_data: float inputs for calibration; defaults to the first training samples
            of ``data``.
        callbacks: training callbacks passed to techniques that train.
        progress: :class:`~slimkit.progress.ProgressEvent` s to a function (stage ``compress``:
            techniques applied; ``calibrate``: batches; ``train``: epochs of a technique that
            trains), a tqdm bar (``True``), nothing (``False``); ``None``: a bar in a notebook
            only (see :mod:`slimkit.progress`).
        threads: CPU threads to compute with (None: the count in effect, else every CPU this
            process may use; see :mod:`slimkit.threads`).

    Example:
        >>> configs = [StaticInt8Config(calibration="mse")]
        >>> qmodel = compress(model, configs, calibration_data=x)  # doctest: +SKIP
    """
    with reporting(progress) as report:
        context = CompressContext(
            data=data, calibration_data=calibration_data, callbacks=callbacks, progress=report
        )
        tell = report or (lambda event: None)
        with compute_threads(threads):
            for index, config in enumerate(configs):
                info = _info_for(config)
                logger.info("applying %s", info.name)
                tell(ProgressEvent("compress", index, len(configs), info.name))
                model = info.apply(model, config, context)
        tell(ProgressEvent("compress", len(configs), len(configs), "done"))
    return model

"""slimkit's exception tree.

Every error slimkit raises on purpose derives from :class:`SlimkitError` and also from the builtin
that matches it (``ValueError``, ``ImportError``, ...), so callers may catch either. A message says
what was wrong, with the value received, and how to fix it. The CLI prints ``str(error)`` as one
line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class SlimkitError(Exception):
    """Base class of every error slimkit raises on purpose."""


class ConfigError(SlimkitError, ValueError):
    """A parameter or configuration value is invalid."""


class DataError(SlimkitError, ValueError):
    """A data set is missing, corrupt, or does not match what was asked for."""


class ModelError(SlimkitError, ValueError):
    """A model name, its arguments, or a checkpoint is invalid."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, corrupt, or not a slimkit checkpoint."""


class ExportError(SlimkitError, RuntimeError):
    """A model could not be exported to a runtime format."""


class RuntimeLoadError(SlimkitError, RuntimeError):
    """A runtime could not load or run a model file."""


class MissingDependencyError(SlimkitError, ImportError):
    """An optional package is needed and not installed; the message gives the install command."""


def check_choice(name: str, value: object, allowed: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``.

    Example:
        >>> check_choice("runtime", "onnxruntime", ["onnxruntime", "pytorch"])
    """
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check_keys(where: str, mapping: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming every key of ``mapping`` not in ``allowed``.

    Example:
        >>> check_keys("recipe", {"name": "x"}, ["name", "data"])
    """
    unknown = [str(k) for k in mapping if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a positive number (or zero if allowed)."""
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        what = "a number >= 0" if allow_zero else "a number > 0"
        raise ConfigError(f"{name} must be {what}; got {value!r}")


def check_fraction(
    name: str, value: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ``value`` lies in [0, 1] (ends open where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number in [0, 1]; got {value!r}")
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in {lo}0, 1{hi}; got {value!r}")

"""Which layers a weight technique touches: glob patterns on module names and layer types.

Magnitude pruning and weight clustering act on the ``weight`` of the layers in their scope; biases,
batch norms and every other tensor are left alone. A scope is three plain fields of a config, so it
serializes like any other option:

- ``scope``: glob patterns (``fnmatch``) of module names to include (``None``: every layer);
- ``exclude``: glob patterns of module names to leave out (applied after ``scope``);
- ``layer_types``: names of the layer classes that qualify (``Linear``, ``Conv2d``, ...).

Example:
    >>> from slimkit.models import create_model
    >>> model = create_model("lenet300_100", input_shape=(1, 28, 28))
    >>> [name for name, _ in select_layers(model, exclude=("layers.5",))]
    ['layers.1', 'layers.3']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from torch import nn

from slimkit.errors import ConfigError

LAYER_TYPES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear,
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "ConvTranspose1d": nn.ConvTranspose1d,
    "ConvTranspose2d": nn.ConvTranspose2d,
    "ConvTranspose3d": nn.ConvTranspose3d,
    "Embedding": nn.Embedding,
}
DEFAULT_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")


def patterns(name: str, value: Any, *, allow_none: bool = False) -> tuple[str, ...] | None:
    """Normalise a config field of glob patterns to a tuple of strings (lists from YAML/JSON).

    Raises:
        ConfigError: ``value`` is not a list of strings (a bare string is refused too: it would
            otherwise be read as a list of one-character patterns).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"{name} must be a list of glob patterns such as ['layers.*']; got {value!r}"
        )
    if not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{name} must hold non-empty strings; got {value!r}")
    return tuple(value)


def check_layer_types(value: Any) -> tuple[str, ...]:
    """Normalise and check ``layer_types`` against :data:`LAYER_TYPES`."""
    names = patterns("layer_types", value)
    assert names is not None
    unknown = [n for n in names if n not in LAYER_TYPES]
    if unknown or not names:
        raise ConfigError(
            f"layer_types must be a non-empty list of {', '.join(LAYER_TYPES)}; got {value!r}"
        )
    return names


def select_layers(
    model: nn.Module,
    scope: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    layer_types: Sequence[str] = DEFAULT_LAYER_TYPES,
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs in scope, in model order; an empty selection is an error.

    Args:
        model: the model to search.
        scope: glob patterns of module names to include; ``None`` includes every layer.
        exclude: glob patterns of module names to leave out.
        layer_types: class names from :data:`LAYER_TYPES` (subclasses qualify too).

    Raises:
        ConfigError: a pattern matches no layer of the right type, or nothing is selected; the
            message lists the layers that could be chosen.
    """
    classes = tuple(LAYER_TYPES[name] for name in check_layer_types(layer_types))
    weighted = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, tuple(LAYER_TYPES.values()))
        and isinstance(getattr(module, "weight", None), nn.Parameter)
    ]
    candidates = [(name, module) for name, module in weighted if isinstance(module, classes)]
    available = ", ".join(f"{n} ({type(m).__name__})" for n, m in weighted) or "none"
    for field, globs in (("scope", scope or ()), ("exclude", exclude)):
        for pattern in globs:
            if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in candidates):
                raise ConfigError(
                    f"{field} pattern {pattern!r} matches no {'/'.join(layer_types)} layer of "
                    f"{type(model).__name__}; layers: {available}"
                )
    selected = [
        (name, module)
        for name, module in candidates
        if (scope is None or any(fnmatch.fnmatchcase(name, p) for p in scope))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    ]
    if not selected:
        raise ConfigError(
            f"the scope selects no layer of {type(model).__name__} (scope={scope!r}, "
            f"exclude={list(exclude)!r}, layer_types={list(layer_types)!r}); layers: {available}"
        )
    return selected


def first_match(name: str, table: dict[str, Any] | None) -> Any:
    """The value of the first glob key of ``table`` that matches ``name`` (``None`` if none)."""
    for pattern, value in (table or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None

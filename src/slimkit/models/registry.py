"""The model registry: named builders, and a spec that rebuilds any registered model.

A builder takes the data's ``input_shape`` (C, H, W) and ``num_classes`` plus its own keyword
arguments and returns a plain ``nn.Module`` that maps ``(N, C, H, W)`` float32 to ``(N, classes)``
logits. Registering a model is one decorator line; nothing else needs editing.

Example:
    >>> from slimkit.models import create_model, list_models
    >>> model = create_model("lenet5", input_shape=(1, 8, 8), num_classes=10)
    >>> "lenet5" in list_models()
    True
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimkit.errors import ModelError

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its name, a one-line description and its builder."""

    name: str
    description: str
    builder: ModelBuilder


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: registry name, data shape and builder arguments.

    It is stored in every checkpoint, so that a checkpoint alone rebuilds its model.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists)."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "kwargs": json.loads(json.dumps(dict(self.kwargs))),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; a missing or unknown key raises :class:`ModelError`."""
        expected = {"name", "input_shape", "num_classes", "kwargs"}
        unknown = set(data) - expected
        missing = {"name", "input_shape", "num_classes"} - set(data)
        if unknown or missing:
            raise ModelError(
                f"model spec has unknown keys {sorted(unknown)} or lacks keys {sorted(missing)}; "
                f"expected {sorted(expected)}"
            )
        shape = tuple(int(v) for v in data["input_shape"])
        if len(shape) != 3:
            raise ModelError(
                f"model spec input_shape must be (C, H, W); got {data['input_shape']!r}"
            )
        return cls(
            name=str(data["name"]),
            input_shape=(shape[0], shape[1], shape[2]),
            num_classes=int(data["num_classes"]),
            kwargs=dict(data.get("kwargs") or {}),
        )


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, description: str = "") -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator that registers ``builder(input_shape, num_classes, **kwargs)`` under ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is registered twice")
        doc = description or (inspect.getdoc(builder) or "").split("\n")[0]
        _REGISTRY[name] = ModelInfo(name=name, description=doc, builder=builder)
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; an unknown name raises :class:`ModelError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


def create_model(
    name: str,
    *,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` for inputs of ``input_shape`` (C, H, W).

    The returned module carries its :class:`ModelSpec` as ``model.slimkit_spec``.

    Example:
        >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
        >>> m.slimkit_spec.kwargs["hidden"]
        (32,)
    """
    info = model_info(name)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise ModelError(f"input_shape must be three positive ints (C, H, W); got {input_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"num_classes must be an int >= 2; got {num_classes!r}")
    params = inspect.signature(info.builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p in params if p not in ("input_shape", "num_classes")]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown and not accepts_any:
        raise ModelError(
            f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
            f"its arguments are: {', '.join(allowed) or '(none)'}"
        )
    try:
        model = info.builder(input_shape=shape, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as error:
        raise ModelError(f"cannot build model {name!r} with {kwargs!r}: {error}") from error
    model.slimkit_spec = ModelSpec(  # type: ignore[assignment]
        name=name,
        input_shape=(shape[0], shape[1], shape[2]),
        num_classes=num_classes,
        kwargs=dict(kwargs),
    )
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """Rebuild a model from its spec (fresh weights)."""
    return create_model(
        spec.name, input_shape=spec.input_shape, num_classes=spec.num_classes, **dict(spec.kwargs)
    )


def model_spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec a model was built from, or None for a model not built by :func:`create_model`."""
    spec = getattr(model, "slimkit_spec", None)
    return spec if isinstance(spec, ModelSpec) else None

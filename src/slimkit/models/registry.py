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

import contextlib
import contextvars
import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimkit.errors import ModelError

ModelBuilder = Callable[..., nn.Module]
# What a builder raises for argument values it cannot build: its own checks (ValueError,
# TypeError) and torch's (RuntimeError for a negative size, OverflowError for a huge one, ...).
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError, KeyError)


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

    name: str  # a registered name, or a user's function "module:function"
    input_shape: tuple[int, ...]
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
        """Inverse of :meth:`to_dict`, validated: it reads specs from files (checkpoints, ONNX
        metadata) that may be corrupt or hostile, so every type, range and size is checked.

        Raises:
            ModelError: a key is missing or unknown, or a value has the wrong type or lies
                outside the limits (:data:`SPEC_LIMITS`).

        Example:
            >>> ModelSpec.from_dict({"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10})
            ModelSpec(name='mlp', input_shape=(1, 8, 8), num_classes=10, kwargs={})
        """
        if not isinstance(data, Mapping):
            raise ModelError(f"model spec must be a mapping; got {type(data).__name__}")
        expected = {"name", "input_shape", "num_classes", "kwargs"}
        unknown = sorted(str(key) for key in data if key not in expected)
        missing = sorted({"name", "input_shape", "num_classes"} - set(data))
        if unknown or missing:
            raise ModelError(
                f"model spec has unknown keys {unknown} or lacks keys {missing}; "
                f"expected {sorted(expected)}"
            )
        name = data["name"]
        if not isinstance(name, str) or not 0 < len(name) <= SPEC_LIMITS["string"]:
            raise ModelError(f"model spec name must be a model name; got {_short(name)}")
        shape = data["input_shape"]
        if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4:
            raise ModelError(
                f"model spec input_shape must be 1 to 4 sizes, such as (C, H, W) or (L,); got "
                f"{_short(shape)}"
            )
        sizes = tuple(_spec_int("input_shape", v, 1, SPEC_LIMITS["input_dim"]) for v in shape)
        if math.prod(sizes) > SPEC_LIMITS["input_values"]:
            raise ModelError(
                f"model spec input_shape {list(sizes)} has {math.prod(sizes)} values per sample; "
                f"the limit is {SPEC_LIMITS['input_values']}"
            )
        num_classes = _spec_int("num_classes", data["num_classes"], 2, SPEC_LIMITS["classes"])
        kwargs = data.get("kwargs")
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ModelError(
                f"model spec kwargs must be a mapping of argument names; got {_short(kwargs)}"
            )
        reserved = sorted(RESERVED_ARGUMENTS & set(kwargs))
        if reserved:
            raise ModelError(
                f"model spec kwargs may not set {', '.join(reserved)}; those are the spec's own "
                "fields"
            )
        _check_spec_value("kwargs", kwargs, depth=0, budget=[SPEC_LIMITS["items"]])
        return cls(name=name, input_shape=sizes, num_classes=num_classes, kwargs=dict(kwargs))


# Limits on a spec read from a file: far above any real model, low enough that building the
# model's skeleton (on the meta device, see slimkit.train.checkpoint) stays cheap.
SPEC_LIMITS: dict[str, int] = {
    "input_dim": 1 << 16,  # C, H and W each
    "input_values": 1 << 28,  # C * H * W
    "classes": 1 << 24,
    "int": 1 << 31,  # any integer in kwargs, in absolute value
    "items": 4096,  # values in kwargs, counted through lists and mappings
    "depth": 8,  # nesting of lists and mappings in kwargs
    "string": 1024,  # characters of a string
}


# the fields of a spec, which a builder gets as its own arguments, never from kwargs
RESERVED_ARGUMENTS = frozenset({"name", "input_shape", "num_classes"})


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a spec may hold a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _spec_int(field_name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int in [low, high] (not a bool or a float), else ModelError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(
            f"model spec {field_name} must hold integers in [{low}, {high}]; got {_short(value)}"
        )
    return value


def _check_spec_value(where: str, value: object, *, depth: int, budget: list[int]) -> None:
    """Raise ModelError unless ``value`` is JSON-like within :data:`SPEC_LIMITS`.

    ``budget`` is a one-item list: the values left to visit, shared by the whole walk.
    """
    budget[0] -= 1
    if budget[0] < 0 or depth > SPEC_LIMITS["depth"]:
        raise ModelError(
            f"model spec {where} is too large or too deeply nested (limits: "
            f"{SPEC_LIMITS['items']} values, depth {SPEC_LIMITS['depth']}); is the file corrupt?"
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        _spec_int(where, value, -SPEC_LIMITS["int"], SPEC_LIMITS["int"])
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ModelError(f"model spec {where} must be a finite number; got {value!r}")
    elif isinstance(value, str):
        if len(value) > SPEC_LIMITS["string"]:
            raise ModelError(f"model spec {where} is a string of {len(value)} characters")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_spec_value(where, item, depth=depth + 1, budget=budget)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{where}.{key}" if str(key).isidentifier() else f"{where}[{key!r}]"
            _check_spec_value(name, item, depth=depth + 1, budget=budget)
    else:
        raise ModelError(f"model spec {where} holds a {type(value).__name__}; expected JSON data")


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
    input_shape: tuple[int, ...] = (1, 28, 28),
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
        raise ModelError(
            f"the zoo's models take images: input_shape must be three positive ints (C, H, W); "
            f"got {input_shape!r} (for other inputs, name your own model: function: pkg.mod:build)"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"num_classes must be an int >= 2; got {num_classes!r}")
    params = inspect.signature(info.builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p in params if p not in ("input_shape", "num_classes")]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown and not accepts_any:
        raise ModelError(
            f"model {name!r} takes no argument(s) {', '.join(_short(k) for k in unknown)}; "
            f"its arguments are: {', '.join(allowed) or '(none)'}"
        )
    try:
        model = info.builder(input_shape=shape, num_classes=num_classes, **kwargs)
    except ModelError:
        raise
    except BUILD_ERRORS as error:  # a bad argument value, found by the builder or by torch
        text = str(error).strip()
        first = text.splitlines()[0][:200] if text else type(error).__name__
        raise ModelError(f"cannot build model {name!r} with {_short(kwargs)}: {first}") from error
    model.slimkit_spec = ModelSpec(  # type: ignore[assignment]
        name=name,
        input_shape=(shape[0], shape[1], shape[2]),
        num_classes=num_classes,
        kwargs=dict(kwargs),
    )
    return model


# Where a user's function named by a spec (``module:function``) may come from, besides the
# current directory: set by allow_user_code (a recipe's folder and allowed packages)
_user_code: contextvars.ContextVar[tuple[tuple[str, ...], tuple[str, ...]]] = (
    contextvars.ContextVar("slimkit_user_code", default=((), ()))
)


@contextlib.contextmanager
def allow_user_code(roots: Iterable[str] = (), allow_modules: Iterable[str] = ()) -> Iterator[None]:
    """Let :func:`build_model` rebuild user functions from ``roots`` (folders of ``.py`` files)
    and ``allow_modules`` (installed packages), besides the current directory."""
    token = _user_code.set((tuple(map(str, roots)), tuple(allow_modules)))
    try:
        yield
    finally:
        _user_code.reset(token)


def resolve_user_function(name: str) -> Callable[..., Any]:
    """The user's function ``module:function``, from the current directory or the places
    :func:`allow_user_code` allows (the rules of :mod:`slimkit.pipeline.user_code`)."""
    from slimkit.errors import ConfigError
    from slimkit.pipeline.user_code import resolve_function

    roots, allowed = _user_code.get()
    try:
        return resolve_function(
            name, roots=(*roots, os.getcwd()), allow_modules=allowed, where="model"
        )
    except ConfigError as error:
        raise ModelError(str(error)) from None


def user_code_rules() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``(roots, allow_modules)`` in effect (see :func:`allow_user_code`)."""
    return _user_code.get()


def build_user_function(spec: ModelSpec) -> nn.Module:
    """Call the user's ``module:function`` of ``spec`` with its args (and ``input_shape`` and
    ``num_classes`` where it takes them). Only functions the rules of
    :mod:`slimkit.pipeline.user_code` allow run: a ``def`` in a ``.py`` file of the current
    directory (or of a recipe's folder), or of a package allowed by name."""
    function = resolve_user_function(spec.name)
    params = inspect.signature(function).parameters
    kwargs = dict(spec.kwargs)
    if "input_shape" in params:
        kwargs["input_shape"] = tuple(spec.input_shape)
    if "num_classes" in params:
        kwargs["num_classes"] = spec.num_classes
    try:
        model = function(**kwargs)
    except Exception as error:  # the user's code: any failure is one line
        raise ModelError(
            f"model function {spec.name!r} raised {type(error).__name__}: {str(error)[:200]}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model function {spec.name!r} returned {type(model).__name__}")
    model.slimkit_spec = spec  # type: ignore[assignment]
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """Rebuild a model from its spec (fresh weights): a zoo model, or a user's function."""
    reserved = sorted(RESERVED_ARGUMENTS & set(spec.kwargs))
    if reserved:
        raise ModelError(
            f"model spec kwargs may not set {', '.join(reserved)}; those are the spec's own fields"
        )
    if ":" in spec.name:
        return build_user_function(spec)
    return create_model(
        spec.name, input_shape=spec.input_shape, num_classes=spec.num_classes, **dict(spec.kwargs)
    )


def model_spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec a model was built from, or None for a model not built by :func:`create_model`."""
    spec = getattr(model, "slimkit_spec", None)
    return spec if isinstance(spec, ModelSpec) else None

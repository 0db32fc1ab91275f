"""Search spaces as data: a YAML/dict description → Optuna suggestions → a :class:`TrialPlan`.

A space has three parts (every part optional)::

    model:                     # alternatives: zoo model name → its argument space
      lenet5: {}
      mobilenet_v1_small:
        width_multiplier: {choice: [0.25, 0.5, 1.0]}
    train:                     # TrainConfig options (nested groups allowed: augment: {...})
      epochs: 5
      lr: {float: [3.0e-4, 1.0e-2], log: true}
    techniques:                # ordered slots; each picks one alternative ("none" skips it)
      - slot: prune
        choices:
          none: {}
          channel_pruning: {ratio: {float: [0.2, 0.7]}, epochs: 3}
      - slot: quantize
        choices:
          none: {}
          static_int8: {calibration: {choice: [minmax, mse, percentile]}}

A value is either fixed (a scalar or list) or a distribution: ``{float: [lo, hi]}`` (``log``,
``step`` optional), ``{int: [lo, hi]}`` (``log``, ``step`` optional) or ``{choice: [...]}``.
Choices are conditional by construction: an alternative's options are sampled only when the
alternative is chosen (a distillation temperature exists only in trials that distil). Model and
technique names come from the registries, so new zoo models and techniques are searchable
without edits here; every name and option is checked before the first trial.

Distillation is special in one way: choosing the ``distillation`` technique in a slot means the
model is *trained* by distillation from the search's teacher (the training stage uses its loss),
rather than trained plainly and then post-processed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from slimkit.errors import ConfigError, ModelError, SlimkitError, check_keys
from slimkit.models import list_models
from slimkit.models.registry import model_info
from slimkit.techniques import list_techniques
from slimkit.techniques.registry import technique_info
from slimkit.train import TrainConfig
from slimkit.yamlfile import Where, as_where

DISTRIBUTION_KEYS = ("float", "int", "choice")
NONE = "none"
DISTILLATION = "distillation"
# options the search sets itself on every technique (never searched)
INJECTED_OPTIONS = {"teacher", "seed", "device"}


class Suggester(Protocol):
    """What a space needs from a trial (``optuna.Trial`` satisfies it)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = ..., log: bool = ...
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = ..., log: bool = ...
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Distribution:
    """One searched value: a float or int range, or a list of choices."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def sample(self, trial: Suggester, name: str) -> Any:
        """Ask ``trial`` for this parameter under ``name``."""
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        if len(self.choices) == 1:
            return self.choices[0]
        if all(c is None or isinstance(c, bool | int | float | str) for c in self.choices):
            return trial.suggest_categorical(name, list(self.choices))
        # lists/mappings are stored as JSON text (Optuna persists only plain values)
        picked = trial.suggest_categorical(name, [json.dumps(c) for c in self.choices])
        return json.loads(picked)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in value for k in DISTRIBUTION_KEYS)


def parse_distribution(where: str | Where, value: Mapping[str, Any]) -> Distribution:
    """Check and build one distribution; ``where`` names it in errors (e.g. ``train.lr``)."""
    kinds = [k for k in DISTRIBUTION_KEYS if k in value]
    extra = sorted(set(value) - {*DISTRIBUTION_KEYS, "log", "step"})
    if len(kinds) != 1 or extra:
        raise ConfigError(
            f"{where}: a searched value is one of {{float: [lo, hi]}}, {{int: [lo, hi]}}, "
            f"{{choice: [...]}} (with optional log/step); got {dict(value)!r}"
        )
    kind = kinds[0]
    body = value[kind]
    if kind == "choice":
        if not isinstance(body, list | tuple) or not body:
            raise ConfigError(f"{where}: 'choice' needs a non-empty list; got {body!r}")
        if "log" in value or "step" in value:
            raise ConfigError(f"{where}: 'log' and 'step' apply to float/int ranges, not choice")
        return Distribution("choice", choices=tuple(body))
    if (
        not isinstance(body, list | tuple)
        or len(body) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in body)
    ):
        raise ConfigError(f"{where}: '{kind}' needs [low, high] numbers; got {body!r}")
    low, high = float(body[0]), float(body[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: empty range [{body[0]}, {body[1]}] (low must be <= high)")
    log = bool(value.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0; got {body[0]}")
    step = value.get("step")
    if step is not None and (not isinstance(step, int | float) or step <= 0):
        raise ConfigError(f"{where}: step must be a positive number; got {step!r}")
    if step is not None and log:
        raise ConfigError(f"{where}: 'step' and 'log' cannot be combined")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: an int range needs integer bounds; got {body!r}")
    return Distribution(kind, low, high, log, float(step) if step is not None else None)


@dataclass(frozen=True)
class OptionSpace:
    """Named options, each fixed or a distribution; nested groups are OptionSpaces too."""

    values: Mapping[str, Any]

    def sample(self, trial: Suggester, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            name = f"{prefix}.{key}"
            if isinstance(value, Distribution | OptionSpace):
                out[key] = value.sample(trial, name)
            else:
                out[key] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v.to_dict() if isinstance(v, Distribution | OptionSpace) else v
            for k, v in self.values.items()
        }


def parse_options(where: str | Where, value: Any, allowed: Mapping[str, Any] | None) -> OptionSpace:
    """An option mapping; ``allowed`` maps option names to nested allowed maps (or None = any)."""
    where = as_where(where)
    if value is None:
        return OptionSpace({})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options; got {value!r}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: option names must be strings; got {key!r}")
        if allowed is not None and key not in allowed:
            raise ConfigError(
                f"{where}: unknown option {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
        if _is_distribution(item):
            out[key] = parse_distribution(where / key, item)
        elif isinstance(item, Mapping):
            nested = allowed.get(key) if allowed is not None else None
            out[key] = parse_options(where / key, item, nested)
        else:
            out[key] = item
    return OptionSpace(out)


def _dataclass_fields(cls: type) -> dict[str, Any]:
    """Option names of a config dataclass, with nested dataclass fields for nested groups."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        out[f.name] = None
    return out


def _train_fields() -> dict[str, Any]:
    from slimkit.train.augment import AugmentConfig

    fields_ = _dataclass_fields(TrainConfig)
    fields_["augment"] = _dataclass_fields(AugmentConfig)
    return fields_


def _model_arguments(name: str) -> dict[str, Any] | None:
    if ":" in name:  # a user's function, from the places allow_user_code allows
        from slimkit.models.registry import resolve_user_function

        params = inspect.signature(resolve_user_function(name)).parameters
    else:
        params = inspect.signature(model_info(name).builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {p: None for p in params if p not in ("input_shape", "num_classes")}


@dataclass(frozen=True)
class Slot:
    """One ordered step of the compression recipe: pick one technique (or none)."""

    name: str
    choices: Mapping[str, OptionSpace]


@dataclass(frozen=True)
class TrialPlan:
    """What one trial builds: a model, how it is trained, and the techniques applied after."""

    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    distillation: dict[str, Any] | None = None
    techniques: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored with every trial)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))

    def describe(self) -> str:
        """A short label, e.g. ``mobilenet_v1_small(width_multiplier=0.5) + static_int8``."""
        args = ", ".join(f"{k}={v}" for k, v in self.model_kwargs.items())
        parts = [f"{self.model}({args})" if args else self.model]
        if self.distillation is not None:
            parts.append(DISTILLATION)
        parts += [t["technique"] for t in self.techniques]
        return " + ".join(parts)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, checked search space. Build with :meth:`from_dict`; sample with :meth:`sample`."""

    models: Mapping[str, OptionSpace]
    train: OptionSpace
    slots: tuple[Slot, ...]
    source: Mapping[str, Any]

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, *, where: str | Where = "space"
    ) -> SearchSpace:
        """Parse and check a space; every error names the key, the value and what is allowed.

        Besides names, every value a trial could draw is checked against the config it goes
        into (each choice, both ends of a range), so a bad value fails here, not in a trial.
        """
        where = as_where(where)
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with model, train, techniques")
        data = dict(data or {})
        check_keys(str(where), data, ("model", "train", "techniques"))
        models = _parse_models(data.get("model"), where / "model")
        train = parse_options(where / "train", data.get("train"), _train_fields())
        check_values(train, where / "train", _train_value_check)
        raw_slots = data.get("techniques") or []
        if not isinstance(raw_slots, list):
            raise ConfigError(f"{where / 'techniques'}: expected a list of slots")
        slots = [_parse_slot(where / "techniques" / i, raw) for i, raw in enumerate(raw_slots)]
        names = [s.name for s in slots]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where / 'techniques'}: slot names must be unique; got {names}")
        distilling = [s.name for s in slots if DISTILLATION in s.choices]
        if len(distilling) > 1:
            raise ConfigError(
                f"{where / 'techniques'}: 'distillation' may appear in one slot only; found in "
                f"{distilling}"
            )
        return cls(models=models, train=train, slots=tuple(slots), source=data)

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict form (what the hash is computed over)."""
        return {
            "model": {name: space.to_dict() for name, space in self.models.items()},
            "train": self.train.to_dict(),
            "techniques": [
                {"slot": s.name, "choices": {k: v.to_dict() for k, v in s.choices.items()}}
                for s in self.slots
            ],
        }

    def fingerprint(self) -> str:
        """A stable hash of the space: a study remembers it and refuses a changed space."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def uses_distillation(self) -> bool:
        """Whether any slot can choose distillation (then the search needs a teacher)."""
        return any(DISTILLATION in s.choices for s in self.slots)

    def sample(self, trial: Suggester) -> TrialPlan:
        """Draw one plan; parameter names are dotted paths (``model``, ``train.lr``, ...)."""
        names = list(self.models)
        model = names[0] if len(names) == 1 else trial.suggest_categorical("model", names)
        model_kwargs = self.models[model].sample(trial, f"model.{model}")
        train = self.train.sample(trial, "train")
        distillation = None
        techniques: list[dict[str, Any]] = []
        for slot in self.slots:
            options = list(slot.choices)
            choice = (
                options[0] if len(options) == 1 else trial.suggest_categorical(slot.name, options)
            )
            if choice == NONE:
                continue
            values = slot.choices[choice].sample(trial, f"{slot.name}.{choice}")
            if choice == DISTILLATION:
                distillation = values
            else:
                techniques.append({"technique": choice, **values})
        return TrialPlan(model, model_kwargs, train, distillation, techniques)


def _parse_models(raw: Any, where: Where) -> dict[str, OptionSpace]:
    raw = raw or {"lenet5": {}}
    if isinstance(raw, str):
        raw = {raw: {}}
    if isinstance(raw, list):
        if not all(isinstance(name, str) for name in raw):
            raise ConfigError(
                f"{where}: a list names zoo models (strings); give options as a mapping "
                f"NAME: {{option: ...}}; got {raw!r}"
            )
        raw = {name: {} for name in raw}
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: expected a mapping of zoo model names to options")
    models: dict[str, OptionSpace] = {}
    for name, options in raw.items():
        if not isinstance(name, str) or (name not in list_models() and ":" not in name):
            raise ConfigError(
                f"{where}: unknown model {name!r}; choose from: {', '.join(list_models())}, or "
                "a function of yours as 'module:function'"
            )
        try:
            arguments = _model_arguments(name)
        except ModelError as error:
            raise ConfigError(f"{where / name}: {error}") from None
        models[name] = parse_options(where / name, options, arguments)
    return models


def _parse_slot(where: Where, raw: Any) -> Slot:
    if not isinstance(raw, Mapping) or "slot" not in raw or "choices" not in raw:
        raise ConfigError(
            f"{where}: a slot is {{slot: NAME, choices: {{none: {{}}, TECHNIQUE: {{...}}}}}}; "
            f"got {raw!r}"
        )
    check_keys(str(where), raw, ("slot", "choices"))
    name = raw["slot"]
    if not isinstance(name, str) or not name or name in ("model", "train") or "." in name:
        raise ConfigError(
            f"{where / 'slot'}: a slot name is a word other than 'model'/'train'; got {name!r}"
        )
    choices_raw = raw["choices"]
    if isinstance(choices_raw, list) and all(isinstance(c, str) for c in choices_raw):
        choices_raw = {c: {} for c in choices_raw}
    if not isinstance(choices_raw, Mapping) or not choices_raw:
        raise ConfigError(f"{where / 'choices'}: expected a non-empty mapping technique → options")
    choices: dict[str, OptionSpace] = {}
    for technique, options in choices_raw.items():
        if technique == NONE:
            choices[NONE] = OptionSpace({})
            continue
        if not isinstance(technique, str) or technique not in list_techniques():
            raise ConfigError(
                f"{where / 'choices'}: unknown technique {technique!r}; choose from: none, "
                f"{', '.join(list_techniques())}"
            )
        allowed = _dataclass_fields(technique_info(technique).config_class)
        for injected in INJECTED_OPTIONS:
            allowed.pop(injected, None)
        at = where / "choices" / technique
        choices[technique] = parse_options(at, options, allowed)
        check_values(choices[technique], at, _technique_value_check(technique))
    return Slot(name, choices)


ValueCheck = Callable[[str, Any], None]
# what a config's own checks raise for a bad value (besides slimkit's errors)
_VALUE_ERRORS = (SlimkitError, TypeError, ValueError, KeyError, AttributeError, OverflowError)


def _drawable(value: Any) -> list[Any]:
    """Every value a trial may draw from ``value``: each choice, both ends of a range."""
    if isinstance(value, Distribution):
        if value.kind == "choice":
            return list(value.choices)
        if value.kind == "int":
            return [int(value.low), int(value.high)]
        return [value.low, value.high]
    if isinstance(value, OptionSpace):
        return [value.to_dict()] if not _has_distribution(value) else []
    return [value]


def _has_distribution(space: OptionSpace) -> bool:
    return any(
        isinstance(v, Distribution) or (isinstance(v, OptionSpace) and _has_distribution(v))
        for v in space.values.values()
    )


def check_values(space: OptionSpace, where: Where, check: ValueCheck) -> None:
    """Run ``check(option, value)`` on every value a trial may draw; ConfigError naming it."""
    for key, value in space.values.items():
        if isinstance(value, OptionSpace) and _has_distribution(value):
            check_values(value, where / key, _nested_check(check, key))
            continue
        for drawn in _drawable(value):
            try:
                check(key, drawn)
            except _VALUE_ERRORS as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise ConfigError(
                    f"{where / key}: the value {drawn!r} is not accepted: "
                    f"{reason or type(error).__name__}"
                ) from None


def _nested_check(check: ValueCheck, group: str) -> ValueCheck:
    def nested(key: str, value: Any) -> None:
        check(group, {key: value})

    return nested


def _train_value_check(key: str, value: Any) -> None:
    TrainConfig.from_dict({key: value})


def _technique_value_check(technique: str) -> ValueCheck:
    from slimkit.techniques import config_from_dict

    def check(key: str, value: Any) -> None:
        body: dict[str, Any] = {"technique": technique, key: value}
        if technique == DISTILLATION:
            from torch import nn

            body["teacher"] = nn.Identity()  # the search's teacher stands here
        config_from_dict(body)

    return check


def default_space(*, distill: bool = True) -> dict[str, Any]:
    """The space a search uses when none is given: image classification (digits, MNIST-like).

    Three model families with their widths (LeNet-5, an MLP, the MobileNet-v1-style CNN), the
    learning rate and epochs, then the recipe: distillation from the search's teacher (when
    ``distill``), channel pruning, static int8. It is data like any space: print it with
    ``slimkit search default-space`` and edit a copy.
    """
    techniques: list[dict[str, Any]] = []
    if distill:
        techniques.append(
            {
                "slot": "distill",
                "choices": {
                    "none": {},
                    DISTILLATION: {
                        "temperature": {"choice": [2.0, 4.0, 8.0]},
                        "alpha": {"float": [0.5, 0.95]},
                    },
                },
            }
        )
    techniques += [
        {
            "slot": "prune",
            "choices": {
                "none": {},
                "channel_pruning": {"ratio": {"float": [0.2, 0.6]}, "epochs": 1},
            },
        },
        {
            "slot": "quantize",
            "choices": {
                "none": {},
                "static_int8": {"calibration": {"choice": ["minmax", "percentile", "mse"]}},
            },
        },
    ]
    return {
        "model": {
            "lenet5": {"channels": {"choice": [[4, 8], [6, 16], [8, 24]]}},
            "mlp": {"hidden": {"choice": [[64], [128], [256, 128]]}},
            "mobilenet_v1_small": {"width_multiplier": {"choice": [0.25, 0.5, 1.0]}},
        },
        "train": {
            "epochs": {"int": [4, 12], "step": 4},
            "lr": {"float": [1.0e-3, 1.0e-2], "log": True},
            "batch_size": 128,
        },
        "techniques": techniques,
    }

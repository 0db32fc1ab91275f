"""Recipes: one YAML file names the whole ``slimkit optimize`` flow; checked before any work.

::

    name: digits-quick                 # the run folder is runs/NAME
    data: digits                       # digits | mnist:PATH | fashion-mnist:PATH | idx:PATH
    model: lenet5                      # a zoo name, {function: "module:function", args: {...}},
                                       # or {checkpoint: PATH} (then no baseline training)
    train: {epochs: 30, lr: 0.003}     # the baseline's TrainConfig
    target: {runtime: onnxruntime, batch_size: 64, threads: 1, latency_budget_s: 1.0}
    objectives: [accuracy, latency]
    constraints: ["size <= 100KB"]
    candidates:                        # fixed candidates: techniques applied to the baseline, or
      - name: int8 PTQ (mse)           # a new model (model:/train:) trained or distilled
        techniques: [{technique: static_int8, calibration: mse}]
    search: {trials: 8, sampler: nsga2, space: {...}}   # optional (see slimkit.search.spec)
    seed: 0

Every error names the key (and the line of the YAML file where it can be found) and the values
allowed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.errors import ConfigError, check_keys
from slimkit.models import list_models
from slimkit.search.evaluate import Target
from slimkit.search.objectives import Objectives
from slimkit.search.space import SearchSpace
from slimkit.search.spec import data_dict, read_yaml
from slimkit.train import TrainConfig

RECIPE_KEYS = (
    "name",
    "data",
    "model",
    "train",
    "target",
    "objectives",
    "constraints",
    "candidates",
    "search",
    "seed",
)
CANDIDATE_KEYS = ("name", "techniques", "model", "train")
SEARCH_KEYS = ("trials", "sampler", "pruner", "space", "workers", "storage", "seed")


def _line_of(text: str | None, key: str) -> str:
    """`` (line N)`` of the first ``key:`` in the YAML text, or ''."""
    if not text:
        return ""
    match = re.search(rf"^\s*-?\s*{re.escape(key)}\s*:", text, flags=re.MULTILINE)
    return f" (line {text.count(chr(10), 0, match.start()) + 1})" if match else ""


@dataclass(frozen=True)
class ModelSource:
    """Where the baseline comes from: a zoo name, a user's function, or a checkpoint."""

    zoo: str | None = None
    function: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def describe(self) -> str:
        return self.zoo or self.function or f"checkpoint {self.checkpoint}"


def parse_model(value: Any, where: str) -> ModelSource:
    """``lenet5`` | ``{name: lenet5, args: {...}}`` | ``{function: m:f}`` | ``{checkpoint: P}``."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a zoo name or a mapping; got {value!r}")
    keys = set(value) - {"args"}
    if len(keys) != 1 or not keys <= {"name", "function", "checkpoint"}:
        raise ConfigError(
            f"{where}: give exactly one of name (a zoo model), function ('module:function') "
            f"or checkpoint (a .safetensors file), plus optional args; got {sorted(value)}"
        )
    args = value.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"{where}.args: expected a mapping; got {args!r}")
    if "name" in value:
        if value["name"] not in list_models():
            raise ConfigError(
                f"{where}: unknown model {value['name']!r}; choose from: "
                f"{', '.join(list_models())} (or use function: 'module:function')"
            )
        return ModelSource(zoo=value["name"], args=dict(args))
    if "function" in value:
        text = value["function"]
        if not isinstance(text, str) or text.count(":") != 1:
            raise ConfigError(f"{where}.function: expected 'module:function'; got {text!r}")
        return ModelSource(function=text, args=dict(args))
    path = Path(str(value["checkpoint"]))
    if not path.is_file():
        raise ConfigError(f"{where}.checkpoint: {path} does not exist")
    return ModelSource(checkpoint=str(path))


def build_user_model(
    spec: str, args: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """Import ``module:function`` and call it; clear errors for each way it can go wrong."""
    module_name, function_name = spec.split(":")
    if os.getcwd() not in sys.path:  # as `python -m` would: the user's own modules import
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(
            f"model function {spec!r}: cannot import module {module_name!r}: "
            f"{type(error).__name__}: {error} (is it on PYTHONPATH?)"
        ) from error
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"model function {spec!r}: {module_name} has no function {function_name}")
    params = inspect.signature(function).parameters
    kwargs = dict(args)
    if "input_shape" in params:
        kwargs.setdefault("input_shape", tuple(input_shape))
    if "num_classes" in params:
        kwargs.setdefault("num_classes", num_classes)
    try:
        model = function(**kwargs)
    except Exception as error:
        raise ConfigError(
            f"model function {spec!r} raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model function {spec!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


@dataclass(frozen=True)
class CandidateSpec:
    """A fixed candidate: techniques on the baseline, or a model of its own (trained/distilled)."""

    name: str
    techniques: list[dict[str, Any]]
    model: ModelSource | None = None
    train: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recipe:
    """A checked recipe. Build with :meth:`from_dict` or :meth:`from_file`."""

    name: str
    data: dict[str, Any]
    model: ModelSource
    train: dict[str, Any]
    target: Target
    objectives: Objectives
    candidates: tuple[CandidateSpec, ...]
    search: dict[str, Any] | None
    seed: int
    source: Mapping[str, Any]

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        """Read and check a YAML recipe (safe loader: no code runs)."""
        document = read_yaml(path)
        return cls.from_dict(document, where=str(path), text=Path(path).read_text("utf-8"))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "recipe", text: str | None = None) -> Recipe:
        """Check every key; errors name the key, its line in ``text`` and the allowed values."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: a recipe is a mapping with keys {', '.join(RECIPE_KEYS)}")
        unknown = [k for k in data if k not in RECIPE_KEYS]
        if unknown:
            raise ConfigError(
                f"{where}{_line_of(text, str(unknown[0]))}: unknown key(s) "
                f"{', '.join(map(str, unknown))}; allowed: {', '.join(RECIPE_KEYS)}"
            )

        def at(key: str) -> str:
            return f"{where}{_line_of(text, key)}: {key}"

        name = data.get("name", "run")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"{at('name')}: letters, digits, '.', '_' and '-' only; got {name!r}")
        try:
            data_config = data_dict(data.get("data", "digits"))
        except ConfigError as error:
            raise ConfigError(f"{at('data')}: {error}") from error
        model = parse_model(data.get("model", "lenet5"), at("model"))
        train = dict(data.get("train") or {})
        try:
            TrainConfig.from_dict(train)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"{at('train')}: {error}") from error
        try:
            target = Target(**dict(data.get("target") or {}))
        except TypeError as error:
            raise ConfigError(
                f"{at('target')}: {error}; allowed: runtime, batch_size, threads, latency_budget_s"
            ) from error
        except ConfigError as error:
            raise ConfigError(f"{at('target')}: {error}") from error
        try:
            objectives = Objectives.from_config(data.get("objectives"), data.get("constraints"))
        except ConfigError as error:
            raise ConfigError(f"{at('objectives')}/constraints: {error}") from error
        candidates = tuple(
            _parse_candidate(item, f"{at('candidates')}[{i}]")
            for i, item in enumerate(data.get("candidates") or [])
        )
        names = [c.name for c in candidates]
        if len(set(names)) != len(names) or "baseline" in names:
            raise ConfigError(f"{at('candidates')}: names must be unique and not 'baseline'")
        search = data.get("search")
        if search is not None:
            if not isinstance(search, Mapping):
                raise ConfigError(f"{at('search')}: expected a mapping")
            check_keys(at("search"), search, SEARCH_KEYS)
            try:
                SearchSpace.from_dict(search.get("space"), where="search.space")
            except ConfigError as error:
                raise ConfigError(f"{where}{_line_of(text, 'space')}: {error}") from error
            search = dict(search)
        seed = data.get("seed", 0)
        if not isinstance(seed, int):
            raise ConfigError(f"{at('seed')}: expected an int; got {seed!r}")
        return cls(
            name, data_config, model, train, target, objectives, candidates, search, seed, data
        )

    def fingerprint(self) -> str:
        """A hash of the recipe's content: a run folder refuses a different recipe."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parse_candidate(item: Any, where: str) -> CandidateSpec:
    from slimkit.techniques import config_from_dict

    if not isinstance(item, Mapping) or "name" not in item:
        raise ConfigError(f"{where}: a candidate is {{name: ..., techniques: [...]}}")
    check_keys(where, item, CANDIDATE_KEYS)
    techniques = item.get("techniques") or []
    if not isinstance(techniques, list):
        raise ConfigError(f"{where}.techniques: expected a list of {{technique: NAME, ...}}")
    for index, entry in enumerate(techniques):
        if not isinstance(entry, Mapping) or "technique" not in entry:
            raise ConfigError(f"{where}.techniques[{index}]: needs a 'technique' key")
        body = {k: v for k, v in entry.items() if k != "teacher"}
        if body["technique"] == "distillation":
            body["teacher"] = nn.Identity()  # the run's baseline is the teacher
        try:
            config_from_dict(body)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"{where}.techniques[{index}]: {error}") from error
    model = parse_model(item["model"], f"{where}.model") if "model" in item else None
    train = dict(item["train"]) if item.get("train") else None
    if train is not None:
        try:
            TrainConfig.from_dict(train)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"{where}.train: {error}") from error
    if not techniques and model is None:
        raise ConfigError(f"{where}: a candidate needs techniques, a model, or both")
    return CandidateSpec(str(item["name"]), [dict(t) for t in techniques], model, train)

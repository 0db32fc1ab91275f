"""Recipes: one YAML file names the whole ``slimkit optimize`` flow; all of it checked first.

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

Everything is checked before any work starts — names, values, the search's settings, candidate
model arguments against the model's signature, searched choices against the technique's config —
and every error names the key, the line of the YAML file where its value is, and what is
allowed. ``function:`` runs the user's code: see :mod:`slimkit.pipeline.user_code` for where it
may come from.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.errors import ConfigError, check_keys
from slimkit.models import list_models
from slimkit.models.registry import allow_user_code
from slimkit.pipeline.recipe_search import parse_search
from slimkit.pipeline.user_code import check_arguments, resolve_function, split_spec
from slimkit.search.evaluate import Target
from slimkit.search.objectives import Objectives
from slimkit.search.spec import data_dict
from slimkit.search.validate import checked, parse_target, redact_url
from slimkit.train import TrainConfig
from slimkit.yamlfile import Where, read_yaml_file

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
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ModelSource:
    """Where the baseline comes from: a zoo name, a user's function, or a checkpoint."""

    zoo: str | None = None
    function: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    weights: str | None = None  # trained weights of the zoo model or function: not retrained
    module: Any = None  # a trained nn.Module given in Python (optimize(recipe, model=...))

    def describe(self) -> str:
        if self.module is not None:
            return f"your {type(self.module).__name__}"
        built = self.zoo or self.function or f"checkpoint {self.checkpoint}"
        return f"{built} with weights {self.weights}" if self.weights else built


@dataclass(frozen=True)
class CodeRules:
    """Where user functions may come from: folders of the user's files, packages allowed."""

    roots: tuple[str, ...] = ()
    allow_modules: tuple[str, ...] = ()

    def resolve(self, spec: str, where: str) -> Callable[..., Any]:
        return resolve_function(
            spec,
            roots=(*self.roots, os.getcwd()),
            allow_modules=self.allow_modules,
            where=where,
        )


def _zoo_arguments(name: str, args: Mapping[str, Any], where: Where) -> None:
    from slimkit.models.registry import model_info

    builder = model_info(name).builder
    hidden = {"input_shape", "num_classes"}
    injected = [k for k in args if k in hidden]
    if injected:
        raise ConfigError(f"{where}: {', '.join(injected)} come(s) from the data; remove them")
    check_arguments(builder, args, str(where))


def parse_model(value: Any, where: Where, code: CodeRules | None = None) -> ModelSource:
    """``lenet5`` | ``{name: lenet5, args: {...}}`` | ``{function: m:f}`` | ``{checkpoint: P}``;
    a name or function may add ``weights: PATH`` (trained weights: the baseline is not trained)."""
    code = code or CodeRules()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a zoo name or a mapping; got {value!r}")
    keys = set(value) - {"args", "weights"}
    if len(keys) != 1 or not keys <= {"name", "function", "checkpoint"}:
        raise ConfigError(
            f"{where}: give exactly one of name (a zoo model), function ('module:function') "
            "or checkpoint (a .safetensors file), plus optional args and weights; got "
            f"{sorted(map(str, value))}"
        )
    weights = value.get("weights")
    if "weights" in value:
        if "checkpoint" in value:
            raise ConfigError(f"{where / 'weights'}: a checkpoint holds its weights already")
        weights = _weights_path(weights, where / "weights")
    args = value.get("args") or {}
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"{where / 'args'}: expected a mapping of argument names; got {args!r}")
    if "name" in value:
        name = value["name"]
        if not isinstance(name, str) or name not in list_models():
            raise ConfigError(
                f"{where}: unknown model {name!r}; choose from: "
                f"{', '.join(list_models())} (or use function: 'module:function')"
            )
        _zoo_arguments(name, args, where / "args")
        return ModelSource(zoo=name, args=dict(args), weights=weights)
    if "function" in value:
        text = value["function"]
        split_spec(text, str(where / "function"))
        function = code.resolve(text, str(where / "function"))
        check_arguments(function, args, str(where / "args"))
        return ModelSource(function=text, args=dict(args), weights=weights)
    if "args" in value:
        raise ConfigError(f"{where / 'args'}: a checkpoint takes no args (its spec is stored)")
    path = value["checkpoint"]
    if not isinstance(path, str) or not Path(path).is_file():
        raise ConfigError(f"{where / 'checkpoint'}: {path} does not exist (or is not a file)")
    return ModelSource(checkpoint=path)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_path(value: Any, where: Where) -> str:
    from slimkit.train.weights import WEIGHT_SUFFIXES

    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected the path of a weights file; got {value!r}")
    path = Path(value).expanduser()
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ConfigError(
            f"{where}: {value} is not a weights file; give .safetensors, or a state_dict saved "
            "by torch.save as .pt / .pth / .bin"
        )
    if not path.is_file():
        raise ConfigError(f"{where}: {value} does not exist (or is not a file)")
    return str(path.resolve())


def build_user_model(
    spec: str,
    args: Mapping[str, Any],
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    code: CodeRules | None = None,
) -> nn.Module:
    """Call the user's ``module:function`` (from an allowed place); one clear error per failure."""
    function = (code or CodeRules()).resolve(spec, f"model function {spec!r}")
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
    from slimkit.models import ModelSpec

    # the spec a checkpoint of it records: the function and args rebuild it (see build_model)
    model.slimkit_spec = ModelSpec(  # type: ignore[assignment]
        spec, tuple(input_shape), num_classes, {k: v for k, v in args.items()}
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
    """A checked recipe. Build with :meth:`from_dict` or :meth:`from_file`.

    ``source`` is the recipe as written, with any password in the storage URL replaced by
    ``***``: it is what run folders and reports store. ``search["storage"]`` keeps the real URL.
    """

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
    code: CodeRules = field(default_factory=CodeRules)
    location: Where = field(default_factory=Where, compare=False)

    @classmethod
    def from_file(cls, path: str | Path, *, allow_modules: Iterable[str] = ()) -> Recipe:
        """Read and check a YAML recipe (safe loader; see :mod:`slimkit.yamlfile`)."""
        document = read_yaml_file(path)
        return cls.from_dict(
            document.data,
            where=document.where(),
            base_dir=Path(path).resolve().parent,
            allow_modules=allow_modules,
        )

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        where: str | Where = "recipe",
        base_dir: str | Path | None = None,
        allow_modules: Iterable[str] = (),
    ) -> Recipe:
        """Check every key; errors name the key, its line (from a file) and the allowed values.

        Args:
            data: the recipe mapping.
            where: the file's name (or its :class:`~slimkit.yamlfile.Where` with line numbers).
            base_dir: the recipe's folder: user functions may be defined in ``.py`` files there
                (and in the current directory).
            allow_modules: installed packages whose functions may be named as well.
        """
        root = where if isinstance(where, Where) else Where(str(where))
        if not isinstance(data, Mapping):
            raise ConfigError(f"{root}: a recipe is a mapping with keys {', '.join(RECIPE_KEYS)}")
        for key in data:
            if key not in RECIPE_KEYS:
                raise ConfigError(
                    f"{root / str(key)}: unknown key; allowed: {', '.join(RECIPE_KEYS)}"
                )
        code = CodeRules(
            roots=(str(base_dir),) if base_dir is not None else (),
            allow_modules=tuple(_check_modules(allow_modules)),
        )
        name = _parse_name(data.get("name", "run"), root / "name")
        data_config = checked(lambda: data_dict(data.get("data", "digits")), root / "data")
        model = parse_model(data.get("model", "lenet5"), root / "model", code)
        train = _parse_train(data.get("train"), root / "train")
        target = parse_target(data.get("target"), root / "target")
        objectives = checked(
            lambda: Objectives.from_config(data.get("objectives"), data.get("constraints")),
            root / ("objectives" if "objectives" in data else "constraints"),
        )
        candidates = _parse_candidates(data.get("candidates"), root / "candidates", model, code)
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{root / 'seed'}: expected an int in [0, 2**32 - 1]; got {seed!r}")
        search = None
        if data.get("search") is not None:
            with allow_user_code(code.roots, code.allow_modules):
                search = parse_search(
                    data["search"],
                    root / "search",
                    objectives=data.get("objectives"),
                    constraints=data.get("constraints"),
                    target=target,
                    data=data_config,
                    seed=seed,
                    has_teacher=True,  # every model source can teach: its baseline is a checkpoint
                )
        source = dict(data)
        if model.weights is not None:  # the run folder refuses other weights under one name
            source["model"] = {**data["model"], "weights_sha256": file_sha256(model.weights)}
        if search is not None and search.get("storage"):
            source["search"] = {**data["search"], "storage": redact_url(search["storage"])}
        return cls(
            name=name,
            data=data_config,
            model=model,
            train=train,
            target=target,
            objectives=objectives,
            candidates=candidates,
            search=search,
            seed=seed,
            source=source,
            code=code,
            location=root,
        )

    def fingerprint(self) -> str:
        """A hash of the recipe's content: a run folder refuses a different recipe."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_modules(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
            raise ConfigError(f"--allow-module: expected a package name; got {name!r}")
        out.append(name)
    return out


def _parse_name(name: Any, where: Where) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{where}: a run name is one folder name: a letter or digit, then letters, digits, "
            f"'.', '_' or '-' (at most 100); got {name!r}"
        )
    return name


def _parse_train(value: Any, where: Where) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of training options; got {value!r}")
    train = dict(value)
    checked(lambda: TrainConfig.from_dict(train), where)
    return train


def _candidate_name(value: Any, where: Where) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}: a candidate's name is text; got {value!r}")
    name = str(value)
    if not name.strip() or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(
            f"{where}: a candidate's name is one line of 1 to 200 characters; got {name!r}"
        )
    if name.strip().lower() == "baseline" or re.fullmatch(r"trial \d+", name.strip()):
        raise ConfigError(
            f"{where}: {name!r} is a name the report gives (the baseline, search trials); "
            "choose another"
        )
    return name


def _parse_candidates(
    value: Any, where: Where, baseline: ModelSource, code: CodeRules
) -> tuple[CandidateSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {{name: ..., techniques: [...]}}")
    out = [_parse_candidate(item, where / i, baseline, code) for i, item in enumerate(value)]
    seen: dict[str, int] = {}
    for index, candidate in enumerate(out):
        if candidate.name in seen:
            raise ConfigError(
                f"{where / index / 'name'}: {candidate.name!r} is also the name of candidate "
                f"{seen[candidate.name]}; names must be unique"
            )
        seen[candidate.name] = index
    return tuple(out)


def _parse_techniques(value: Any, where: Where) -> list[dict[str, Any]]:
    from slimkit.techniques import config_from_dict

    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {{technique: NAME, ...}}")
    for index, entry in enumerate(value):
        at = where / index
        if not isinstance(entry, Mapping) or "technique" not in entry:
            raise ConfigError(f"{at}: needs a 'technique' key; got {entry!r}")
        if "teacher" in entry:
            raise ConfigError(
                f"{at / 'teacher'}: in a recipe the baseline is the teacher; remove 'teacher'"
            )
        body = dict(entry)
        if body["technique"] == "distillation":
            body["teacher"] = nn.Identity()  # stands in for the run's baseline
        checked(partial(config_from_dict, body), at)
    if sum(e["technique"] == "distillation" for e in value) > 1:
        raise ConfigError(f"{where}: distillation may be given once per candidate")
    return [dict(t) for t in value]


def _parse_candidate(
    item: Any, where: Where, baseline: ModelSource, code: CodeRules
) -> CandidateSpec:
    if not isinstance(item, Mapping) or "name" not in item:
        raise ConfigError(f"{where}: a candidate is {{name: ..., techniques: [...]}}")
    check_keys(str(where), item, CANDIDATE_KEYS)
    name = _candidate_name(item["name"], where / "name")
    techniques = _parse_techniques(item.get("techniques"), where / "techniques")
    model = parse_model(item["model"], where / "model", code) if "model" in item else None
    train = _parse_train(item.get("train"), where / "train") or None
    if not techniques and model is None:
        raise ConfigError(f"{where}: a candidate needs techniques, a model, or both")
    distils = any(t["technique"] == "distillation" for t in techniques)
    own = model or baseline
    if (model is not None or distils) and own.zoo is None and own.function is None:
        raise ConfigError(
            f"{where}: a candidate with its own model (or distillation) trains a zoo model or "
            f"a function of yours; {own.describe()} is neither (name one under model:)"
        )
    if model is not None and model.weights is not None:
        raise ConfigError(
            f"{where / 'model' / 'weights'}: a candidate's own model is trained by the candidate; "
            "weights apply to the recipe's model (the baseline)"
        )
    return CandidateSpec(name, techniques, model, train)

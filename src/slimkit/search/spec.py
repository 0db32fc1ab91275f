"""Search files: one YAML document → :class:`SearchSettings` (safe loader, every key checked).

::

    data: digits                      # or mnist:PATH, fashion-mnist:PATH, idx:PATH
    teacher: runs/base/lenet5.safetensors   # needed when the space can distil
    target: {runtime: onnxruntime, batch_size: 64, threads: 1}
    objectives: [accuracy, latency]   # or {mnasnet: {target_ms: 1.0}}
    constraints: ["size <= 100KB"]
    trials: 40
    sampler: nsga2                    # nsga2 | tpe | random
    pruner: auto          # auto | median | successive_halving | hyperband | pareto | none
    seed: 0
    space: {model: ..., train: ..., techniques: [...]}   # default: search.space.default_space()
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimkit.data import DataConfig
from slimkit.data.dataset import parse_data_spec
from slimkit.errors import ConfigError
from slimkit.search.objectives import Objectives
from slimkit.search.run import PRUNERS, SAMPLERS, SearchSettings, make_pruner
from slimkit.search.space import SearchSpace, default_space
from slimkit.search.validate import MAX_SEED, MAX_TRIALS, checked, int_in, one_of, parse_target
from slimkit.yamlfile import Where, as_where, read_yaml_file

SEARCH_KEYS = (
    "data",
    "teacher",
    "target",
    "objectives",
    "constraints",
    "trials",
    "sampler",
    "pruner",
    "seed",
    "space",
    "study",
)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, or one ConfigError line (see :func:`slimkit.yamlfile.read_yaml_file`:
    safe loader, no aliases, at most 1 MB, UTF-8)."""
    return read_yaml_file(path).data


def data_dict(spec: Any) -> dict[str, Any]:
    """A data spec string (``digits``, ``mnist:PATH``) or mapping → DataConfig dict."""
    if isinstance(spec, str):
        return parse_data_spec(spec).to_dict()
    if isinstance(spec, Mapping):
        return DataConfig.from_dict(spec).to_dict()
    raise ConfigError(f"data: expected 'digits', 'mnist:PATH', ... or a mapping; got {spec!r}")


def _teacher(value: Any, where: Where) -> str:
    if not isinstance(value, str) or not Path(value).is_file():
        raise ConfigError(f"{where}: expected the path of a checkpoint file; got {value!r}")
    return value


def _study_name(value: Any, where: Where) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", value):
        raise ConfigError(
            f"{where}: a study name is a letter or digit, then letters, digits, '.', '_' or "
            f"'-' (at most 100); got {value!r}"
        )
    return value


def settings_from_dict(
    document: Any, *, out_dir: str, where: str | Where = "search", **overrides: Any
) -> SearchSettings:
    """Check a search document whole and build its settings (``overrides`` win when not None).

    Every key is checked (with the line of its value when ``where`` carries a file's lines)
    before any data is read or any trial runs.
    """
    root = as_where(where)
    if not isinstance(document, Mapping):
        raise ConfigError(f"{root}: expected a mapping with keys {', '.join(SEARCH_KEYS)}")
    for key in document:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{root / str(key)}: unknown key; allowed: {', '.join(SEARCH_KEYS)}")
    body: dict[str, Any] = {k: v for k, v in document.items() if v is not None}
    body.update({k: v for k, v in overrides.items() if v is not None})
    checks: dict[str, Any] = {
        "trials": lambda v, w: int_in(v, w, 1, MAX_TRIALS),
        "sampler": lambda v, w: one_of(v, w, SAMPLERS),
        "pruner": lambda v, w: one_of(v, w, PRUNERS),
        "seed": lambda v, w: int_in(v, w, 0, MAX_SEED),
        "teacher": _teacher,
        "study": _study_name,
    }
    for key, check in checks.items():
        if key in body:
            body[key] = check(body[key], root / key)
    body["data"] = checked(lambda: data_dict(body.get("data", "digits")), root / "data")
    body["target"] = parse_target(body.get("target"), root / "target").to_dict()
    checked(
        lambda: Objectives.from_config(body.get("objectives"), body.get("constraints")),
        root / ("objectives" if "objectives" in body else "constraints"),
    )
    if "space" in body:
        SearchSpace.from_dict(body["space"], where=root / "space")
    else:  # the default space; distillation only when a teacher is given
        body["space"] = default_space(distill=body.get("teacher") is not None)
    body["out_dir"] = str(out_dir)
    settings: SearchSettings = checked(lambda: SearchSettings(**body), root)
    checked(lambda: make_pruner(settings), root / "pruner")
    return settings


def settings_from_file(path: str | Path, *, out_dir: str, **overrides: Any) -> SearchSettings:
    """Read a search YAML file (see the module docstring)."""
    document = read_yaml_file(path)
    return settings_from_dict(document.data, out_dir=out_dir, where=document.where(), **overrides)

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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimkit.data import DataConfig
from slimkit.data.dataset import parse_data_spec
from slimkit.errors import ConfigError, check_keys
from slimkit.search.run import SearchSettings
from slimkit.search.space import default_space
from slimkit.yamlfile import read_yaml_file

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


def settings_from_dict(
    document: Mapping[str, Any], *, out_dir: str, where: str = "search", **overrides: Any
) -> SearchSettings:
    """Check a search document's keys and build its settings (``overrides`` win when not None)."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(SEARCH_KEYS)}")
    check_keys(where, document, SEARCH_KEYS)
    body: dict[str, Any] = {k: v for k, v in document.items() if v is not None}
    body.update({k: v for k, v in overrides.items() if v is not None})
    if "space" not in body:  # the default space; distillation only when a teacher is given
        body["space"] = default_space(distill=body.get("teacher") is not None)
    body["data"] = data_dict(body.get("data", "digits"))
    body["target"] = dict(body.get("target") or {})
    body["out_dir"] = str(out_dir)
    try:
        return SearchSettings(**body)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error


def settings_from_file(path: str | Path, *, out_dir: str, **overrides: Any) -> SearchSettings:
    """Read a search YAML file (see the module docstring)."""
    return settings_from_dict(read_yaml(path), out_dir=out_dir, where=str(path), **overrides)

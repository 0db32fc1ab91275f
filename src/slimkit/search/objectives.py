"""Objectives and constraints of a search: which measured metrics to optimize, and hard limits.

Metrics a trial measures (keys of its metrics dict):

========== ===== ==============================================================
name       sense meaning
========== ===== ==============================================================
accuracy   max   validation accuracy measured in the target runtime
latency    min   p50 ms per batch in the target runtime (batch size, threads)
size       min   bytes of the exported file on disk
macs       min   multiply-accumulates of one sample (exact counter)
params     min   parameters
arena      min   TFLite Micro tensor arena bytes (RAM), microcontroller targets
flash      min   model bytes + interpreter code estimate, microcontroller targets
========== ===== ==============================================================

``ram`` is an alias of ``arena``. The scalar option ``mnasnet`` is the reward of Tan et al. 2019,
``ACC · (LAT / T)^w`` with ``w = −0.07`` and a latency target ``T`` in ms (maximized).

Constraints are strings such as ``"latency <= 2ms"``, ``"size <= 100KB"``, ``"ram <= 32KB"`` or
``"accuracy >= 0.98"``; sizes count KB = 1024 bytes and MB = 1024² bytes, as microcontroller data
sheets do. A trial that breaks one is *infeasible*: it is kept and reported, but never on the front
(Optuna's samplers get the constraint values through ``constraints_func``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slimkit.errors import ConfigError

METRICS: dict[str, str] = {
    "accuracy": "max",
    "latency": "min",
    "size": "min",
    "macs": "min",
    "params": "min",
    "arena": "min",
    "flash": "min",
}
ALIASES = {"ram": "arena", "acc": "accuracy", "bytes": "size", "latency_ms": "latency"}
UNITS = {
    "": 1.0,
    "ms": 1.0,
    "s": 1000.0,
    "us": 1e-3,
    "b": 1.0,
    "kb": 1024.0,
    "kib": 1024.0,
    "mb": 1024.0**2,
    "mib": 1024.0**2,
    "k": 1e3,
    "m": 1e6,
    "%": 0.01,
}
MNASNET_W = -0.07
UNIT_LABELS = {"latency": "ms", "size": "bytes", "arena": "bytes", "flash": "bytes"}


def metric_name(name: str) -> str:
    """The canonical metric name of ``name`` (aliases resolved), or a ConfigError."""
    key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; choose from: {', '.join([*METRICS, *ALIASES])}"
        )
    return key


@dataclass(frozen=True)
class Constraint:
    """``metric <= limit`` or ``metric >= limit``."""

    metric: str
    op: str
    limit: float
    text: str

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """Optuna's convention: ≤ 0 when satisfied, the amount of violation otherwise."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return math.inf
        return float(value) - self.limit if self.op == "<=" else self.limit - float(value)

    def satisfied(self, metrics: Mapping[str, Any]) -> bool:
        return self.violation(metrics) <= 0


_CONSTRAINT = re.compile(
    r"^\s*([A-Za-z_]+)\s*(<=|>=)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*$"
)


def parse_constraint(text: str) -> Constraint:
    """Parse ``"latency <= 2ms"``-style constraints; errors say the expected form."""
    match = _CONSTRAINT.match(str(text))
    if not match:
        raise ConfigError(
            f"constraint {text!r} is not of the form 'METRIC <= VALUE[UNIT]' or "
            f"'METRIC >= VALUE[UNIT]' (e.g. 'latency <= 2ms', 'size <= 100KB')"
        )
    name, op, number, unit = match.groups()
    metric = metric_name(name)
    if unit.lower() not in UNITS:
        raise ConfigError(
            f"constraint {text!r}: unknown unit {unit!r}; use one of ms, s, us, B, KB, MB, %"
        )
    return Constraint(metric, op, float(number) * UNITS[unit.lower()], str(text))


@dataclass(frozen=True)
class Objectives:
    """The metrics a search optimizes (each with its sense) or the MnasNet scalar reward."""

    metrics: tuple[str, ...] = ("accuracy", "latency")
    mnasnet_target_ms: float | None = None
    mnasnet_w: float = MNASNET_W
    constraints: tuple[Constraint, ...] = ()

    @classmethod
    def from_config(
        cls,
        objectives: Sequence[str] | str | Mapping[str, Any] | None,
        constraints: Sequence[str] | None = None,
    ) -> Objectives:
        """From a recipe: ``[accuracy, latency]``, or ``{mnasnet: {target_ms: 1.0}}``."""
        parsed = tuple(parse_constraint(c) for c in (constraints or ()))
        if objectives is None:
            return cls(constraints=parsed)
        if isinstance(objectives, Mapping):
            if set(objectives) != {"mnasnet"} or not isinstance(objectives["mnasnet"], Mapping):
                raise ConfigError(
                    "objectives: a mapping must be {mnasnet: {target_ms: T, w: -0.07}}; "
                    f"got {dict(objectives)!r}"
                )
            body = dict(objectives["mnasnet"])
            extra = sorted(set(body) - {"target_ms", "w"})
            target = body.get("target_ms")
            if extra or not isinstance(target, int | float) or target <= 0:
                raise ConfigError(
                    f"objectives.mnasnet needs target_ms > 0 (and optionally w); got {body!r}"
                )
            w = float(body.get("w", MNASNET_W))
            return cls(("mnasnet",), float(target), w, parsed)
        if isinstance(objectives, str):
            objectives = [objectives]
        names = tuple(metric_name(n) for n in objectives)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"objectives must be distinct metrics; got {list(objectives)}")
        return cls(names, None, MNASNET_W, parsed)

    @property
    def is_scalar(self) -> bool:
        """One objective (so Optuna's single-objective pruners apply)."""
        return len(self.metrics) == 1

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        if self.metrics == ("mnasnet",):
            return ["maximize"]
        return ["maximize" if METRICS[m] == "max" else "minimize" for m in self.metrics]

    @property
    def metric_names(self) -> list[str]:
        """Names with units, one per objective, as optuna-dashboard shows them."""
        if self.metrics == ("mnasnet",):
            return ["mnasnet reward"]
        return [f"{m} ({UNIT_LABELS[m]})" if m in UNIT_LABELS else m for m in self.metrics]

    @property
    def senses(self) -> tuple[str, ...]:
        """``max``/``min`` per objective (for the Pareto filter)."""
        return tuple("max" if d == "maximize" else "min" for d in self.directions)

    def values(self, metrics: Mapping[str, Any]) -> list[float]:
        """The objective values of a trial's metrics (a missing metric is a ConfigError)."""
        if self.metrics == ("mnasnet",):
            assert self.mnasnet_target_ms is not None
            return [
                mnasnet_reward(
                    float(metrics["accuracy"]),
                    float(metrics["latency"]),
                    self.mnasnet_target_ms,
                    self.mnasnet_w,
                )
            ]
        out = []
        for m in self.metrics:
            if metrics.get(m) is None:
                raise ConfigError(
                    f"objective {m!r} was not measured for this target (e.g. arena/flash need "
                    f"the tflite-micro runtime)"
                )
            out.append(float(metrics[m]))
        return out

    def violations(self, metrics: Mapping[str, Any]) -> list[float]:
        """One value per constraint, ≤ 0 when satisfied."""
        return [c.violation(metrics) for c in self.constraints]

    def feasible(self, metrics: Mapping[str, Any]) -> bool:
        return all(c.satisfied(metrics) for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "mnasnet_target_ms": self.mnasnet_target_ms,
            "mnasnet_w": self.mnasnet_w,
            "constraints": [c.text for c in self.constraints],
        }


def mnasnet_reward(accuracy: float, latency_ms: float, target_ms: float, w: float = -0.07) -> float:
    """``ACC · (LAT / T)^w`` (Tan et al. 2019, the soft-constraint form with α = β = w)."""
    if latency_ms <= 0 or target_ms <= 0:
        raise ConfigError("mnasnet reward needs positive latency and target")
    return accuracy * (latency_ms / target_ms) ** w

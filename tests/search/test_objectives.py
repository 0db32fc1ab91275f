"""Objectives, constraints with units, and the MnasNet reward."""

from __future__ import annotations

import math

import pytest

from slimkit.errors import ConfigError
from slimkit.search import Objectives, mnasnet_reward, parse_constraint


@pytest.mark.parametrize(
    ("text", "metric", "op", "limit"),
    [
        ("latency <= 2ms", "latency", "<=", 2.0),
        ("latency<=0.5s", "latency", "<=", 500.0),
        ("size <= 100KB", "size", "<=", 102400.0),
        ("ram <= 32KB", "arena", "<=", 32768.0),
        ("flash <= 1MB", "flash", "<=", 1048576.0),
        ("accuracy >= 0.988", "accuracy", ">=", 0.988),
        ("accuracy >= 98.8%", "accuracy", ">=", 0.988),
    ],
)
def test_constraints_parse_units(text: str, metric: str, op: str, limit: float) -> None:
    c = parse_constraint(text)
    assert (c.metric, c.op) == (metric, op)
    assert c.limit == pytest.approx(limit)


def test_constraint_violation_sign() -> None:
    c = parse_constraint("latency <= 2ms")
    assert c.violation({"latency": 1.5}) == pytest.approx(-0.5)
    assert c.violation({"latency": 2.5}) == pytest.approx(0.5)
    assert c.violation({}) == math.inf  # not measured: infeasible, never silently fine
    floor = parse_constraint("accuracy >= 0.9")
    assert floor.satisfied({"accuracy": 0.95}) and not floor.satisfied({"accuracy": 0.85})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency < 2ms", "not of the form"),
        ("speed <= 2ms", "unknown metric 'speed'"),
        ("size <= 3parsecs", "unknown unit 'parsecs'"),
    ],
)
def test_bad_constraints(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_constraint(text)


def test_mnasnet_reward_matches_the_formula() -> None:
    # ACC * (LAT / T) ** -0.07: at twice the target, 0.9 * 2 ** -0.07
    assert mnasnet_reward(0.9, 2.0, 1.0) == pytest.approx(0.9 * 2**-0.07)
    assert mnasnet_reward(0.9, 1.0, 1.0) == pytest.approx(0.9)
    objectives = Objectives.from_config({"mnasnet": {"target_ms": 1.0}})
    assert objectives.directions == ["maximize"] and objectives.is_scalar
    assert objectives.values({"accuracy": 0.9, "latency": 0.5}) == [pytest.approx(0.9 * 0.5**-0.07)]


def test_multi_objective_directions_and_values() -> None:
    objectives = Objectives.from_config(["accuracy", "latency", "size"], ["size <= 1KB"])
    assert objectives.directions == ["maximize", "minimize", "minimize"]
    metrics = {"accuracy": 0.97, "latency": 0.4, "size": 2048}
    assert objectives.values(metrics) == [0.97, 0.4, 2048.0]
    assert not objectives.feasible(metrics)
    with pytest.raises(ConfigError, match="distinct"):
        Objectives.from_config(["accuracy", "acc"])
    with pytest.raises(ConfigError, match="target_ms"):
        Objectives.from_config({"mnasnet": {"target_ms": -1}})

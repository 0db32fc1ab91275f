"""The Pareto filter and 2-D hypervolume against brute-force oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.pareto import dominates, hypervolume_2d, pareto_front, pareto_mask


def _brute_force_front(points: list[tuple[float, ...]], senses: tuple[str, ...]) -> list[int]:
    def better_or_equal(a: float, b: float, sense: str) -> bool:
        return a >= b if sense == "max" else a <= b

    front = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            if i == j:
                continue
            if all(better_or_equal(q[k], p[k], s) for k, s in enumerate(senses)) and any(
                q[k] != p[k] for k in range(len(senses))
            ):
                dominated = True
        if not dominated:
            front.append(i)
    return front


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("senses", [("max", "min"), ("min", "min", "min"), ("max", "max")])
def test_front_matches_brute_force(seed: int, senses: tuple[str, ...]) -> None:
    rng = np.random.default_rng(seed)
    # a coarse grid makes ties and exact duplicates common
    points = [tuple(float(v) for v in rng.integers(0, 6, len(senses))) for _ in range(40)]
    assert pareto_front(points, senses) == _brute_force_front(points, senses)


def test_dominates_and_duplicates() -> None:
    assert dominates((0.9, 1.0), (0.8, 1.0), ("max", "min"))
    assert not dominates((0.9, 1.0), (0.9, 1.0), ("max", "min"))
    assert pareto_mask([(0.9, 1.0), (0.9, 1.0), (0.8, 2.0)], ("max", "min")) == [True, True, False]
    with pytest.raises(ConfigError, match="finite"):
        pareto_mask([(float("nan"), 1.0)], ("max", "min"))


def test_hypervolume_by_hand_and_by_grid() -> None:
    # accuracy (max) vs latency (min), reference (0, 10):
    # (0.9, 4): 0.9*6 = 5.4; (0.5, 2) adds 0.5*(4-2) = 1.0 -> 6.4
    points = [(0.9, 4.0), (0.5, 2.0), (0.4, 5.0)]
    assert hypervolume_2d(points, ("max", "min"), (0.0, 10.0)) == pytest.approx(6.4)
    rng = np.random.default_rng(1)
    pts = [(float(a), float(b)) for a, b in rng.uniform(0, 1, (12, 2))]
    xs = np.linspace(0, 1, 401)[:-1] + 1 / 800
    covered = sum(any(a >= x and b <= y for a, b in pts) for x, y in itertools.product(xs, 1 - xs))
    assert hypervolume_2d(pts, ("max", "min"), (0.0, 1.0)) == pytest.approx(
        covered / len(xs) ** 2, abs=5e-3
    )

"""Pareto logic: non-dominated points, the front of a set of candidates, hypervolume.

Every objective is given a sense, ``"max"`` or ``"min"``. Point ``a`` dominates ``b`` when it is
at least as good on every objective and strictly better on one. Used by the search (its front and
its stopping rule) and by the report (the frontier it draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slimkit.errors import ConfigError

SENSES = ("max", "min")


def _as_minimization(points: Sequence[Sequence[float]], senses: Sequence[str]) -> np.ndarray:
    """``points`` as an (n, k) float array where every objective is to be minimized."""
    for sense in senses:
        if sense not in SENSES:
            raise ConfigError(f"an objective sense must be 'max' or 'min'; got {sense!r}")
    array = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    if array.shape[1] != len(senses):
        raise ConfigError(
            f"{array.shape[1]} values per point but {len(senses)} senses ({list(senses)})"
        )
    if not np.all(np.isfinite(array)):
        raise ConfigError("Pareto points must be finite numbers (drop failed candidates first)")
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    return array * sign


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    pa, pb = _as_minimization([a, b], senses)
    return bool(np.all(pa <= pb) and np.any(pa < pb))


def pareto_mask(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (duplicates all stay on the front)."""
    if len(points) == 0:
        return []
    p = _as_minimization(points, senses)
    mask = []
    for i in range(len(p)):
        no_worse = np.all(p <= p[i], axis=1)
        better = np.any(p < p[i], axis=1)
        mask.append(not bool(np.any(no_worse & better)))
    return mask


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [i for i, keep in enumerate(pareto_mask(points, senses)) if keep]


def hypervolume_2d(
    points: Sequence[Sequence[float]], senses: Sequence[str], reference: Sequence[float]
) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (two objectives).

    The reference point must be worse than every point that should count (e.g. accuracy 0 and the
    largest latency allowed); points not better than it on both objectives add nothing.
    """
    if len(senses) != 2:
        raise ConfigError("hypervolume_2d takes exactly two objectives")
    if len(points) == 0:
        return 0.0
    p = _as_minimization(points, senses)
    ref = _as_minimization([reference], senses)[0]
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[np.argsort(p[:, 0], kind="stable")]
    area = 0.0
    best_y = ref[1]
    for x, y in p:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)

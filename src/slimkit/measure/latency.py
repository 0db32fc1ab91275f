"""The latency harness shared by every runtime: warm-up, repeats until stable, percentiles.

The harness times ``run(x)`` with ``time.perf_counter_ns`` after a warm-up, in rounds. It stops
when the median over all timed runs moves by less than ``tolerance`` (relative) from one round to
the next, once at least ``min_repeats`` runs are in, or when the time budget or ``max_repeats``
is reached; ``stable`` says which. Threads are the runner's business (each runner is loaded with a
thread count); the harness only records them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slimkit.errors import ConfigError


@dataclass(frozen=True)
class LatencyConfig:
    """How to time a model.

    Args:
        warmup: untimed runs first (caches, lazy initialisation, thread pools).
        min_repeats: timed runs before stability is checked, and per round after that.
        max_repeats: hard cap on timed runs.
        time_budget_s: stop after this many seconds of timing even if not stable.
        tolerance: relative change of the median between rounds that counts as stable.
    """

    warmup: int = 10
    min_repeats: int = 30
    max_repeats: int = 3000
    time_budget_s: float = 3.0
    tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_repeats < 3 or self.max_repeats < self.min_repeats:
            raise ConfigError(
                "latency needs warmup >= 0, min_repeats >= 3 and max_repeats >= min_repeats; got "
                f"warmup={self.warmup}, min_repeats={self.min_repeats}, "
                f"max_repeats={self.max_repeats}"
            )
        if self.time_budget_s <= 0 or not 0 < self.tolerance < 1:
            raise ConfigError(
                f"latency needs time_budget_s > 0 and 0 < tolerance < 1; got "
                f"{self.time_budget_s}, {self.tolerance}"
            )


@dataclass(frozen=True)
class LatencyStats:
    """Timing of one (batch size, threads) setting, in milliseconds per batch."""

    batch_size: int
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    stable: bool

    @property
    def per_sample_ms(self) -> float:
        """Median milliseconds per sample (p50 / batch size)."""
        return self.p50_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def summarize(times_ms: np.ndarray, *, batch_size: int, threads: int, stable: bool) -> LatencyStats:
    """Percentiles of a vector of per-run times in milliseconds."""
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    return LatencyStats(
        batch_size=batch_size,
        threads=threads,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(times_ms.mean()),
        min_ms=float(times_ms.min()),
        repeats=int(times_ms.size),
        stable=stable,
    )


def measure_latency(
    run: Callable[[np.ndarray], Any],
    x: np.ndarray,
    *,
    threads: int,
    config: LatencyConfig | None = None,
) -> LatencyStats:
    """Time ``run(x)`` until its median is stable.

    Args:
        run: the function to time (e.g. ``runner.run``).
        x: one input batch; its first dimension is the batch size.
        threads: the thread count the runner was loaded with (recorded, not applied).
        config: warm-up, repeats, budget and tolerance.

    Example:
        >>> stats = measure_latency(lambda a: a.sum(), np.ones((4, 8)), threads=1)
        >>> stats.repeats >= 30
        True
    """
    config = config or LatencyConfig()
    for _ in range(config.warmup):
        run(x)
    times: list[float] = []
    previous_median: float | None = None
    stable = False
    deadline = time.perf_counter() + config.time_budget_s
    while len(times) < config.max_repeats:
        for _ in range(min(config.min_repeats, config.max_repeats - len(times))):
            start = time.perf_counter_ns()
            run(x)
            times.append((time.perf_counter_ns() - start) / 1e6)
        median = float(np.median(times))
        if (
            previous_median is not None
            and abs(median - previous_median) <= config.tolerance * previous_median
        ):
            stable = True
            break
        previous_median = median
        if time.perf_counter() > deadline:
            break
    return summarize(np.asarray(times), batch_size=int(x.shape[0]), threads=threads, stable=stable)

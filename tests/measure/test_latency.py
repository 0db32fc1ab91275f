"""The latency harness: repeats until stable, percentiles, and bad settings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.measure import LatencyConfig, measure_latency
from slimkit.measure.latency import half_drift, summarize


def test_percentiles_of_known_times() -> None:
    stats = summarize(np.arange(1, 101, dtype=float), batch_size=4, threads=2, stable=True)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.min_ms == 1.0 and stats.repeats == 100
    assert stats.per_sample_ms == pytest.approx(50.5 / 4)


def test_half_drift_compares_the_medians_of_the_two_halves() -> None:
    assert half_drift(np.array([1.0, 1.0, 1.0, 1.0])) == 0.0
    # first half median 1, second half median 3 (the spike in the first half does not move it)
    assert half_drift(np.array([1.0, 9.0, 1.0, 3.0, 3.0, 3.0])) == pytest.approx(2.0)
    assert half_drift(np.array([2.0])) == 0.0  # too short to split
    stats = summarize(np.array([1.0, 1.0, 2.0, 2.0]), batch_size=1, threads=1, stable=False)
    assert stats.drift == pytest.approx(1.0)


def test_a_latency_that_switches_modes_is_flagged_not_stable() -> None:
    calls = []

    def switching(x: np.ndarray) -> None:
        calls.append(1)
        time.sleep(0.0005 if len(calls) <= 50 else 0.003)  # fast for 50 calls, then 6x slower

    config = LatencyConfig(
        warmup=0, min_repeats=10, time_budget_s=0.15, tolerance=0.05, min_time_s=0.1
    )
    stats = measure_latency(switching, np.zeros((1, 1)), threads=1, config=config)
    # the budget ran out while the first half was still mostly fast and the second slow
    assert not stats.stable
    assert stats.drift > 1.0
    steady = measure_latency(
        lambda x: time.sleep(0.001), np.zeros((1, 1)), threads=1, config=config
    )
    assert steady.stable and steady.drift <= 0.05


def test_sleeping_function_measures_its_sleep() -> None:
    config = LatencyConfig(
        warmup=2, min_repeats=10, max_repeats=200, time_budget_s=2.0, tolerance=0.05
    )
    stats = measure_latency(lambda x: time.sleep(0.002), np.zeros((8, 1)), threads=1, config=config)
    assert 2.0 <= stats.p50_ms < 6.0
    assert stats.batch_size == 8 and stats.threads == 1
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert 10 <= stats.repeats <= 200


def test_warmup_runs_are_not_timed() -> None:
    calls = []

    def run(x: np.ndarray) -> None:
        calls.append(1)
        if len(calls) <= 3:
            time.sleep(0.05)  # a slow first call, as lazy initialisation makes

    config = LatencyConfig(warmup=3, min_repeats=5, max_repeats=20, time_budget_s=1.0)
    stats = measure_latency(run, np.zeros((1, 1)), threads=1, config=config)
    assert stats.p99_ms < 40
    assert len(calls) == 3 + stats.repeats


def test_budget_stops_an_unstable_function() -> None:
    rng = np.random.default_rng(0)

    def noisy(x: np.ndarray) -> None:
        time.sleep(float(rng.choice([0.0005, 0.004])))

    config = LatencyConfig(
        warmup=0, min_repeats=5, max_repeats=10_000, time_budget_s=0.3, tolerance=0.001
    )
    started = time.perf_counter()
    stats = measure_latency(noisy, np.zeros((1, 1)), threads=1, config=config)
    assert time.perf_counter() - started < 2.0
    assert stats.repeats < 10_000


def test_repeated_medians_agree_on_a_steady_workload() -> None:
    a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    config = LatencyConfig(time_budget_s=1.0)
    first = measure_latency(lambda x: x @ x, a, threads=1, config=config)
    second = measure_latency(lambda x: x @ x, a, threads=1, config=config)
    # a loose bound: CI machines are shared; the benchmark reports the real spread
    assert abs(first.p50_ms - second.p50_ms) / first.p50_ms < 0.5


def test_a_fast_steady_function_is_timed_for_at_least_min_time() -> None:
    # steady from the first rounds: without min_time_s it would stop after 60 runs (~0 ms)
    config = LatencyConfig(
        warmup=0, min_repeats=30, time_budget_s=2.0, tolerance=0.5, min_time_s=0.15
    )
    started = time.perf_counter()
    stats = measure_latency(lambda x: time.sleep(2e-4), np.ones(1), threads=1, config=config)
    assert time.perf_counter() - started >= 0.15
    assert stats.stable and stats.repeats > 60 and stats.drift <= 0.5
    # capped by the budget: a budget shorter than min_time_s wins
    short = LatencyConfig(warmup=0, min_repeats=30, time_budget_s=0.05, min_time_s=10.0)
    started = time.perf_counter()
    measure_latency(lambda x: x.sum(), np.ones((4, 4)), threads=1, config=short)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_time_s": -0.1},
        {"min_repeats": 2},
        {"warmup": -1},
        {"max_repeats": 5, "min_repeats": 10},
        {"time_budget_s": 0},
        {"tolerance": 0},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LatencyConfig(**kwargs)  # type: ignore[arg-type]

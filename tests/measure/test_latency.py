"""The latency harness: repeats until stable, percentiles, and bad settings."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.measure import LatencyConfig, measure_latency
from slimkit.measure.latency import half_drift, summarize

latency_module = importlib.import_module("slimkit.measure.latency")


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


class FakeClock:
    """The harness's clock, advanced only by the timed function: timings are exact and no test
    depends on how busy the machine is."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns / 1e9

    def sleep(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)

    def work(self, ms: float) -> None:
        self.ns += round(ms * 1e6)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(latency_module, "time", fake)
    return fake


def test_a_latency_that_switches_modes_is_flagged_not_stable(clock: FakeClock) -> None:
    calls = []

    def switching(x: np.ndarray) -> None:
        calls.append(1)
        clock.work(0.5 if len(calls) <= 50 else 3.0)  # fast for 50 calls, then 6x slower

    config = LatencyConfig(
        warmup=0, min_repeats=10, time_budget_s=0.15, tolerance=0.05, min_time_s=0.1
    )
    stats = measure_latency(switching, np.zeros((1, 1)), threads=1, config=config)
    # the budget ran out while the first half was still mostly fast and the second slow
    assert not stats.stable
    assert stats.drift > 1.0
    steady = measure_latency(lambda x: clock.work(1.0), np.zeros((1, 1)), threads=1, config=config)
    assert steady.stable and steady.drift == 0.0
    assert steady.repeats * 1e-3 >= config.min_time_s  # timed for at least min_time_s


def test_a_function_measures_its_own_time(clock: FakeClock) -> None:
    config = LatencyConfig(
        warmup=2, min_repeats=10, max_repeats=200, time_budget_s=2.0, tolerance=0.05
    )
    stats = measure_latency(lambda x: clock.work(2.0), np.zeros((8, 1)), threads=1, config=config)
    assert stats.p50_ms == stats.p99_ms == 2.0
    assert stats.per_sample_ms == pytest.approx(0.25)
    assert 10 <= stats.repeats <= 200


def test_warmup_runs_are_not_timed(clock: FakeClock) -> None:
    calls = []

    def run(x: np.ndarray) -> None:
        calls.append(1)
        clock.work(50.0 if len(calls) <= 3 else 1.0)  # a slow start, as lazy initialisation

    config = LatencyConfig(warmup=3, min_repeats=5, max_repeats=20, time_budget_s=1.0)
    stats = measure_latency(run, np.zeros((1, 1)), threads=1, config=config)
    assert stats.p99_ms == 1.0
    assert len(calls) == 3 + stats.repeats


def test_budget_stops_an_unstable_function(clock: FakeClock) -> None:
    calls = []

    def slowing(x: np.ndarray) -> None:  # never settles: each call 1% slower than the last
        calls.append(1)
        clock.work(0.5 * 1.01 ** len(calls))

    config = LatencyConfig(
        warmup=0, min_repeats=5, max_repeats=10_000, time_budget_s=0.3, tolerance=0.001
    )
    stats = measure_latency(slowing, np.zeros((1, 1)), threads=1, config=config)
    assert not stats.stable and stats.repeats < 10_000
    # it stops at the first check after the budget (checks come about every 10 ms of timing)
    assert 0.3 <= clock.perf_counter() < 0.3 + 0.05


def test_repeated_medians_agree_on_a_steady_workload(clock: FakeClock) -> None:
    pattern = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]  # steady, with a little jitter
    index = iter(range(10**9))

    def steady(x: np.ndarray) -> None:
        clock.work(pattern[next(index) % len(pattern)])

    config = LatencyConfig(time_budget_s=1.0)
    first = measure_latency(steady, np.zeros((1, 1)), threads=1, config=config)
    second = measure_latency(steady, np.zeros((1, 1)), threads=1, config=config)
    assert first.stable and second.stable
    assert abs(first.p50_ms - second.p50_ms) / first.p50_ms < 0.01


def test_a_fast_steady_function_is_timed_for_at_least_min_time(clock: FakeClock) -> None:
    # steady from the first rounds: without min_time_s it would stop after 60 runs (~0 ms)
    config = LatencyConfig(
        warmup=0, min_repeats=30, time_budget_s=2.0, tolerance=0.5, min_time_s=0.15
    )
    stats = measure_latency(lambda x: clock.work(0.2), np.ones(1), threads=1, config=config)
    assert clock.perf_counter() >= 0.15
    assert stats.stable and stats.repeats > 60 and stats.drift <= 0.5
    # capped by the budget: a budget shorter than min_time_s wins
    short = LatencyConfig(warmup=0, min_repeats=30, time_budget_s=0.05, min_time_s=10.0)
    started = clock.perf_counter()
    measure_latency(lambda x: clock.work(0.2), np.ones((4, 4)), threads=1, config=short)
    assert clock.perf_counter() - started < 0.05 + 0.05


def test_a_real_function_is_timed_with_the_real_clock() -> None:
    """The harness on the real clock: only properties that hold however busy the machine is."""
    config = LatencyConfig(warmup=1, min_repeats=10, max_repeats=50, time_budget_s=0.2)
    stats = measure_latency(lambda x: time.sleep(0.001), np.zeros((2, 1)), threads=1, config=config)
    assert stats.p50_ms >= 1.0  # sleeping 1 ms takes at least 1 ms
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert 10 <= stats.repeats <= 50


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

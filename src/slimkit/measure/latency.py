"""The latency harness shared by every runtime: warm-up, repeats until stable, percentiles.

The harness times ``run(x)`` with ``time.perf_counter_ns`` after a warm-up, in chunks. It stops
once it has timed for ``min_time_s`` and the median of the first half of the timed runs and the
median of the second half agree within ``tolerance`` (relative): the latency held still over the
whole window, so a later window should give the same median. A window whose halves disagree (a
slow start, or a machine whose latency switches between modes part-way) is timed on until the
halves agree or the time budget or ``max_repeats`` ends it, and is then reported with
``stable=False`` and the gap between its half medians (``drift``): a caller sees that the
median is not to be trusted rather than a number that merely looks precise. Threads are the
runner's business (each runner is loaded with a thread count); the harness only records them.

:func:`measure_isolated` runs the same harness in a fresh child process (``multiprocessing``
spawn): one runtime, one file, one thread count per process, so runtimes with process-wide thread
pools (PyTorch, ExecuTorch) cannot disturb each other, and the child's peak resident memory
(``VmHWM``) is the memory of a process that loads and runs that model.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimkit import errors
from slimkit.errors import ConfigError, RuntimeLoadError


@dataclass(frozen=True)
class LatencyConfig:
    """How to time a model.

    Args:
        warmup: untimed runs first (caches, lazy initialisation, thread pools).
        min_repeats: timed runs before stability is first checked.
        max_repeats: hard cap on timed runs.
        time_budget_s: stop after this many seconds of timing even if not stable.
        tolerance: how far (relative) the medians of the window's two halves may differ for the
            window to count as stable.
        min_time_s: time at least this long (capped by the budget) before the median may count
            as stable: a median over a longer window is less at the mercy of one scheduler
            hiccup or a burst of another process (fast models otherwise stop after a few ms).
    """

    warmup: int = 10
    min_repeats: int = 30
    max_repeats: int = 200_000
    time_budget_s: float = 3.0
    tolerance: float = 0.01
    min_time_s: float = 0.2

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_repeats < 3 or self.max_repeats < self.min_repeats:
            raise ConfigError(
                "latency needs warmup >= 0, min_repeats >= 3 and max_repeats >= min_repeats; got "
                f"warmup={self.warmup}, min_repeats={self.min_repeats}, "
                f"max_repeats={self.max_repeats}"
            )
        if self.time_budget_s <= 0 or not 0 < self.tolerance < 1 or self.min_time_s < 0:
            raise ConfigError(
                f"latency needs time_budget_s > 0, 0 < tolerance < 1 and min_time_s >= 0; got "
                f"{self.time_budget_s}, {self.tolerance}, {self.min_time_s}"
            )


@dataclass(frozen=True)
class LatencyStats:
    """Timing of one (batch size, threads) setting, in milliseconds per batch.

    ``stable`` says whether the harness stopped because the window held still; ``drift`` is the
    relative difference between the medians of the first and second half of the timed runs
    (what ``stable`` was judged on; 0 for a window too short to split).
    """

    batch_size: int
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    stable: bool
    drift: float = 0.0

    @property
    def per_sample_ms(self) -> float:
        """Median milliseconds per sample (p50 / batch size)."""
        return self.p50_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def half_drift(times_ms: np.ndarray) -> float:
    """Relative difference between the medians of the first and second half of ``times_ms``."""
    half = times_ms.size // 2
    if half == 0:
        return 0.0
    first = float(np.median(times_ms[:half]))
    second = float(np.median(times_ms[half:]))
    return abs(second - first) / first if first > 0 else 0.0


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
        drift=half_drift(times_ms),
    )


def measure_latency(
    run: Callable[[np.ndarray], Any],
    x: np.ndarray,
    *,
    threads: int,
    config: LatencyConfig | None = None,
) -> LatencyStats:
    """Time ``run(x)`` until the median of the window's two halves agree.

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
    stable = False
    started = time.perf_counter()
    deadline = started + config.time_budget_s
    earliest = started + min(config.min_time_s, config.time_budget_s)
    next_check = config.min_repeats
    while len(times) < config.max_repeats:
        start = time.perf_counter_ns()
        run(x)
        times.append((time.perf_counter_ns() - start) / 1e6)
        if len(times) < next_check:
            continue
        # check about every 10 ms of timing (at least min_repeats runs): medians of a long
        # window are not recomputed after every microsecond-long run
        now = time.perf_counter()
        next_check = len(times) + max(
            config.min_repeats, int(0.01 / max(now - started, 1e-9) * len(times))
        )
        if now >= earliest and half_drift(np.asarray(times)) <= config.tolerance:
            stable = True
            break
        if now > deadline:
            break
    return summarize(np.asarray(times), batch_size=int(x.shape[0]), threads=threads, stable=stable)


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (``VmHWM``; else ``ru_maxrss``)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS
    return kib * 1024


def current_rss_bytes() -> int:
    """This process's resident memory now in bytes (``VmRSS``; else the peak)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss_bytes()


@dataclass(frozen=True)
class IsolatedTiming:
    """Latency and memory of one model file in one runtime, measured in its own process.

    Attributes:
        runtime: the runtime name.
        path: the model file.
        threads: the runner's thread count.
        latency: one entry per input batch, in the order given.
        repeats: ``latency`` measured again in the same process (empty unless ``rounds=2``).
        baseline_rss_bytes: resident memory after importing slimkit, before loading the runtime.
        peak_rss_bytes: the process's peak resident memory after loading and timing the model.
        load_seconds: time to load the file into the runtime.
        cpus: the CPUs the process was pinned to, read back after timing (None: not pinned).
    """

    runtime: str
    path: str
    threads: int
    latency: tuple[LatencyStats, ...]
    repeats: tuple[LatencyStats, ...]
    baseline_rss_bytes: int
    peak_rss_bytes: int
    load_seconds: float
    cpus: tuple[int, ...] | None = None

    @property
    def model_rss_bytes(self) -> int:
        """Peak memory above the baseline: what loading and running this model cost."""
        return max(0, self.peak_rss_bytes - self.baseline_rss_bytes)

    def repeat_stability(self) -> list[float]:
        """Relative difference of p50 between the two rounds, per batch (empty if one round)."""
        return [
            abs(second.p50_ms - first.p50_ms) / first.p50_ms
            for first, second in zip(self.latency, self.repeats, strict=False)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "runtime": self.runtime,
            "path": self.path,
            "threads": self.threads,
            "latency": [s.to_dict() for s in self.latency],
            "repeats": [s.to_dict() for s in self.repeats],
            "repeat_stability": self.repeat_stability(),
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "model_rss_bytes": self.model_rss_bytes,
            "load_seconds": self.load_seconds,
            "cpus": list(self.cpus) if self.cpus is not None else None,
        }


def _allowed_cpus() -> list[int]:
    if not hasattr(os, "sched_getaffinity"):
        raise ConfigError("pinning to CPUs needs os.sched_setaffinity (Linux); leave cpus unset")
    return sorted(os.sched_getaffinity(0))


def pinned_cpus(threads: int) -> tuple[int, ...]:
    """The CPUs a ``threads``-thread timing is pinned to: the last ``threads`` this process may use.

    The last rather than the first, because CPU 0 usually takes the most interrupts and
    housekeeping. With no more CPUs than threads this is every CPU (pinning then changes
    nothing but the record).

    Example:
        >>> len(pinned_cpus(1))
        1
    """
    allowed = _allowed_cpus()
    if threads < 1:
        raise ConfigError(f"threads must be at least 1; got {threads}")
    return tuple(allowed[-threads:])


def _check_cpus(cpus: Sequence[int] | None) -> tuple[int, ...] | None:
    if cpus is None:
        return None
    pinned = tuple(sorted({int(c) for c in cpus}))
    allowed = _allowed_cpus()
    outside = [c for c in pinned if c not in allowed]
    if not pinned or outside:
        raise ConfigError(
            f"cannot pin to CPUs {list(cpus)}: this process may use CPUs {allowed}; pass some of "
            "those (or none to leave the timing unpinned)"
        )
    return pinned


def _isolated_child(
    connection: Any,
    runtime: str,
    path: str,
    batches: list[np.ndarray],
    threads: int,
    config: LatencyConfig | None,
    rounds: int,
    live_model: bool,
    cpus: tuple[int, ...] | None = None,
    verified: frozenset[str] = frozenset(),
) -> None:
    """The child process: load, time every batch ``rounds`` times, report, exit.

    ``verified``: digests of the ``.pte`` files the parent verified (none is probed again).
    """
    try:
        if cpus is not None:  # before any runtime starts its threads: they inherit the mask
            os.sched_setaffinity(0, cpus)
        from slimkit.runtime import load_runtime
        from slimkit.runtime.pte_probe import mark_verified
        from slimkit.runtime.pytorch import PyTorchRunner

        mark_verified(verified)

        baseline = current_rss_bytes()
        started = time.perf_counter()
        if live_model:  # sent by the parent after the baseline, so it counts as the model's
            runner: Any = PyTorchRunner.from_model(connection.recv(), threads=threads)
        else:
            runner = load_runtime(runtime, path, threads=threads)
        load_seconds = time.perf_counter() - started
        timings = [
            [measure_latency(runner.run, x, threads=threads, config=config) for x in batches]
            for _ in range(rounds)
        ]
        # the mask as it is after timing (a runtime could have changed it), for the record
        held = tuple(sorted(os.sched_getaffinity(0))) if cpus is not None else None
        connection.send(("ok", (timings, baseline, peak_rss_bytes(), load_seconds, held)))
    except BaseException as error:  # report everything; the parent raises it
        connection.send(("error", (type(error).__name__, str(error))))
    finally:
        connection.close()


def _verify_file_here(runtime: str, path: Path) -> frozenset[str]:
    """Verify a ``.pte`` file in this process before a child loads it; the digests to pass on.

    ExecuTorch files are tried once per process in a probe process before they are loaded
    (:mod:`slimkit.runtime.pte_probe`). Done here, the probe's process is started once for all
    the children of this process, a corrupt file is refused before any child starts, and the
    probe is not counted in a child's load time or memory.
    """
    if runtime == "executorch" and path.is_file():
        from slimkit.runtime.executorch import ExecuTorchRunner

        ExecuTorchRunner.check_file(path)
    from slimkit.runtime.pte_probe import verified_digests

    return verified_digests()


def measure_isolated(
    runtime: str,
    path: str | os.PathLike[str],
    batches: Sequence[np.ndarray],
    *,
    threads: int = 1,
    config: LatencyConfig | None = None,
    rounds: int = 1,
    timeout_s: float = 600.0,
    model: Any = None,
    cpus: Sequence[int] | None = None,
) -> IsolatedTiming:
    """Time a model file (or a live PyTorch model) in a fresh process and report its peak memory.

    Args:
        runtime: a registered runtime name.
        path: the model file that runtime loads (a label when ``model`` is given).
        batches: input batches to time, each ``(N, C, H, W)`` float32 (one entry per batch size).
        threads: the runner's thread count.
        config: the latency harness settings.
        rounds: 2 times every batch twice in the same process (see ``repeat_stability``).
        timeout_s: give up (and stop the child) after this long.
        model: a PyTorch module this process built (e.g. slimkit's simulated int8 model, which
            has no file) to time with the ``pytorch`` runtime; it is sent to the child through
            the pipe (pickled: pass only models made in this process, never one from a file).
        cpus: pin the child (and every thread its runtime starts) to these CPUs
            (``os.sched_setaffinity``; Linux), so the scheduler cannot move it between cores
            between or within timing windows; see :func:`pinned_cpus`. None: not pinned.

    Returns:
        Latency per batch, the repeat round if asked, baseline and peak resident memory.

    Example:
        >>> timing = measure_isolated("onnxruntime", "m.onnx", [x1, x64])  # doctest: +SKIP
        >>> timing.latency[1].p50_ms, timing.peak_rss_bytes  # doctest: +SKIP
    """
    if rounds not in (1, 2):
        raise ConfigError(f"rounds must be 1 or 2; got {rounds!r}")
    if not batches:
        raise ConfigError("measure_isolated needs at least one input batch")
    if model is not None and runtime != "pytorch":
        raise ConfigError(f"a live model is timed with the pytorch runtime, not {runtime!r}")
    pinned = _check_cpus(cpus)
    verified = _verify_file_here(runtime, Path(path)) if model is None else frozenset()
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=model is not None)
    arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in batches]
    child = context.Process(
        target=_isolated_child,
        args=(
            sender,
            runtime,
            str(path),
            arrays,
            threads,
            config,
            rounds,
            model is not None,
            pinned,
            verified,
        ),
        daemon=True,
    )
    child.start()
    sender.close()
    try:
        if model is not None:
            receiver.send(model)
        if not receiver.poll(timeout_s):
            raise RuntimeLoadError(
                f"{runtime}: measuring {path} in a child process took over {timeout_s:.0f} s"
            )
        status, payload = receiver.recv()
    except EOFError:
        child.join(5)
        raise RuntimeLoadError(
            f"{runtime}: the child process measuring {path} died (exit code {child.exitcode})"
        ) from None
    finally:
        if child.is_alive():
            child.join(5)
        if child.is_alive():
            child.terminate()
            child.join()
        receiver.close()
    if status != "ok":
        name, message = payload
        error_type = getattr(errors, name, None)
        if isinstance(error_type, type) and issubclass(error_type, errors.SlimkitError):
            raise error_type(message)
        raise RuntimeLoadError(f"{runtime}: measuring {path} failed: {name}: {message}")
    timings, baseline, peak, load_seconds, held = payload
    return IsolatedTiming(
        runtime=runtime,
        path=str(path),
        threads=threads,
        latency=tuple(timings[0]),
        repeats=tuple(timings[1]) if rounds == 2 else (),
        baseline_rss_bytes=int(baseline),
        peak_rss_bytes=int(peak),
        load_seconds=float(load_seconds),
        cpus=held,
    )

"""A hand-made report whose fronts and derived columns are known by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from slimkit.report import Candidate, Report


def make_report(*, complete: bool = True, extra: list[Candidate] | None = None) -> Report:
    """Baseline, int8, pruned, a search trial and a failed candidate.

    By hand: latency front = baseline, int8, trial 3 (pruned is slower than the baseline and
    less accurate); size front = baseline, pruned, trial 3 (pruned is smaller and more accurate
    than int8).
    """
    candidates = [
        Candidate("baseline", source="baseline", accuracy=0.98, latency_p50_ms=2.0,
                  latency_p90_ms=2.4, file_bytes=250_000, params=61_706, macs=416_520,
                  model={"name": "lenet5", "kwargs": {}},
                  parity={"max_abs_diff": 1e-6, "mean_abs_diff": 1e-7,
                          "argmax_agreement": 1.0, "samples": 360}),
        Candidate("int8 PTQ", techniques=[{"technique": "int8_static", "version": 1,
                                           "calibration": "mse"}],
                  accuracy=0.975, latency_p50_ms=0.8, latency_p90_ms=1.0, file_bytes=70_000,
                  params=61_706, macs=416_520,
                  details={"layers": [{"name": "conv1", "bits": 8}, {"name": "fc3", "bits": 8}]}),
        Candidate("pruned 50%", techniques=[{"technique": "prune", "version": 1,
                                             "sparsity": 0.5}],
                  accuracy=0.978, latency_p50_ms=2.1, latency_p90_ms=2.6, file_bytes=60_000,
                  params=30_853, macs=208_260,
                  details={"layers": [{"name": "conv1", "sparsity": 0.5}]}),
        Candidate("trial 3", source="search", trial=3,
                  techniques=[{"technique": "prune", "version": 1, "sparsity": 0.8},
                              {"technique": "int8_static", "version": 1}],
                  accuracy=0.95, latency_p50_ms=0.3, latency_p90_ms=0.35, file_bytes=30_000,
                  params=12_000, macs=90_000),
        Candidate("lowrank r4", techniques=[{"technique": "lowrank", "version": 1, "rank": 4}],
                  error="ExportError: the exporter does not support this operator"),
    ]  # fmt: skip
    return Report(
        name="digits-demo",
        recipe={"name": "digits-demo", "data": "digits", "model": "lenet5"},
        runtime="onnxruntime",
        batch_size=1,
        threads=2,
        environment={
            "cpu": "Test CPU",
            "cpu_count": 2,
            "cpu_features": ["avx2", "fma"],
            "machine": "x86_64",
            "system": "Linux 6.1",
            "python": "3.11.2",
            "packages": {"torch": "2.6.0", "onnxruntime": "1.20.0", "executorch": None},
        },
        candidates=candidates + (extra or []),
        complete=complete,
        stages=[
            {"name": "baseline", "status": "done"},
            {"name": "techniques", "status": "done"},
            {"name": "search", "status": "done" if complete else "interrupted"},
            {"name": "export", "status": "done" if complete else "pending"},
            {"name": "report", "status": "done" if complete else "pending"},
        ],
        created_at="2025-01-01T00:00:00Z",
    )


@pytest.fixture
def report() -> Report:
    """The complete hand-made report."""
    return make_report()


@pytest.fixture
def report_factory() -> Callable[..., Report]:
    """:func:`make_report`, for tests that need a variant (incomplete, extra candidates)."""
    return make_report

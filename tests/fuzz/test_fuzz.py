"""Every fuzz target (``targets_*.py``) under Hypothesis: success, or a one-line SlimkitError;
never another exception, a hang or a crash. Counts are small here (``Target.ci_examples``; set
``SLIMKIT_FUZZ_EXAMPLES`` to run more); ``benchmarks/fuzz.py`` runs thousands per target.

The runs are deterministic (``derandomize=True``, no example database): the same inputs every
time. A failing input is written under the test's tmp folder, and named in the failure, so it can
be replayed: ``TARGETS[name].check(path.read_bytes(), tmp)``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, dumps
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from targets import TARGETS

NAMES = sorted(TARGETS)
Seeds = Callable[[str], list[Any]]


def _skip_unavailable(name: str) -> None:
    reason = TARGETS[name].available()
    if reason is not None:
        pytest.skip(f"fuzz target {name}: {reason}")


def _save(folder: Path, name: str, data: Any) -> Path:
    blob = dumps(data)
    path = folder / f"{name}-{hashlib.sha256(blob).hexdigest()[:12]}.json"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name: str, fuzz_seeds: Seeds, fuzz_worker: Worker) -> None:
    """The seeds are valid inputs: the parser accepts every one (else the fuzz proves little)."""
    _skip_unavailable(name)
    seeds = fuzz_seeds(name)
    assert seeds, f"fuzz target {name} has no seeds"
    for index, data in enumerate(seeds):
        outcome = fuzz_worker.run(name, data)
        assert outcome.kind == "ok", f"{name} seed {index}: {outcome.kind} {outcome.detail}"


@pytest.mark.parametrize("name", NAMES)
def test_regressions(name: str, fuzz_seeds: Seeds, fuzz_worker: Worker, tmp_path: Path) -> None:
    """The inputs that once failed (``Target.regressions``) are handled."""
    _skip_unavailable(name)
    for data in TARGETS[name].regressions(fuzz_seeds(name)):
        outcome = fuzz_worker.run(name, data)
        if not outcome.passed:
            saved = _save(tmp_path, name, data)
            raise AssertionError(f"{name}: {outcome.kind}: {outcome.detail} (input: {saved})")


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name: str, fuzz_seeds: Seeds, fuzz_worker: Worker, tmp_path: Path) -> None:
    _skip_unavailable(name)
    target = TARGETS[name]
    seeds = fuzz_seeds(name)
    examples = int(os.environ.get("SLIMKIT_FUZZ_EXAMPLES", target.ci_examples))

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate),  # no shrinking: a crash restarts the child
        suppress_health_check=list(HealthCheck),
    )
    @given(st.randoms(use_true_random=False))
    def run(rng: Any) -> None:
        data = target.generate(rng, seeds)
        outcome = fuzz_worker.run(name, data)
        if not outcome.passed:
            saved = _save(tmp_path, name, data)
            raise AssertionError(f"{name}: {outcome.kind}: {outcome.detail} (input: {saved})")

    run()


def test_inputs_cross_the_pipe_and_the_disk_as_json_not_pickles() -> None:
    from harness import loads

    value = {
        "bytes": b"\x00\xff IDX",
        1: (2.5, float("inf"), None, True),
        "nested": [{"a": b""}, ("x",)],
    }
    blob = dumps(value)
    assert blob.startswith(b"{") and loads(blob) == value
    nan = loads(dumps(float("nan")))
    assert nan != nan  # NaN survives as NaN
    with pytest.raises(TypeError, match="cannot hold a set"):
        dumps({1, 2})

"""Fixtures of the fuzz tests: the seeds of each target (built once per session) and one
persistent child process that runs every check (see ``harness.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import Worker  # noqa: E402
from targets import TARGETS  # noqa: E402

Seeds = Callable[[str], list[Any]]


@pytest.fixture(scope="session")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    """``fuzz_seeds(name)``: the seed inputs of target ``name``, built on first use."""
    built: dict[str, list[Any]] = {}
    folder = tmp_path_factory.mktemp("fuzz-seeds")

    def seeds(name: str) -> list[Any]:
        if name not in built:
            built[name] = TARGETS[name].seeds(folder)
        return built[name]

    return seeds


@pytest.fixture(scope="session")
def fuzz_worker(fuzz_seeds: Seeds, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """The child process that runs the checks; a generous timeout (a hang is minutes, not a
    slow machine)."""
    log = tmp_path_factory.mktemp("fuzz-log") / "child.log"
    with Worker(lambda name: fuzz_seeds(name)[0], timeout=300.0, log=log) as worker:
        yield worker

"""Shared pieces of the search tests: a tiny space, a throwaway PostgreSQL, budget checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.search.local_postgres import postgres_bin, throwaway_postgres

TINY_SPACE: dict[str, Any] = {
    "model": {"mlp": {"hidden": {"choice": [[16], [48]]}}, "lenet5": {}},
    "train": {"epochs": 2, "lr": {"float": [1e-3, 1e-2], "log": True}},
    "techniques": [
        {
            "slot": "quantize",
            "choices": {"none": {}, "static_int8": {"calibration": {"choice": ["minmax", "mse"]}}},
        }
    ],
}


@pytest.fixture
def tiny_space() -> dict[str, Any]:
    return {k: v for k, v in TINY_SPACE.items()}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on a loopback port (skipped when PostgreSQL is absent)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with throwaway_postgres() as url:
        yield url


def _assert_exact_budget(study: optuna.Study, trials: int) -> None:
    all_trials = study.get_trials(deepcopy=True)
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(finished) == trials
    assert not [t for t in all_trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.fixture
def exact_budget() -> Callable[[optuna.Study, int], None]:
    """Check: exactly N finished trials, unique numbers, nothing left running or waiting."""
    return _assert_exact_budget

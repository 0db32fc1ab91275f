"""Shared pieces of the search tests: a tiny space, a throwaway PostgreSQL, budget checks.

As root, ``initdb`` and ``pg_ctl`` must run as the ``postgres`` user (``runuser``), in a folder
that user owns; as any other user they run directly.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

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


def postgres_bin() -> str | None:
    """The folder with initdb/pg_ctl (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster, create database ``slimkit``, yield its URL, stop and delete it."""
    bindir = postgres_bin()
    assert bindir is not None
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = tempfile.mkdtemp(prefix="slimkit-pg-")
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
    data, port = os.path.join(folder, "data"), _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, cwd=folder)

    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{folder}/log", "-w", "start")
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "slimkit")
        yield f"postgresql://postgres@127.0.0.1:{port}/slimkit"
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            cwd=folder,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on a loopback port (skipped when PostgreSQL is absent)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with throwaway_cluster() as url:
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

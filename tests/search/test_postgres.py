"""Many workers on a real PostgreSQL: one killed with SIGKILL mid-trial, the budget still exact;
the server restarted mid-search (issue 18, item 13), the workers carry on.

Real trials: ``slimkit worker`` processes train, quantize, export and time tiny models on digits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from slimkit.search import SearchSettings, open_search
from slimkit.search.local_postgres import LocalPostgres, postgres_bin, throwaway_server
from slimkit.search.study import (
    ATTR_RETRIED,
    ATTR_RETRY_OF,
    ATTR_WORKER,
    StorageError,
    create_or_load_study,
    open_storage,
)

SLOW_WORKER = Path(__file__).with_name("slow_worker.py")

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_server() -> Iterator[LocalPostgres]:
    """A throwaway PostgreSQL that the test may stop and start (skipped when not installed)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with throwaway_server() as server:
        yield server


def _worker(url: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slimkit",
            "worker",
            "--study",
            "mw",
            "--storage",
            url,
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _running_of(study: optuna.Study, pid: int, timeout: float = 240.0) -> FrozenTrial:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
            if (t.user_attrs.get(ATTR_WORKER) or {}).get("pid") == pid:
                return t
        time.sleep(0.1)
    raise AssertionError("the worker never started a trial")


def test_two_workers_one_killed_exact_budget(
    tmp_path: Path, tiny_space: dict, postgres_url: str, exact_budget: Callable
) -> None:
    trials, url = 5, postgres_url
    if True:
        settings = SearchSettings(
            space=tiny_space,
            trials=trials,
            sampler="random",
            pruner="none",
            out_dir=str(tmp_path),
            study="mw",
            target={"latency_budget_s": 0.2},
        )
        study = open_search(settings, url)
        victim, survivor = _worker(url, tmp_path / "a"), _worker(url, tmp_path / "b")
        deadline = time.time() + 240
        while time.time() < deadline:  # kill the victim while it runs a trial
            running = [
                t
                for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,))
                if (t.user_attrs.get(ATTR_WORKER) or {}).get("pid") == victim.pid
            ]
            if running:
                time.sleep(0.5)  # well inside the trial (training takes seconds)
                break
            time.sleep(0.1)
        assert running, "the victim never started a trial"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        code = survivor.wait(timeout=400)
        assert code == 0, survivor.stderr.read().decode() if survivor.stderr else ""
        study = optuna.load_study(study_name="mw", storage=url)
        exact_budget(study, trials)
        killed = study.trials[running[0].number]
        assert killed.state == TrialState.FAIL
        retried = [t for t in study.trials if t.user_attrs.get(ATTR_RETRY_OF) == killed.number]
        assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
        assert retried[0].params == killed.params
        # issue 18, item 1: two workers seeded alike used to run the same trials in pairs
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        assert len({json.dumps(t.params, sort_keys=True) for t in done}) == len(done)


def test_a_worker_survives_a_database_restart(
    tmp_path: Path, postgres_server: LocalPostgres, exact_budget: Callable
) -> None:
    url = postgres_server.url
    study = create_or_load_study("s", open_storage(url, None), ["maximize"], {"space": 1})
    worker = subprocess.Popen(
        [sys.executable, str(SLOW_WORKER), url, "s", "4", "3.0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = _running_of(study, worker.pid)
    postgres_server.stop("immediate")  # like a crash: every connection breaks
    time.sleep(5)  # the worker's trial goes on; its storage calls wait
    postgres_server.start()
    assert worker.wait(timeout=300) == 0, worker.stderr.read() if worker.stderr else ""
    exact_budget(study, 4)
    assert not study.get_trials(states=(TrialState.FAIL,))  # nothing lost, nothing retried
    assert study.trials[running.number].state == TrialState.COMPLETE


def test_a_long_outage_ends_the_worker_with_one_line(
    tmp_path: Path, tiny_space: dict, postgres_server: LocalPostgres, exact_budget: Callable
) -> None:
    url = postgres_server.url.replace("postgres@", "postgres:s3cret@")  # trust: any password
    settings = SearchSettings(
        space={**tiny_space, "train": {"epochs": 40, "lr": 0.01}},
        trials=2,
        sampler="random",
        pruner="none",
        out_dir=str(tmp_path),
        study="mw",
        target={"latency_budget_s": 0.1},
    )
    study = open_search(settings, url)
    worker = _worker(url, tmp_path / "a", "--storage-wait", "3")
    running = _running_of(study, worker.pid)
    postgres_server.stop("fast")
    code = worker.wait(timeout=300)
    stderr = worker.stderr.read().decode() if worker.stderr else ""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, stderr
    assert "unreachable for 3 s" in lines[-1] and "Traceback" not in stderr
    assert "s3cret" not in stderr
    postgres_server.start()
    again = _worker(url, tmp_path / "a")
    assert again.wait(timeout=400) == 0, again.stderr.read() if again.stderr else ""
    study = optuna.load_study(study_name="mw", storage=url)
    exact_budget(study, 2)
    lost = study.trials[running.number]  # the trial of the worker that gave up is retried
    assert lost.state == TrialState.FAIL and lost.user_attrs[ATTR_RETRIED]


def test_a_worker_started_during_an_outage_waits_for_the_database(
    postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the fault soak: a worker whose first connection met a restarting server exited 1
    at once; now the first connection waits like every later one (--storage-wait)."""
    import threading

    postgres_server.stop("immediate")
    with pytest.raises(StorageError, match="cannot open the study storage"):
        open_storage(postgres_server.url, None, wait_s=0)  # nothing to wait: one line at once
    restart = threading.Timer(3.0, postgres_server.start)
    restart.start()
    try:
        storage = open_storage(postgres_server.url, None, wait_s=600)  # returns once it is up
    finally:
        restart.join()
    assert optuna.get_all_study_names(storage) is not None

    # a host that does not resolve never comes up: no waiting for it
    def no_waiting(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s for a URL that cannot work")

    monkeypatch.setattr(time, "sleep", no_waiting)
    with pytest.raises(StorageError, match=r"nonexistent\.invalid"):
        open_storage("postgresql://postgres@nonexistent.invalid/slimkit", None, wait_s=600)

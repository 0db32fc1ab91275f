"""Studies: exactly N finished trials, stale trials retried once, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.errors import ConfigError
from slimkit.search.study import (
    ATTR_HEARTBEAT,
    ATTR_RETRIED,
    ATTR_RETRY_OF,
    ATTR_WORKER,
    StorageError,
    WorkerLimits,
    create_or_load_study,
    is_stale,
    open_storage,
    run_worker,
    sweep_stale,
)

SLOW_WORKER = Path(__file__).with_name("slow_worker.py")


def _journal_study(tmp_path: Path, name: str = "s") -> tuple[str, optuna.Study]:
    url = f"journal:{tmp_path / 'study.journal'}"
    study = create_or_load_study(name, open_storage(url, None), ["maximize"], {"space": 1})
    return url, study


def _start_worker(url: str, name: str, trials: int, sleep_s: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SLOW_WORKER), url, name, str(trials), str(sleep_s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_running(study: optuna.Study, pid: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
            if (t.user_attrs.get(ATTR_WORKER) or {}).get("pid") == pid:
                return
        time.sleep(0.05)
    raise AssertionError("the worker never started a trial")


def test_worker_finishes_exactly_the_budget(tmp_path: Path, exact_budget: Callable) -> None:
    _, study = _journal_study(tmp_path)

    def run_trial(trial: optuna.Trial) -> list[float]:
        return [trial.suggest_float("x", 0, 1)]

    assert run_worker(study, run_trial, WorkerLimits(trials=5)) == 5
    assert run_worker(study, run_trial, WorkerLimits(trials=5)) == 0  # a rerun adds nothing
    exact_budget(study, 5)


def test_failing_trials_are_recorded_and_stop_the_search(tmp_path: Path) -> None:
    _, study = _journal_study(tmp_path)

    def run_trial(trial: optuna.Trial) -> list[float]:
        raise ValueError("bad combination")

    with pytest.raises(Exception, match="trials failed"):
        run_worker(study, run_trial, WorkerLimits(trials=2))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 3 and failed[0].user_attrs["slimkit.error"].startswith("ValueError")


def test_stale_trial_is_failed_once_and_retried(tmp_path: Path) -> None:
    _, study = _journal_study(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.set_user_attr("unused", 0)
    study._storage.set_trial_user_attr(
        trial._trial_id, ATTR_WORKER, {"host": socket.gethostname(), "pid": dead.pid}
    )
    assert sweep_stale(study, grace_s=3600) == [trial.number]
    assert sweep_stale(study, grace_s=3600) == []  # swept once, queued once
    frozen = study.get_trials()
    assert frozen[0].state == TrialState.FAIL and frozen[0].user_attrs[ATTR_RETRIED]
    waiting = [t for t in frozen if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].user_attrs[ATTR_RETRY_OF] == trial.number
    retry = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert retry.number == waiting[0].number
    assert retry.params == frozen[0].params


def test_heartbeat_age_decides_for_other_hosts(tmp_path: Path) -> None:
    _, study = _journal_study(tmp_path)
    trial = study.ask()
    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, ATTR_WORKER, {"host": "elsewhere", "pid": 1})
    storage.set_trial_user_attr(trial._trial_id, ATTR_HEARTBEAT, time.time() - 100)
    frozen = study.get_trials()[0]
    assert is_stale(frozen, grace_s=60)
    assert not is_stale(frozen, grace_s=600)


def test_resume_after_sigkill_on_the_journal(tmp_path: Path, exact_budget: Callable) -> None:
    url, study = _journal_study(tmp_path)
    worker = _start_worker(url, "s", 4, 1.0)
    _wait_for_running(study, worker.pid)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed = study.get_trials(deepcopy=True, states=(TrialState.RUNNING,))
    assert len(killed) == 1
    rerun = _start_worker(url, "s", 4, 0.05)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read() if rerun.stderr else ""
    exact_budget(study, 4)
    trials = study.get_trials(deepcopy=True)
    assert trials[killed[0].number].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get(ATTR_RETRY_OF) == killed[0].number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE


def test_changed_settings_are_refused_and_trials_kept(tmp_path: Path) -> None:
    url, study = _journal_study(tmp_path)
    run_worker(study, lambda t: [t.suggest_float("x", 0, 1)], WorkerLimits(trials=2))
    changed = {"space_fingerprint": "other"}
    with pytest.raises(ConfigError, match=r"different space_fingerprint.*2 finished trials"):
        create_or_load_study("s", open_storage(url, None), ["maximize"], changed)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_unreachable_storage_is_one_line() -> None:
    with pytest.raises(StorageError, match=r"cannot open the study storage postgresql://\*\*\*@"):
        open_storage("postgresql://user:secret@127.0.0.1:1/nowhere", None)

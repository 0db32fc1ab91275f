"""Studies: exactly N finished trials, stale trials retried once, resume after SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.errors import ConfigError
from slimkit.search.study import (
    ATTR_ERROR,
    ATTR_HEARTBEAT,
    ATTR_RETRIED,
    ATTR_RETRY_OF,
    ATTR_WORKER,
    StorageError,
    WorkerLimits,
    count_states,
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
        open_storage("postgresql://user:secret@127.0.0.1:1/nowhere", None, wait_s=0)


def test_no_piece_of_a_password_leaks_from_a_url_that_parses_wrong() -> None:
    with pytest.raises(StorageError) as raised:  # the driver saw host 'ss'
        open_storage("postgresql://user:p@ss/w#rd@127.0.0.1:1/nowhere", None, wait_s=0)
    message = str(raised.value)
    assert "'ss'" not in message and "w#rd" not in message and "percent-encode" in message


def test_ctrl_c_is_retried_and_not_counted_as_a_failure(
    tmp_path: Path, exact_budget: Callable
) -> None:
    """Issue 18, item 2: three Ctrl-C's made the folder unresumable (3 failed > budget 2)."""
    url, study = _journal_study(tmp_path)
    for _ in range(3):
        worker = _start_worker(url, "s", 2, 60.0)
        _wait_for_running(study, worker.pid)
        os.kill(worker.pid, signal.SIGINT)
        assert worker.wait(timeout=60) == 130
        stderr = worker.stderr.read().decode() if worker.stderr else ""
        assert "Traceback" not in stderr, stderr
    # each interrupted trial is failed and marked for a retry (or, when the Ctrl-C came while
    # the trial was being created, left RUNNING for the next run's sweep): none counts
    interrupted = study.get_trials(deepcopy=True, states=(TrialState.FAIL, TrialState.RUNNING))
    assert len(interrupted) == 3 and count_states(study)["failed"] == 0
    rerun = _start_worker(url, "s", 2, 0.05)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read() if rerun.stderr else ""
    exact_budget(study, 2)
    failed = study.get_trials(deepcopy=True, states=(TrialState.FAIL,))
    assert {t.number for t in failed} == {t.number for t in interrupted}
    assert all(t.user_attrs[ATTR_RETRIED] for t in failed)
    assert any(t.user_attrs.get(ATTR_ERROR) == "interrupted" for t in failed)


def test_a_full_disk_stops_the_worker_and_the_trial_is_retried(
    tmp_path: Path, exact_budget: Callable
) -> None:
    _, study = _journal_study(tmp_path)
    calls = []

    def full_disk(trial: optuna.Trial) -> list[float]:
        calls.append(trial.suggest_float("x", 0, 1))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return [calls[-1]]

    with pytest.raises(OSError, match=r"cannot be written .*No space left on device.*retried"):
        run_worker(study, full_disk, WorkerLimits(trials=3))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs[ATTR_RETRIED]
    assert count_states(study)["failed"] == 0
    run_worker(study, lambda t: [t.suggest_float("x", 0, 1)], WorkerLimits(trials=3))
    exact_budget(study, 3)
    retry = [t for t in study.get_trials() if t.user_attrs.get(ATTR_RETRY_OF) == failed[0].number]
    assert len(retry) == 1 and retry[0].params == {"x": calls[1]}


@pytest.mark.parametrize("library", ["wraps", "swallows"])
def test_an_interrupt_a_library_mangles_is_still_an_interrupt(tmp_path: Path, library: str) -> None:
    """torch's exporters wrap a KeyboardInterrupt in their own error; a C extension importing at
    that moment can lose it and fail later on a half-imported module. Neither may count as the
    candidate's failure (after three, a folder could never resume)."""
    _, study = _journal_study(tmp_path)

    def interrupted(trial: optuna.Trial) -> list[float]:
        trial.suggest_float("x", 0, 1)
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered here
            time.sleep(1)
        except KeyboardInterrupt as interrupt:
            if library == "wraps":
                raise RuntimeError("export failed") from interrupt
        raise AttributeError("partially initialized module 'numpy.random'")

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, interrupted, WorkerLimits(trials=2))
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL and first.user_attrs[ATTR_RETRIED]
    assert count_states(study)["failed"] == 0


def test_a_failure_of_the_candidate_itself_is_kept(tmp_path: Path) -> None:
    _, study = _journal_study(tmp_path)

    def bad(trial: optuna.Trial) -> list[float]:
        if trial.number == 0:
            raise ValueError("this model cannot be quantized")
        return [trial.suggest_float("x", 0, 1)]

    run_worker(study, bad, WorkerLimits(trials=2), workdir=tmp_path)  # the folder is writable
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL and ATTR_RETRIED not in first.user_attrs
    assert count_states(study)["failed"] == 1


def test_heartbeats_are_not_judged_right_after_a_database_outage(tmp_path: Path) -> None:
    _, study = _journal_study(tmp_path)
    trial = study.ask()
    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, ATTR_WORKER, {"host": "elsewhere", "pid": 1})
    storage.set_trial_user_attr(trial._trial_id, ATTR_HEARTBEAT, time.time() - 100)
    storage.last_outage = time.time()  # what the reconnecting storage records
    assert sweep_stale(study, grace_s=60) == []  # its heartbeats could not get through either
    storage.last_outage = time.time() - 61
    assert sweep_stale(study, grace_s=60) == [trial.number]


def test_a_twin_running_below_is_waited_for_and_reused(tmp_path: Path) -> None:
    from slimkit.search.study import find_twin

    _, study = _journal_study(tmp_path)
    storage = study._storage
    here = {"host": socket.gethostname(), "pid": os.getpid()}
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        storage.set_trial_user_attr(trial._trial_id, ATTR_WORKER, here)

    def key_of(t: optuna.trial.FrozenTrial) -> str | None:
        return t.user_attrs.get("key")

    storage.set_trial_user_attr(second._trial_id, "key", "a")
    finisher = threading.Timer(0.5, lambda: study.tell(first, [1.0]))
    storage.set_trial_user_attr(first._trial_id, "key", "a")
    finisher.start()
    # the lower trial evaluates; the higher one waits for it, then reuses its result
    assert find_twin(study, first.number, "a", key_of, grace_s=60, poll_s=0.05) is None
    twin = find_twin(study, second.number, "a", key_of, grace_s=60, poll_s=0.05)
    assert twin is not None and twin.number == first.number and twin.values == [1.0]
    third = study.ask()
    storage.set_trial_user_attr(third._trial_id, "key", "b")
    assert find_twin(study, third.number, "b", key_of, grace_s=60, poll_s=0.05) is None

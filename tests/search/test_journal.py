"""The journal file: a torn record (disk full, a writer killed mid-write) is never fatal.

Issue 18, item 6: a disk full while a record was written left a torn last line; the next run
appended onto it, and from then on every ``search run``/``search show`` failed with
``JSONDecodeError``. The file size limit (``RLIMIT_FSIZE``) makes the same partial write happen
for real, without root or a full disk.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.search.study import WorkerLimits, create_or_load_study, open_storage, run_worker

TORN = b'{"op_code":8,"worker_id":"w-1","trial_id":2,"user_attr":{"slimkit.metrics":{"acc'


def _study_with_trials(path: Path, trials: int) -> optuna.Study:
    study = create_or_load_study("s", open_storage(f"journal:{path}", None), ["maximize"], {})
    run_worker(study, lambda t: [t.suggest_float("x", 0, 1)], WorkerLimits(trials=trials))
    return study


def _values(path: Path) -> list[tuple[int, list[float] | None]]:
    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{path}", None))
    return [(t.number, t.values) for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_torn_last_record_is_dropped_and_the_search_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, exact_budget: Callable
) -> None:
    path = tmp_path / "study.journal"
    _study_with_trials(path, 3)
    complete, before = _values(path), path.read_bytes()
    with path.open("ab") as f:  # what a full disk left behind
        f.write(TORN)
    with caplog.at_level(logging.WARNING, logger="slimkit.search.journal"):
        study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{path}", None))
        run_worker(study, lambda t: [t.suggest_float("x", 0, 1)], WorkerLimits(trials=5))
    assert _values(path)[:3] == complete  # read afresh: every line decodes, none was lost
    exact_budget(optuna.load_study(study_name="s", storage=open_storage(None, tmp_path)), 5)
    assert path.read_bytes().startswith(before)  # the torn record is gone
    assert "torn" in caplog.text and "'set trial attribute' (trial id 2)" in caplog.text


def test_a_record_appended_onto_a_torn_one_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    _study_with_trials(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    # the damage the old code made: a torn record, then the next record written onto its line
    damaged = b"".join(lines[:-1]) + TORN + lines[-1]
    path.write_bytes(damaged)
    assert len(_values(path)) == 2
    assert path.read_bytes() == b"".join(lines)


SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    import optuna
    from slimkit.search.study import open_storage
    path = sys.argv[1]
    study = optuna.load_study(study_name="s", storage=open_storage("journal:" + path, None))
    trial = study.ask()
    limit = os.path.getsize(path) + 40  # the next record gets 40 bytes, then the disk is "full"
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        study.set_user_attr("big", "x" * 500)
    except OSError as error:
        print("write failed:", error.errno)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space freed
    study.tell(trial, [0.5])  # the next write of the same process
    """
)


def test_a_write_that_fails_part_way_leaves_no_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    _study_with_trials(path, 2)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "write failed: 27" in result.stdout  # EFBIG: a real partial write happened
    assert path.read_bytes().endswith(b"\n")
    values = _values(path)  # a fresh reader decodes every line
    assert [number for number, _ in values] == [0, 1, 2] and values[2][1] == [0.5]


def test_an_interrupted_wait_leaves_the_holders_lock_alone(tmp_path: Path) -> None:
    from slimkit.search.journal import JournalLock

    path = tmp_path / "study.journal"
    lock_file = tmp_path / "study.journal.lock"
    lock_file.touch()  # held by another process

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            JournalLock(str(path), grace_period=3600).acquire()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert lock_file.exists()  # Optuna's lock removed it: the holder's release then failed

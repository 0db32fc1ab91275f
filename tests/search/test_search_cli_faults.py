"""``slimkit search run`` under faults, from the reproducers of issue 18 (items 1, 2, 6, 10).

Each test drives the installed ``slimkit`` command on the real digits data with a tiny space.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from slimkit.search.study import ATTR_RETRIED, ATTR_WORKER, open_storage

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = {
    "data": "digits",
    "objectives": ["accuracy", "size"],
    "sampler": "random",
    "pruner": "none",
    "target": {"latency_budget_s": 0.1},
    "space": {
        "model": {"mlp": {"hidden": {"choice": [[16], [32]]}}},
        "train": {"epochs": 1, "lr": {"float": [1e-3, 1e-2], "log": True}},
    },
}


def _command() -> list[str]:
    found = shutil.which("slimkit")
    return [found] if found else [sys.executable, "-m", "slimkit"]


def _slimkit(*args: str, cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=600,
        **kwargs,
    )


def _spec(tmp_path: Path, **changes: Any) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**SPEC, **changes}))


def _study(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="search", storage=open_storage(None, folder))


def _plans(study: optuna.Study) -> list[str]:
    done = study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,))
    return [json.dumps(t.params, sort_keys=True) for t in done]


def test_a_rerun_with_more_trials_draws_new_configurations(tmp_path: Path) -> None:
    """Item 1: ``--trials 2`` then ``--trials 4`` on one folder repeated trials 0 and 1."""
    _spec(tmp_path)
    for trials in ("2", "4"):
        result = _slimkit(
            "search", "run", "s.yaml", "--out", "run", "--trials", trials, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    plans = _plans(_study(tmp_path / "run"))
    assert len(plans) == 4 and len(set(plans)) == 4


def test_torn_journal_is_repaired_and_the_search_resumes(tmp_path: Path) -> None:
    """Item 6: a torn record (disk full mid-write) made show and run fail for ever."""
    _spec(tmp_path, trials=2)
    assert _slimkit("search", "run", "s.yaml", "--out", "run", cwd=tmp_path).returncode == 0
    journal = tmp_path / "run" / "study.journal"
    kept = [(t.number, t.values) for t in _study(tmp_path / "run").trials]
    with journal.open("ab") as f:
        f.write(b'{"op_code":4,"worker_id":"x","study_id":0,"datetime_sta')
    shown = _slimkit("search", "show", "run", "--all", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rerun = _slimkit("search", "run", "s.yaml", "--out", "run", "--trials", "3", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "torn" in shown.stderr and "'create trial'" in shown.stderr  # what was lost, named
    study = _study(tmp_path / "run")
    assert [(t.number, t.values) for t in study.trials][:2] == kept
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert _slimkit("search", "show", "run", cwd=tmp_path).returncode == 0


def _wait_for_two_running(folder: Path, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (folder / "study.journal").is_file():
            running = _study(folder).get_trials(deepcopy=True, states=(TrialState.RUNNING,))
            if len({(t.user_attrs.get(ATTR_WORKER) or {}).get("pid") for t in running}) >= 2:
                return
        time.sleep(0.2)
    raise AssertionError("the two workers never ran trials side by side")


def test_ctrl_c_three_times_then_the_search_finishes(tmp_path: Path) -> None:
    """Item 2: each Ctrl-C failed the running trials (and printed the workers' tracebacks);
    after three the folder could never resume."""
    _spec(tmp_path, trials=2, space={**SPEC["space"], "train": {"epochs": 30, "lr": 0.01}})
    for _ in range(3):
        process = subprocess.Popen(
            [*_command(), "search", "run", "s.yaml", "--out", "run", "--workers", "2"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches the whole process group
        )
        _wait_for_two_running(tmp_path / "run")
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 130
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    finished = _slimkit("search", "run", "s.yaml", "--out", "run", "--workers", "2", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    study = _study(tmp_path / "run")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) >= 3 and all(t.user_attrs.get(ATTR_RETRIED) for t in failed)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sampler", "bogus"], "'bogus' is not one of nsga2, tpe, random"),
        (["--trials", "0"], "trials: expected an int"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--storage", "postgresql://u:pw@host:notaport/db"], "is not a valid database URL"),
        (["--storage-wait", "-1"], "--storage-wait"),
    ],
)
def test_search_settings_are_checked_before_any_work(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    """Item 10: ``sampler: bogus`` failed only after the baseline was trained (46 s)."""
    _spec(tmp_path, trials=2)
    result = _slimkit("search", "run", "s.yaml", "--out", "run", *extra, cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "pw@" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing loaded, trained or written


def test_worker_settings_are_checked_before_any_work(tmp_path: Path) -> None:
    result = _slimkit(
        "worker", "--study", "s", "--storage", "not-a-url", "--out", "w", cwd=tmp_path
    )
    assert result.returncode == 1 and "is not a storage URL" in result.stderr, result.stderr
    assert not (tmp_path / "w").exists()

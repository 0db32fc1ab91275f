"""Many workers on a real PostgreSQL: one killed with SIGKILL mid-trial, the budget still exact.

Real trials: ``slimkit worker`` processes train, quantize, export and time tiny models on digits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.search import SearchSettings, open_search
from slimkit.search.study import ATTR_RETRY_OF, ATTR_WORKER

pytestmark = pytest.mark.slow


def _worker(url: str, out: Path) -> subprocess.Popen[bytes]:
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


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

"""``slimkit search run/show``: a real search from a YAML file, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from slimkit.search.study import open_storage

pytestmark = pytest.mark.slow


def _slimkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slimkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=300,
    )


def test_search_run_show_and_rerun(tmp_path: Path, tiny_space: dict) -> None:
    spec = {
        "data": "digits",
        "objectives": ["accuracy", "size"],
        "constraints": ["size <= 60KB"],
        "trials": 3,
        "sampler": "tpe",
        "target": {"latency_budget_s": 0.2},
        "space": tiny_space,
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    first = _slimkit("search", "run", "s.yaml", "--out", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "front" in first.stdout
    study = optuna.load_study(study_name="search", storage=open_storage(None, tmp_path / "run"))
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) + len(study.get_trials(states=(optuna.trial.TrialState.PRUNED,))) == 3
    for trial in done:  # every trial keeps its full record
        metrics = trial.user_attrs["slimkit.metrics"]
        assert trial.values == [metrics["accuracy"], metrics["size"]]
        assert trial.user_attrs["slimkit.feasible"] == (metrics["size"] <= 60 * 1024)
        candidate = trial.user_attrs["slimkit.candidate"]
        assert Path(candidate["artifact"]).is_file()
        assert candidate["record"]["environment"]["cpu_count"] >= 1
    shown = _slimkit("search", "show", "run", "--all", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("complete") + shown.stdout.count("pruned") >= 3
    again = _slimkit("search", "run", "s.yaml", "--out", "run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(study.get_trials()) == len(
        optuna.load_study(
            study_name="search", storage=open_storage(None, tmp_path / "run")
        ).get_trials()
    )  # a finished search runs nothing more
    spec["space"] = {**tiny_space, "train": {"epochs": 3}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    changed = _slimkit("search", "run", "s.yaml", "--out", "run", cwd=tmp_path)
    assert changed.returncode == 1
    assert "different space_fingerprint" in changed.stderr
    assert "Traceback" not in changed.stderr


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        ({"space": {"model": {"nope": {}}}}, [], "unknown model 'nope'"),
        ({"space": {}, "trails": 3}, [], "trails: unknown key"),
        (
            {"space": {}},
            ["--storage", "postgresql://u:pw@127.0.0.1:1/x", "--storage-wait", "0"],
            "***@127.0.0.1:1",
        ),
    ],
)
def test_bad_search_input_is_one_line(
    tmp_path: Path, spec: dict, extra: list[str], message: str
) -> None:
    (tmp_path / "s.yaml").write_text(json.dumps(spec))
    result = _slimkit("search", "run", "s.yaml", *extra, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr and "pw@" not in result.stderr

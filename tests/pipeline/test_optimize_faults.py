"""``optimize`` under faults of the machine and mistakes of the input (issue #18's reproducers):
a disk that fills up, a kill during the baseline's training, a checkpoint for other data, the
permissions of what it writes, the password of a storage URL."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

import slimkit.search.evaluate
from slimkit.errors import ConfigError
from slimkit.models import create_model
from slimkit.pipeline import optimize
from slimkit.pipeline.optimize import file_stem
from slimkit.report import load_report
from slimkit.search.local_postgres import postgres_bin, throwaway_postgres
from slimkit.train import save_checkpoint

pytestmark = pytest.mark.slow

BASE = {
    "data": "digits",
    "model": {"name": "lenet5", "args": {"channels": [4, 8]}},
    "train": {"epochs": 2},
    "target": {"latency_budget_s": 0.1},
}


def test_a_candidate_stopped_by_a_full_disk_runs_again_on_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = {
        **BASE,
        "name": "disk",
        "candidates": [
            {"name": "dynamic", "techniques": [{"technique": "dynamic_int8"}]},
            {"name": "int8", "techniques": [{"technique": "static_int8"}]},
        ],
    }
    real_export = slimkit.search.evaluate.export

    def full_disk(model: Any, path: Path, **kwargs: Any) -> Any:
        if file_stem("int8") in str(path):
            raise OSError(28, "No space left on device", str(path))
        return real_export(model, path, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(slimkit.search.evaluate, "export", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        optimize(recipe, out=out)
    assert not (out / "candidates" / f"{file_stem('int8')}.json").exists()
    stopped = load_report(out)
    assert not stopped.complete and any("stopped by the machine" in n for n in stopped.notes)
    monkeypatch.setattr(slimkit.search.evaluate, "export", real_export)
    report = optimize(recipe, out=out)  # space freed: the candidate runs, not "failed"
    assert report.complete and report.candidate("int8").error is None
    assert report.candidate("int8").measured


def test_a_failure_recorded_for_a_full_disk_is_retried(tmp_path: Path) -> None:
    recipe = {
        **BASE,
        "name": "disk2",
        "candidates": [{"name": "dynamic", "techniques": [{"technique": "dynamic_int8"}]}],
    }
    out = tmp_path / "run"
    optimize(recipe, out=out)
    record = out / "candidates" / f"{file_stem('dynamic')}.json"
    body = json.loads(record.read_text())
    failed = {
        "name": "dynamic",
        "source": "technique",
        "techniques": body["techniques"],
        "error": "WriteError: cannot write x.onnx: No space left on device",
    }
    record.write_text(json.dumps(failed))  # what an earlier slimkit kept after a full disk
    report = optimize(recipe, out=out)
    assert report.candidate("dynamic").error is None and report.candidate("dynamic").measured


def test_files_follow_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        optimize({**BASE, "name": "modes"}, out=tmp_path / "run")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert files
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, f"{path} is {oct(mode)}"


def test_a_kill_during_baseline_training_resumes_from_the_last_epoch(tmp_path: Path) -> None:
    recipe = {**BASE, "name": "resume", "train": {"epochs": 12}}
    unbroken = optimize(recipe, out=tmp_path / "unbroken")
    assert unbroken.complete
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    out = tmp_path / "run"
    command = [sys.executable, "-m", "slimkit", "optimize", str(path), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "baseline.train-state.pt"
    deadline = time.time() + 900  # a guard against a hang, not a speed check
    while time.time() < deadline and not state.is_file() and process.poll() is None:
        time.sleep(0.02)
    assert state.is_file(), f"no training state was written (exit code {process.poll()})"
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (out / "baseline.safetensors").is_file():
        pytest.skip("the baseline finished before the kill landed; nothing to resume")
    said: list[str] = []
    resumed = optimize(recipe, out=out, say=said.append)
    assert any(message.startswith("baseline: resuming") for message in said), said
    assert not state.exists()
    with (
        safe_open(str(tmp_path / "unbroken" / "baseline.safetensors"), "pt") as a,
        safe_open(str(out / "baseline.safetensors"), "pt") as b,
    ):
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
    assert resumed.candidates[0].accuracy == unbroken.candidates[0].accuracy


@pytest.mark.mnist
def test_a_checkpoint_for_other_inputs_is_one_line_before_work(
    tmp_path: Path, mnist_dir: Path
) -> None:
    """The reproducer: an 8×8 model with 28×28 data printed torch export logs and colour codes."""
    checkpoint = tmp_path / "digits-lenet.safetensors"
    save_checkpoint(create_model("lenet5", input_shape=(1, 8, 8)), checkpoint)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: x\ndata: mnist:{mnist_dir}\nmodel: {{checkpoint: {checkpoint}}}\n")
    done = subprocess.run(
        ["slimkit", "optimize", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "holds a model for inputs (1, 8, 8)" in lines[0] and "(1, 28, 28)" in lines[0]
    assert "(line 3)" in lines[0] and "\x1b[" not in done.stderr
    assert not (tmp_path / "runs" / "x" / "artifacts").exists()


def test_a_bad_search_value_fails_before_the_baseline_trains(tmp_path: Path) -> None:
    recipe = {
        **BASE,
        "name": "late",
        "search": {"trials": 2, "space": {"model": {"mlp": {"hidden": {"choice": [[8], [-3]]}}}}},
    }
    with pytest.raises(ConfigError, match=r"search\.space\.model\.mlp\.hidden"):
        optimize(recipe, out=tmp_path / "run")
    assert not (tmp_path / "run" / "baseline.safetensors").exists()


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")
def test_no_file_of_a_run_holds_the_storage_password(tmp_path: Path) -> None:
    secret = "Pa55w0rd-that-must-not-leak"
    with throwaway_postgres() as url:
        storage = url.replace("postgres@", f"postgres:{secret}@")  # the server trusts loopback
        recipe = {
            **BASE,
            "name": "pw",
            "train": {"epochs": 1},
            "search": {
                "trials": 1,
                "storage": storage,
                "space": {"model": {"mlp": {"hidden": [8]}}, "train": {"epochs": 1}},
            },
        }
        report = optimize(recipe, out=tmp_path / "run")
    assert report.complete and len(report.candidates) == 2
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {"recipe.json", "report.json", "report.html", "report.md"} <= {p.name for p in files}
    for path in files:
        assert secret.encode() not in path.read_bytes(), path

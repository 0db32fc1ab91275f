"""``optimize`` end to end on digits: report, resume without redoing work, refusal of a
different recipe, Ctrl-C leaving an incomplete report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slimkit
from slimkit.errors import ConfigError
from slimkit.io import WriteError
from slimkit.pipeline import optimize
from slimkit.pipeline.optimize import file_stem
from slimkit.report import load_report

pytestmark = pytest.mark.slow

RECIPE = {
    "name": "tiny",
    "data": "digits",
    "model": "lenet5",
    "train": {"epochs": 3},
    "target": {"latency_budget_s": 0.2},
    "candidates": [
        {"name": "int8", "techniques": [{"technique": "static_int8"}]},
        {
            "name": "pruned",
            "techniques": [{"technique": "channel_pruning", "ratio": 0.5, "epochs": 1}],
        },
        {
            "name": "distilled mlp",
            "model": {"name": "mlp", "args": {"hidden": [16]}},
            "train": {"epochs": 2},
            "techniques": [{"technique": "distillation"}],
        },
    ],
    "search": {"trials": 2, "space": {"model": {"mlp": {}}, "train": {"epochs": 1}}},
}


def test_optimize_reports_every_candidate_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = slimkit.optimize(RECIPE, out=out)  # the Python API mirror of `slimkit optimize`
    assert report.complete
    names = [c.name for c in report.candidates]
    assert names[:4] == ["baseline", "int8", "pruned", "distilled mlp"]
    assert len([c for c in report.candidates if c.source == "search"]) == 2
    for candidate in report.candidates:
        assert candidate.error is None, candidate.error
        assert candidate.measured and candidate.latency_p50_ms > 0
        assert Path(candidate.artifact).is_file()
    assert report.candidate("int8").file_bytes < report.candidate("baseline").file_bytes / 3
    on_disk = load_report(out)
    assert [c.name for c in on_disk.candidates] == names
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "candidates").iterdir()}
    again = optimize(RECIPE, out=out)  # a finished run: nothing is redone
    assert {p.name: p.stat().st_mtime_ns for p in (out / "candidates").iterdir()} == stamps
    assert [c.accuracy for c in again.candidates] == [c.accuracy for c in report.candidates]
    with pytest.raises(ConfigError, match="holds a run of a different recipe"):
        optimize({**RECIPE, "train": {"epochs": 4}}, out=out)


def test_unwritable_run_folder_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match="cannot create run folder"):
        optimize(RECIPE, out=blocker / "run")


def _start_until(tmp_path: Path, finished: str) -> tuple[list[str], Path, subprocess.Popen[bytes]]:
    """Start ``slimkit optimize`` on the first two candidates of RECIPE (no search) in a child
    process and wait until candidate ``finished`` has been written; returns the command, the run
    folder and the running process."""
    recipe = {k: v for k, v in RECIPE.items() if k != "search"}
    recipe["candidates"] = RECIPE["candidates"][:2]
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    out = tmp_path / "run"
    command = [sys.executable, "-m", "slimkit", "optimize", str(path), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "candidates" / f"{file_stem(finished)}.json"
    deadline = time.time() + 900  # a guard against a hang, not a speed check
    while time.time() < deadline and not marker.is_file() and process.poll() is None:
        time.sleep(0.05)
    assert marker.is_file(), f"{finished} was not written (exit code {process.poll()})"
    return command, out, process


def test_interrupt_leaves_an_incomplete_report_and_a_rerun_finishes(tmp_path: Path) -> None:
    command, out, process = _start_until(tmp_path, "baseline")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=900) == 130
    partial = load_report(out)
    assert not partial.complete and partial.candidates[0].name == "baseline"
    assert "INCOMPLETE" in (out / "report.html").read_text()
    baseline_stamp = (out / "candidates" / "baseline.json").stat().st_mtime_ns
    rerun = subprocess.run(command, capture_output=True, env={**os.environ}, timeout=1800)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert (out / "candidates" / "baseline.json").stat().st_mtime_ns == baseline_stamp
    final = load_report(out)
    assert final.complete and [c.name for c in final.candidates] == ["baseline", "int8", "pruned"]


def test_sigkill_mid_run_then_rerun_redoes_nothing_finished(tmp_path: Path) -> None:
    command, out, process = _start_until(tmp_path, "int8")
    process.kill()  # SIGKILL: no handler runs, the report is whatever the last stage wrote
    process.wait()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "candidates").iterdir()}
    assert {"baseline.json", f"{file_stem('int8')}.json"} <= set(stamps)
    rerun = subprocess.run(command, capture_output=True, timeout=1800)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    for name, stamp in stamps.items():  # finished work is reused, not redone
        assert (out / "candidates" / name).stat().st_mtime_ns == stamp
    final = load_report(out)
    assert final.complete and [c.name for c in final.candidates] == ["baseline", "int8", "pruned"]

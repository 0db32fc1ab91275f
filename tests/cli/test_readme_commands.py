"""Every command line the README shows, run as a newcomer runs it, in one fresh folder.

The README's first line ends in ``slimkit demo``; its command block then trains, exports to every
runtime, quantizes, compresses, measures, benchmarks, searches and optimizes. Each line is run
through the installed ``slimkit`` command, in order (later lines use earlier lines' files), and
must exit 0 without a line from a library's logger on the terminal (``--debug`` shows those).
Lines that need MNIST or a PostgreSQL server are the only ones left out, and the test says which.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import LIBRARY_LINE

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

NEEDS = {"mnist": "MNIST", "postgresql://": "a PostgreSQL server"}


def readme_command_lines() -> list[str]:
    """``slimkit ...`` commands of the README's bash blocks, comments dropped, in order."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        for line in block.splitlines():
            for part in line.split("&&"):  # line 1: `python3 -m venv ... && slimkit demo`
                command = part.split("  #")[0].strip()
                if command.startswith("slimkit "):
                    lines.append(command)
    return lines


def check_the_demo(folder: Path, stdout: str) -> None:
    """The README's main job: the digits recipe, one candidate per technique, measured in ORT."""
    from slimkit.techniques import list_techniques

    assert "report:" in stdout and "report.html" in stdout
    report = json.loads((folder / "report.json").read_text())
    assert report["complete"] and report["runtime"] == "onnxruntime"
    candidates = {c["name"]: c for c in report["candidates"]}
    baseline = candidates["baseline"]
    assert baseline["accuracy"] > 0.9 and baseline["parity"]["max_abs_diff"] <= 1e-4
    used = {t["technique"] for c in report["candidates"] for t in c["techniques"]}
    assert used >= set(list_techniques())  # every registered technique has a candidate
    for c in report["candidates"]:
        assert c["error"] is None, (c["name"], c["error"])
        assert c["latency_p50_ms"] > 0 and Path(c["artifact"]).is_file()  # measured, not estimated
        assert c["record"]["runtime"] == "onnxruntime"
    assert candidates["int8 PTQ (mse)"]["file_bytes"] * 3 < baseline["file_bytes"]
    assert candidates["channels pruned 50%"]["macs"] < baseline["macs"] / 2
    assert report["fronts"]["latency"] and (folder / "report.html").is_file()


def test_the_readme_has_the_commands_this_test_runs() -> None:
    lines = readme_command_lines()
    assert lines[0] == "slimkit demo"
    assert any(line.startswith("slimkit optimize recipes/digits.yaml") for line in lines)
    assert len(lines) >= 15


@pytest.mark.skipif(shutil.which("slimkit") is None, reason="slimkit is not installed")
def test_every_readme_command_runs(tmp_path: Path) -> None:
    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    skipped, ran = [], []
    for line in readme_command_lines():
        need = next((what for key, what in NEEDS.items() if key in line), None)
        if need is not None:
            skipped.append(f"{line} (needs {need})")
            continue
        done = subprocess.run(
            shlex.split(line),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1800,  # a guard against a hang, not a speed check
        )
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        noise = LIBRARY_LINE.findall(done.stdout + done.stderr)
        assert not noise, f"{line} printed library log lines: {noise}\n{done.stderr[-3000:]}"
        if line == "slimkit demo":
            check_the_demo(tmp_path / "runs" / "digits", done.stdout)
        ran.append(line)
    assert len(skipped) <= 1, skipped  # only the `worker` line, which names a database host
    for name in ("lenet5.onnx", "lenet5.b64.tflite", "lenet5.int8.tflite", "lenet5.tflm.tflite"):
        assert (tmp_path / "runs" / name).is_file(), name
    assert (tmp_path / "runs" / "search" / "study.journal").is_file()
    assert len(ran) >= 15

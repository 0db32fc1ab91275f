"""The command line: each command on real data, tables and JSON out, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimkit.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _slimkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a child process (as a user would)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-c", "from slimkit.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,  # a guard against a hang, not a speed check: CI may be busy
    )


def _documented_commands() -> list[str]:
    """Every ``slimkit WORD`` the README and docs show in a code block."""
    root = Path(__file__).resolve().parents[2]
    found: set[str] = set()
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S):
            found.update(re.findall(r"^\s*slimkit ((?:search )?[a-z][a-z-]+)", block, flags=re.M))
    return sorted(found)


@pytest.mark.parametrize("command", _documented_commands())
def test_every_documented_command_exists(
    command: str, tmp_path: Path, assert_help_complete: Callable[[str], None]
) -> None:
    """Through the installed entry point, as a user types it (a command module the CLI never
    imports would pass a test that imports it itself); its help leaves nothing blank."""
    done = subprocess.run(
        ["slimkit", *command.split(), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert_help_complete(done.stdout)


def test_models_lists_the_registry_with_costs() -> None:
    code, output = _run("models", "--input-shape", "1x28x28")
    assert code == 0
    assert "lenet300_100" in output and "266,610" in output


def test_models_summary_shows_layers() -> None:
    code, output = _run("models", "lenet5", "--summary", "--input-shape", "1x28x28")
    assert code == 0 and "Conv2d" in output and "61,706" in output


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "executorch"])
def test_export_int8_carries_slimkit_scales_to_each_runtime(runtime: str, tmp_path: Path) -> None:
    module = {"litert": "ai_edge_litert", "executorch": "executorch"}.get(runtime)
    if module:
        pytest.importorskip(module, reason=f"{module} is not installed")
    checkpoint = tmp_path / "m.safetensors"
    code, output = _run(
        "train", "--data", "digits", "--model", "lenet5", "--epochs", "2", "--out", str(checkpoint)
    )
    assert code == 0, output
    code, output = _run("export", str(checkpoint), "--runtime", runtime, "--int8", "-b", "8")
    assert code == 0, output
    name = {
        "onnxruntime": "m.int8.onnx",
        "litert": "m.int8.b8.tflite",
        "executorch": "m.int8.b8.pte",
    }
    summary = json.loads((tmp_path / f"{name[runtime]}.json").read_text())
    parity = summary["parity"]
    assert parity["reference"] == "slimkit integer reference"
    assert parity["within_1_lsb"] >= 0.999 and parity["argmax_agreement"] >= 0.995
    if runtime != "onnxruntime":
        assert summary["export"]["quantizer"] == "slimkit"


def test_train_export_measure_flow(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.safetensors"
    code, output = _run(
        "train",
        "--data",
        "digits",
        "--model",
        "mlp",
        "--model-arg",
        "hidden=[32]",
        "--epochs",
        "3",
        "--out",
        str(checkpoint),
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "m.train.json").read_text())
    assert summary["model"]["kwargs"] == {"hidden": [32]} and summary["test_accuracy"] > 0.8

    code, output = _run("export", str(checkpoint))
    assert code == 0, output
    onnx_file = tmp_path / "m.onnx"
    export_summary = json.loads((tmp_path / "m.onnx.json").read_text())
    assert export_summary["parity"]["argmax_agreement"] == 1.0
    assert export_summary["parity"]["max_abs_diff"] <= 1e-4

    out = tmp_path / "measure.json"
    code, output = _run(
        "measure",
        str(onnx_file),
        str(checkpoint),
        "-b",
        "1",
        "-b",
        "16",
        "--budget",
        "0.2",
        "--out",
        str(out),
    )
    assert code == 0, output
    records = json.loads(out.read_text())["records"]
    assert [r["runtime"] for r in records] == ["onnxruntime", "pytorch"]
    assert records[0]["accuracy"] == pytest.approx(records[1]["accuracy"])
    assert records[0]["parity"]["argmax_agreement"] == 1.0  # the checkpoint was found by itself
    assert {(s["batch_size"], s["threads"]) for s in records[0]["latency"]} == {(1, 1), (16, 1)}


def test_user_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    result = _slimkit("train", "--data", f"mnist:{tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nowhere" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = _slimkit("--debug", "models", "nosuchmodel", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "unknown model 'nosuchmodel'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "--input-shape", "28x28"], "--input-shape must look like CxHxW"),
        (["train", "--optimizer", "lion"], "'lion' is not one of adam, adamw, sgd"),
        (["train", "--model-arg", "hidden"], "--model-arg takes KEY=VALUE"),
        (["export", "missing.safetensors"], "does not exist"),
        (["export", "x.safetensors", "--runtime", "pytorch"], "'pytorch' is not one of"),
        (["measure", "model.tflite2"], "cannot tell the runtime"),
    ],
)
def test_bad_input_messages(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "model.tflite2").write_bytes(b"")  # a file that exists, of no known kind
    result = _slimkit(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr.replace("\n", " ")

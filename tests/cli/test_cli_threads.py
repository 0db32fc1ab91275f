"""Every command that computes takes ``--threads`` (one shared option), through the installed
entry point as a user types it; the command line makes OpenMP sleep before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPUTING_COMMANDS = [
    "train",
    "compress",
    "quantize",
    "prune",
    "distill",
    "export",
    "measure",
    "bench",
    "optimize",
    "demo",
    "search run",
    "worker",
    "models",
]


@pytest.mark.parametrize("command", COMPUTING_COMMANDS)
def test_every_computing_command_lists_threads(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        ["slimkit", *command.split(), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "--threads" in done.stdout


def test_zero_threads_is_refused_before_any_work(tmp_path: Path) -> None:
    done = subprocess.run(
        ["slimkit", "train", "--threads", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        timeout=600,
    )
    assert done.returncode != 0  # the exit code of every bad option value (see the README)
    assert "--threads" in done.stderr
    assert not (tmp_path / "runs").exists()


# OpenMP reads OMP_WAIT_POLICY once, when torch loads libgomp: record what it is at that moment
_WATCH_TORCH_IMPORT = """
import importlib.abc, json, os, sys
os.environ.pop("OMP_WAIT_POLICY", None)
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and "policy" not in seen:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Watch())
from slimkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    seen["exit"] = done.code
import torch
seen["threads"] = torch.get_num_threads()
print("RESULT " + json.dumps(seen))
"""


def test_the_cli_makes_openmp_sleep_before_torch_loads_and_applies_threads(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WATCH_TORCH_IMPORT, "models", "lenet5", "--threads", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))
    assert seen.get("exit") in (None, 0), done.stderr
    assert seen["policy"] == "PASSIVE"
    assert seen["threads"] == 1

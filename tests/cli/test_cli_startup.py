"""The command line answers before the heavy libraries load, and follows one exit-code rule.

Every check drives the installed ``slimkit`` command in a child process, as a user types it; the
imports are read from Python's own import-time log (``PYTHONPROFILEIMPORTTIME``). No timing is
asserted here (``benchmarks/cli_startup.py`` measures it side by side with ``python -c pass``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from slimkit.cli import app, choices

# what `--help`, `--version` and a mistyped argument must never import
HEAVY = {
    "torch",
    "onnx",
    "onnxruntime",
    "optuna",
    "numpy",
    "matplotlib",
    "ai_edge_litert",
    "executorch",
    "tensorflow",
    "jax",
    "sklearn",
    "scipy",
}
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", re.M)


def _commands() -> list[list[str]]:
    """Every registered command and subcommand, as argv words (``["search", "run"]``)."""

    def walk(group: object, path: list[str]) -> list[list[str]]:
        found = []
        for name, command in sorted(getattr(group, "commands", {}).items()):
            found.append([*path, name])
            found += walk(command, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


def slimkit(*args: str, cwd: Path, profile: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (wide help, no colour codes)."""
    executable = shutil.which("slimkit")
    assert executable is not None, "slimkit is not installed (pip install -e .)"
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if profile:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    return subprocess.run(
        [executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,  # a guard against a hang, not a speed check
    )


def imported_packages(stderr: str) -> set[str]:
    """Top-level packages named in an import-time log."""
    return {name.split(".")[0] for name in _IMPORT_LINE.findall(stderr)}


INVOCATIONS = [
    ["--help"],
    ["--version"],
    *([*command, "--help"] for command in _commands()),
    ["train", "--bogus-option"],
    ["measure", "missing.onnx"],
]


@pytest.mark.parametrize("args", INVOCATIONS, ids=" ".join)
def test_help_version_and_argument_errors_import_no_heavy_library(
    args: list[str], tmp_path: Path, assert_help_complete: Callable[[str], None]
) -> None:
    done = slimkit(*args, cwd=tmp_path, profile=True)
    assert "Traceback" not in done.stderr, done.stderr
    heavy = sorted(HEAVY & imported_packages(done.stderr))
    assert not heavy, f"slimkit {' '.join(args)} imported {heavy}"
    assert imported_packages(done.stderr), "no import-time log: PYTHONPROFILEIMPORTTIME unread"
    if "--help" in args:
        assert done.returncode == 0 and "Usage" in done.stdout
        assert_help_complete(done.stdout)  # every command's help, not only the documented


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--bogus-option"], "No such option: --bogus-option"),
        (["measure"], "Missing argument"),
        (["train", "--optimizer", "lion"], "'lion' is not one of adam, adamw, sgd"),
        (["export", "m.safetensors", "--runtime", "pytorch"], "'pytorch' is not one of"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["measure", "runs/nope.onnx"], "runs/nope.onnx does not exist"),
        (["measure", "."], "is a folder"),
        (["export", "runs/nope.safetensors"], "checkpoint runs/nope.safetensors does not exist"),
        (["bench", "nope.safetensors"], "does not exist"),
        (["compress", "nope.safetensors", "--technique", "low_rank"], "does not exist"),
        (["quantize", "nope.safetensors"], "does not exist"),
        (["prune", "nope.safetensors"], "does not exist"),
        (["distill", "--teacher", "nope.safetensors", "--student", "mlp"], "does not exist"),
        (["optimize", "nope.yaml"], "recipe nope.yaml does not exist"),
        (["search", "run", "nope.yaml"], "search file nope.yaml does not exist"),
        (["report", "runs/nope"], "does not exist"),
    ],
)
def test_user_and_usage_errors_exit_1_with_one_error_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """The README's rule: an error in what was given, usage errors included, is one line and
    exit 1; a missing model file is named as missing before anything is loaded."""
    done = slimkit(*args, cwd=tmp_path, profile=True)
    lines = [line for line in _error_lines(done) if not line.startswith("import time:")]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert message in lines[0]
    heavy = sorted(HEAVY & imported_packages(done.stderr))
    assert not heavy, f"slimkit {' '.join(args)} imported {heavy} before answering"


def test_help_version_and_bare_command_exit_0(tmp_path: Path) -> None:
    for args in (["--help"], ["--version"], [], ["search"]):
        done = slimkit(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert not done.stderr.strip(), (args, done.stderr)
    assert "Usage" in slimkit(cwd=tmp_path).stdout


def test_models_counts_at_the_default_data_shape(tmp_path: Path) -> None:
    done = slimkit("models", "lenet5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"input {choices.DEFAULT_DATA_SHAPE}" in done.stdout


def test_choices_equal_the_library_definitions() -> None:
    """``slimkit.cli.choices`` mirrors the library so ``--help`` needs no torch: one definition,
    kept by this test."""
    from slimkit.data import DATA_SOURCES, load_dataset
    from slimkit.export import list_formats
    from slimkit.export.targets import PRECISIONS, RUNTIME_QUANTIZERS
    from slimkit.models import DEFAULT_MODEL, list_models
    from slimkit.runtime import list_runtimes, runtime_info
    from slimkit.search.run import SAMPLERS
    from slimkit.search.study import DEFAULT_WAIT_S
    from slimkit.techniques import list_techniques
    from slimkit.techniques.distill import DistillationConfig
    from slimkit.techniques.prune.masks import GRANULARITIES
    from slimkit.techniques.quantize.observers import list_observers
    from slimkit.train import TrainConfig
    from slimkit.train.config import DEVICES, OPTIMIZERS, SCHEDULES

    assert choices.DATA_SOURCES == DATA_SOURCES
    shape = load_dataset(choices.DEFAULT_DATA).input_shape
    assert "x".join(map(str, shape)) == choices.DEFAULT_DATA_SHAPE
    assert tuple(list_models()) == choices.MODELS and choices.DEFAULT_MODEL == DEFAULT_MODEL
    assert tuple(list_runtimes()) == choices.RUNTIMES
    exportable = tuple(r for r in list_runtimes() if runtime_info(r).format in list_formats())
    assert exportable == choices.EXPORT_RUNTIMES
    assert tuple(RUNTIME_QUANTIZERS) == choices.BENCH_RUNTIMES
    assert choices.PRECISIONS == PRECISIONS
    assert tuple(list_techniques()) == choices.TECHNIQUES
    assert tuple(list_observers()) == choices.CALIBRATIONS
    assert choices.GRANULARITIES == GRANULARITIES
    assert (choices.OPTIMIZERS, choices.SCHEDULES, choices.DEVICES) == (
        OPTIMIZERS,
        SCHEDULES,
        DEVICES,
    )
    train = TrainConfig()
    assert {k: getattr(train, k) for k in choices.TRAIN_DEFAULTS} == choices.TRAIN_DEFAULTS
    distill = DistillationConfig(teacher="teacher.safetensors")
    assert {k: getattr(distill, k) for k in choices.DISTILL_DEFAULTS} == choices.DISTILL_DEFAULTS
    assert choices.SAMPLERS == SAMPLERS and choices.STORAGE_WAIT_S == DEFAULT_WAIT_S

"""What a command prints where its output is not a terminal, run through the installed ``slimkit``.

Piped (a log file, CI), a command prints one plain line per epoch or stage instead of a progress
bar that shows nothing until it ends. Libraries' logs and the runtimes' native stderr (LiteRT's
TensorFlow/absl banners, ExecuTorch's ``[cpuinfo_utils.cpp:71]`` lines) stay off the terminal
unless ``--debug``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from slimkit.data import Dataset
from slimkit.train import save_checkpoint

from .conftest import LIBRARY_LINE

pytestmark = pytest.mark.skipif(shutil.which("slimkit") is None, reason="slimkit is not installed")


def _slimkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["slimkit", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_piped_training_prints_a_line_per_epoch(tmp_path: Path) -> None:
    done = _slimkit(
        "train", "--data", "digits", "--epochs", "3", "--seed", "0", "--out", "m.safetensors",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = (
        r"^train lenet5: epoch (\d)/3 loss \d+\.\d+ val \d+\.\d\d% \([\d.]+ s(, ETA [\d.]+ s)?\)$"
    )
    epochs = [epoch for epoch, _ in re.findall(line, done.stdout, flags=re.M)]
    assert epochs == ["1", "2", "3"], done.stdout
    assert not re.search(r"━+ \d+/\d+", done.stdout)  # no bar drawn into the pipe
    assert not LIBRARY_LINE.search(done.stderr), done.stderr


@pytest.fixture(scope="module")
def checkpoint(
    trained_lenet: nn.Module, digits: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("exports")
    return save_checkpoint(
        trained_lenet, folder / "m.safetensors", metadata={"data": digits.config.to_dict()}
    )


RUNTIMES = [
    pytest.param("onnxruntime", "onnxruntime", id="onnxruntime"),
    pytest.param("litert", "ai_edge_litert", id="litert"),
    pytest.param("executorch", "executorch", id="executorch"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "module"), RUNTIMES)
def test_an_export_keeps_library_logs_off_stderr(
    runtime: str, module: str, checkpoint: Path
) -> None:
    pytest.importorskip(module)
    folder = checkpoint.parent
    done = _slimkit("export", checkpoint.name, "--runtime", runtime, "--force", cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "", done.stderr  # nothing at all: no banner, no native log line
    assert not LIBRARY_LINE.search(done.stdout), done.stdout
    assert re.search(r"^exporting to \w+$", done.stdout, flags=re.M), done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "module"), RUNTIMES[1:])
def test_debug_lets_library_logs_through(runtime: str, module: str, checkpoint: Path) -> None:
    pytest.importorskip(module)
    folder = checkpoint.parent
    done = _slimkit(
        "--debug", "export", checkpoint.name, "--runtime", runtime, "--force", cwd=folder
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert LIBRARY_LINE.search(done.stderr), done.stderr[-2000:]


# a command of a test's own: a library's logger, a Python warning and native stderr
PROGRAM = textwrap.dedent(
    """
    import logging, os, sys, warnings

    from slimkit.cli import app, main
    from slimkit.logs import native_output_captured


    @app.command("noise")
    def noise() -> None:
        logging.getLogger("somelibrary").warning("somelibrary says hello")
        logging.getLogger("slimkit.test").warning("slimkit warns")
        logging.getLogger("slimkit.test").info("slimkit informs")
        warnings.warn("a library's UserWarning")
        with native_output_captured("native"):
            os.write(2, b"[native.cpp:1] native says hello\\n")
        print("done")


    main(sys.argv[1:])
    """
)


@pytest.mark.parametrize(
    ("flags", "shown", "hidden"),
    [
        ([], ["slimkit warns"], ["somelibrary", "slimkit informs", "UserWarning", "native"]),
        (["--verbose"], ["slimkit warns", "slimkit informs"], ["somelibrary", "native"]),
        (
            ["--debug"],
            ["slimkit warns", "slimkit informs", "somelibrary says hello", "UserWarning"],
            [],
        ),
    ],
)
def test_library_records_show_only_with_debug(
    flags: list[str], shown: list[str], hidden: list[str], tmp_path: Path
) -> None:
    program = tmp_path / "noise.py"
    program.write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, str(program), *flags, "noise"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"
    for text in shown:
        assert text in done.stderr, (text, done.stderr)
    for text in hidden:
        assert text not in done.stderr, (text, done.stderr)
    if "--debug" in flags:  # native output goes straight through
        assert "[native.cpp:1] native says hello" in done.stderr

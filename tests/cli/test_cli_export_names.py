"""``slimkit export`` to every runtime and precision in one folder leaves one file each: names say
what a file is, and an explicit ``--out`` is never replaced without ``--force``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from torch import nn

from slimkit.data import Dataset
from slimkit.train import save_checkpoint

pytestmark = pytest.mark.slow

EXPORTS = [
    (["--runtime", "onnxruntime"], "m.onnx"),
    (["--runtime", "onnxruntime", "--int8"], "m.int8.onnx"),
    (["--runtime", "litert"], "m.tflite"),
    (["--runtime", "litert", "-b", "64"], "m.b64.tflite"),
    (["--runtime", "litert", "--int8"], "m.int8.tflite"),
    (["--runtime", "litert", "--int8", "-b", "64"], "m.int8.b64.tflite"),
    (["--runtime", "executorch"], "m.pte"),
    (["--runtime", "executorch", "--int8", "-b", "64"], "m.int8.b64.pte"),
    (["--runtime", "tflite-micro"], "m.tflm.tflite"),
]


def _slimkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["slimkit", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


def test_every_runtime_and_precision_leaves_its_own_file(
    trained_lenet: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("executorch")
    save_checkpoint(
        trained_lenet, tmp_path / "m.safetensors", metadata={"data": digits.config.to_dict()}
    )
    for args, name in EXPORTS:
        done = _slimkit("export", "m.safetensors", *args, "--no-parity", cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert (tmp_path / name).is_file(), (args, sorted(p.name for p in tmp_path.iterdir()))
    models = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".onnx", ".tflite", ".pte"))
    assert models == sorted(name for _, name in EXPORTS)  # one each, none replaced another


def test_an_existing_out_file_needs_force(
    trained_lenet: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    save_checkpoint(
        trained_lenet, tmp_path / "m.safetensors", metadata={"data": digits.config.to_dict()}
    )
    (tmp_path / "mine.onnx").write_bytes(b"a file of mine")
    done = _slimkit("export", "m.safetensors", "--out", "mine.onnx", "--no-parity", cwd=tmp_path)
    assert done.returncode == 1 and "pass --force" in done.stderr
    assert (tmp_path / "mine.onnx").read_bytes() == b"a file of mine"
    done = _slimkit("export", "m.safetensors", "--out", "m.safetensors", "--force", cwd=tmp_path)
    assert done.returncode == 1 and "is the checkpoint itself" in done.stderr
    done = _slimkit(
        "export", "m.safetensors", "--out", "mine.onnx", "--force", "--no-parity", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mine.onnx").read_bytes() != b"a file of mine"

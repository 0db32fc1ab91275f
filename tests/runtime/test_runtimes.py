"""Conformance of every registered runtime: load, run, threads, version, bad files and inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.errors import ConfigError, RuntimeLoadError
from slimkit.export import export, exporter_info
from slimkit.models import create_model
from slimkit.runtime import Runner, list_runtimes, load_runtime, runtime_info
from slimkit.train import save_checkpoint


def _artifact(runtime: str, model: torch.nn.Module, folder: Path) -> Path:
    """Write ``model`` in the format ``runtime`` loads."""
    fmt = runtime_info(runtime).format
    if fmt == "checkpoint":
        return save_checkpoint(model, folder / "m.safetensors")
    return export(model, folder / f"m{exporter_info(fmt).suffix}", format=fmt).path


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", input_shape=(1, 8, 8), channels=[4, 8], hidden=[16, 16]).eval()


def test_builtin_runtimes_are_registered() -> None:
    assert {"pytorch", "onnxruntime"} <= set(list_runtimes())


@pytest.mark.parametrize("runtime", list_runtimes())
@pytest.mark.parametrize("threads", [1, 2])
def test_runtime_matches_eager_pytorch(
    runtime: str, threads: int, tiny: torch.nn.Module, tmp_path: Path
) -> None:
    runner = load_runtime(runtime, _artifact(runtime, tiny, tmp_path), threads=threads)
    assert isinstance(runner, Runner) and runner.threads == threads
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    out = runner.run(x)
    assert out.dtype == np.float32 and out.shape == (16, 10)
    np.testing.assert_allclose(out, tiny(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    assert runner.version()
    assert runner.input_shape == (1, 8, 8)


@pytest.mark.parametrize("runtime", list_runtimes())
def test_wrong_input_shape_names_the_expected_one(
    runtime: str, tiny: torch.nn.Module, tmp_path: Path
) -> None:
    runner = load_runtime(runtime, _artifact(runtime, tiny, tmp_path))
    with pytest.raises(
        ConfigError, match=r"expects input of shape \(N, 1, 8, 8\); got \(2, 1, 9, 9\)"
    ):
        runner.run(np.zeros((2, 1, 9, 9), dtype=np.float32))


@pytest.mark.parametrize("runtime", list_runtimes())
def test_wrong_dtype(runtime: str, tiny: torch.nn.Module, tmp_path: Path) -> None:
    runner = load_runtime(runtime, _artifact(runtime, tiny, tmp_path))
    with pytest.raises(ConfigError, match="float32"):
        runner.run(np.zeros((2, 1, 8, 8), dtype=np.int64))
    # float64 is converted, not refused
    assert runner.run(np.zeros((2, 1, 8, 8))).shape == (2, 10)


@pytest.mark.parametrize("runtime", list_runtimes())
def test_missing_file(runtime: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match="does not exist"):
        load_runtime(runtime, tmp_path / "none.bin")


@pytest.mark.parametrize("runtime", list_runtimes())
def test_truncated_file(runtime: str, tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = _artifact(runtime, tiny, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises((RuntimeLoadError, ConfigError), match=str(path.name)):
        load_runtime(runtime, path)


def test_file_of_another_format(tiny: torch.nn.Module, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tiny, tmp_path / "m.safetensors")
    wrong = tmp_path / "m.onnx"
    wrong.write_bytes(checkpoint.read_bytes())
    with pytest.raises(RuntimeLoadError, match=r"cannot load .*m\.onnx as an ONNX model"):
        load_runtime("onnxruntime", wrong)


def test_bad_thread_count(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = export(tiny, tmp_path / "m.onnx").path
    with pytest.raises(ConfigError, match="threads must be an int >= 1; got 0"):
        load_runtime("onnxruntime", path, threads=0)


def test_unknown_runtime() -> None:
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        load_runtime("tensorrt", "x")

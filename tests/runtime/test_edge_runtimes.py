"""LiteRT and ExecuTorch: parity (fp32 and int8), fixed batch sizes, threads, delegation, bad files.

Real runtimes on real (digits) data; the oracles are the eager PyTorch model for fp32 and the
quantizer's simulated PT2E graph for int8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.data import Dataset
from slimkit.errors import MissingDependencyError, RuntimeLoadError
from slimkit.export import export, quantize_pt2e
from slimkit.measure import compare_logits
from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches, runtime_info
from slimkit.train import save_checkpoint

EDGE = [("litert", "tflite", "ai_edge_litert"), ("executorch", "pte", "executorch")]

# measured fp32 max |Δ logit| on LeNet-5 / digits is ~1e-6 in both; the bound is 1e-4
FP32_ATOL = 1e-4


def _needs(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")


@pytest.fixture(scope="module")
def calibration(digits: Dataset) -> np.ndarray:
    return digits.train.x.numpy()[:256]


@pytest.mark.parametrize(("runtime", "fmt", "module"), EDGE)
@pytest.mark.parametrize("batch_size", [1, 64])
def test_fp32_parity_on_the_whole_test_split(
    runtime: str,
    fmt: str,
    module: str,
    batch_size: int,
    trained_lenet: torch.nn.Module,
    digits: Dataset,
    tmp_path: Path,
) -> None:
    _needs(module)
    result = export(trained_lenet, tmp_path / f"m.{fmt}", format=fmt, batch_size=batch_size)
    assert result.batch_size == batch_size and result.quantizer is None
    runner = load_runtime(runtime, result.path)
    assert runner.batch_size == batch_size
    x = digits.test.x.numpy()  # 360 samples: not a multiple of 64, so the last call is padded
    reference = predict_batches(PyTorchRunner.from_model(trained_lenet).run, x)
    parity = compare_logits(reference, predict_batches(runner.run, x))
    assert parity.samples == len(x)
    assert parity.max_abs_diff <= FP32_ATOL
    assert parity.argmax_agreement == 1.0


# (runtime, quantizer, least argmax agreement with the quantizer's simulated PT2E graph). slimkit's
# own scales run in both (tests/export/test_pt2e_slimkit.py holds them against slimkit's integer
# reference). One PT2E graph with ExecuTorch's quantizer runs in both runtimes with its own scales
# (measured: 100% agreement in both). litert-torch's own quantizer yields a graph whose simulation
# LiteRT's int8 kernels follow less closely (measured on LeNet-5/digits: 99.4%, mean |Δ| 0.2
# output quanta), so it gets the looser bound; see docs/runtimes.md.
INT8_CASES = [
    ("executorch", "pte", "executorch", "slimkit", 0.995),
    ("litert", "tflite", "ai_edge_litert", "slimkit", 0.995),
    ("executorch", "pte", "executorch", "executorch-xnnpack-pt2e", 0.995),
    ("litert", "tflite", "ai_edge_litert", "executorch-xnnpack-pt2e", 0.995),
    ("litert", "tflite", "ai_edge_litert", "litert-pt2e", 0.98),
]


@pytest.mark.parametrize(("runtime", "fmt", "module", "quantizer", "agreement"), INT8_CASES)
def test_int8_matches_the_simulated_model(
    runtime: str,
    fmt: str,
    module: str,
    quantizer: str,
    agreement: float,
    trained_lenet: torch.nn.Module,
    digits: Dataset,
    calibration: np.ndarray,
    tmp_path: Path,
) -> None:
    _needs(module)
    _needs("executorch")  # the ExecuTorch quantizer
    graph = quantize_pt2e(trained_lenet, calibration, quantizer=quantizer)
    result = export(graph, tmp_path / f"q.{fmt}", format=fmt, batch_size=32)
    assert result.quantizer == quantizer
    assert result.delegation is not None and result.delegation.all_delegated
    x = digits.test.x.numpy()
    simulated = predict_batches(PyTorchRunner.from_model(graph).run, x)
    parity = compare_logits(simulated, predict_batches(load_runtime(runtime, result.path).run, x))
    assert parity.argmax_agreement >= agreement
    # int8 output: at most two output quanta (the int8 grid over the logits' range) away
    quantum = float(simulated.max() - simulated.min()) / 255
    assert parity.max_abs_diff <= 2 * quantum + 1e-6
    fp32 = predict_batches(PyTorchRunner.from_model(trained_lenet).run, x)
    assert compare_logits(fp32, simulated).argmax_agreement >= 0.97
    # int8 weights: the file is smaller than the fp32 one
    fp32_file = export(trained_lenet, tmp_path / f"f.{fmt}", format=fmt, batch_size=32)
    assert result.file_bytes < fp32_file.file_bytes


@pytest.mark.parametrize(("runtime", "fmt", "module"), EDGE)
def test_threads_are_applied_and_do_not_change_results(
    runtime: str, fmt: str, module: str, trained_lenet: torch.nn.Module, tmp_path: Path
) -> None:
    _needs(module)
    path = export(trained_lenet, tmp_path / f"m.{fmt}", format=fmt, batch_size=8).path
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    one = load_runtime(runtime, path, threads=1)
    two = load_runtime(runtime, path, threads=2)
    assert one.threads == 1 and two.threads == 2
    np.testing.assert_allclose(one.run(x), two.run(x), atol=1e-5)
    if runtime == "executorch":  # one process-wide pool: the runner sets it before each run
        from executorch.extension.pybindings import portable_lib

        two.run(x)
        assert portable_lib._threadpool_get_thread_count() == 2
        one.run(x)
        assert portable_lib._threadpool_get_thread_count() == 1
        # a resize frees the pool XNNPACK holds: the other runner loads its method again first
        # (running the stale one used freed memory and could abort the process)
        before = two.method
        expected = one.run(x)
        for _ in range(20):
            np.testing.assert_allclose(two.run(x), expected, atol=1e-5)
            np.testing.assert_allclose(one.run(x), expected, atol=1e-5)
        assert two.method is not before


class _CumsumHead(torch.nn.Module):
    """A model with an operator XNNPACK does not run (cumulative sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.linear(x.flatten(1)), dim=1)


@pytest.mark.parametrize(("runtime", "fmt", "module"), EDGE)
def test_delegation_reports_what_xnnpack_runs(
    runtime: str, fmt: str, module: str, trained_lenet: torch.nn.Module, tmp_path: Path
) -> None:
    _needs(module)
    path = export(trained_lenet, tmp_path / f"m.{fmt}", format=fmt, batch_size=4).path
    report = load_runtime(runtime, path).delegation()
    assert report is not None and report.backend == "XNNPACK"
    assert report.all_delegated and report.outside == {} and report.partitions == 1
    assert report.delegated is not None
    names = " ".join(report.delegated).lower()
    assert "conv" in names and ("fully" in names or "linear" in names)
    assert "nothing outside" in report.summary()

    partial = export(_CumsumHead().eval(), tmp_path / f"c.{fmt}", format=fmt, input_shape=(1, 8, 8))
    assert partial.delegation is not None and not partial.delegation.all_delegated
    assert any("cumsum" in name.lower() for name in partial.delegation.outside)
    from_file = load_runtime(runtime, partial.path).delegation()
    assert from_file is not None and any("cumsum" in name.lower() for name in from_file.outside)
    x = np.random.default_rng(1).random((1, 1, 8, 8), dtype=np.float32)
    assert load_runtime(runtime, partial.path).run(x).shape == (1, 10)


@pytest.mark.parametrize(("runtime", "fmt", "module"), EDGE)
def test_file_of_another_format_names_the_file_and_the_format(
    runtime: str, fmt: str, module: str, trained_lenet: torch.nn.Module, tmp_path: Path
) -> None:
    _needs(module)
    wrong = tmp_path / f"checkpoint.{fmt}"
    wrong.write_bytes(save_checkpoint(trained_lenet, tmp_path / "m.safetensors").read_bytes())
    with pytest.raises(RuntimeLoadError, match=rf"checkpoint\.{fmt} is not a \.{fmt}"):
        load_runtime(runtime, wrong)
    other = "pte" if fmt == "tflite" else "tflite"
    other_module = dict((f, m) for _, f, m in EDGE)[other]
    _needs(other_module)
    foreign = export(trained_lenet, tmp_path / f"foreign.{other}", format=other).path
    renamed = tmp_path / f"foreign-renamed.{fmt}"
    renamed.write_bytes(foreign.read_bytes())
    with pytest.raises(RuntimeLoadError, match="foreign-renamed"):
        load_runtime(runtime, renamed)


@pytest.mark.parametrize(
    ("runtime", "module"), [("litert", "ai_edge_litert"), ("executorch", "executorch")]
)
def test_missing_package_gives_the_install_command(
    runtime: str, module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, module, None)  # import of the package now fails
    monkeypatch.setitem(sys.modules, f"{module}.runtime", None)
    monkeypatch.setitem(sys.modules, f"{module}.interpreter", None)
    with pytest.raises(MissingDependencyError, match=rf'pip install "slimkit\[{runtime}\]"'):
        load_runtime(runtime, path)
    assert runtime_info(runtime).runner.install_hint == f'pip install "slimkit[{runtime}]"'

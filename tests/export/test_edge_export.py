"""LiteRT/ExecuTorch exporters, PT2E int8, ONNX Runtime int8 and per-runtime preparation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.errors import ConfigError, ExportError
from slimkit.export import (
    EdgeExportResult,
    export,
    is_quantized_graph,
    list_formats,
    quantize_onnx_static,
    quantize_pt2e,
    simulate_qdq,
)
from slimkit.export.targets import prepare_for_runtime
from slimkit.measure import compare_logits
from slimkit.models import create_model
from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches

EDGE = [("tflite", "ai_edge_litert"), ("pte", "executorch")]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", input_shape=(1, 8, 8), channels=[4, 8], hidden=[16, 16]).eval()


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).random((96, 1, 8, 8), dtype=np.float32)


def test_edge_formats_are_registered() -> None:
    assert {"onnx", "tflite", "pte"} <= set(list_formats())


@pytest.mark.parametrize(("fmt", "module"), EDGE)
def test_result_says_batch_quantizer_and_delegation(
    fmt: str, module: str, tiny: torch.nn.Module, tmp_path: Path
) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")
    result = export(tiny, tmp_path / f"m.{fmt}", format=fmt, batch_size=3)
    assert isinstance(result, EdgeExportResult)
    assert result.file_bytes == result.path.stat().st_size > 0
    assert result.batch_size == 3 and result.quantizer is None
    assert result.delegation is not None and result.delegation.all_delegated
    body = result.to_dict()
    assert body["delegation"]["all_delegated"] is True and body["batch_size"] == 3


@pytest.mark.parametrize(("fmt", "module"), EDGE)
def test_bad_batch_size_and_unexportable_model(fmt: str, module: str, tmp_path: Path) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")
    model = create_model("mlp", input_shape=(1, 8, 8), hidden=[8])
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1; got 0"):
        export(model, tmp_path / f"m.{fmt}", format=fmt, batch_size=0)

    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) if x.sum() > 0 else -x.flatten(1)

    with pytest.raises(ExportError, match="could not export DataDependent to"):
        export(DataDependent(), tmp_path / f"d.{fmt}", format=fmt, input_shape=(1, 2, 2))
    assert not (tmp_path / f"d.{fmt}").exists()


@pytest.mark.parametrize(("fmt", "module"), EDGE)
def test_export_keeps_training_mode(fmt: str, module: str, tmp_path: Path) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")
    model = create_model("mlp", input_shape=(1, 8, 8), hidden=[8], dropout=0.5)
    model.train()
    export(model, tmp_path / f"m.{fmt}", format=fmt)
    assert model.training


def test_pt2e_graph_is_the_simulated_int8_model(tiny: torch.nn.Module, inputs: np.ndarray) -> None:
    pytest.importorskip("executorch", reason="executorch is not installed")
    graph = quantize_pt2e(tiny, inputs, quantizer="executorch-xnnpack-pt2e")
    assert is_quantized_graph(graph) and not is_quantized_graph(tiny)
    assert graph.slimkit_quantizer == "executorch-xnnpack-pt2e"
    x = torch.from_numpy(inputs[:5])  # any batch: the graph has a dynamic batch dimension
    simulated, fp32 = graph(x).detach(), tiny(x).detach()
    assert 0 < float((simulated - fp32).abs().max()) < 0.1
    assert graph.eval() is graph  # chains like nn.Module.eval
    with pytest.raises(ConfigError, match="quantizer must be one of"):
        quantize_pt2e(tiny, inputs, quantizer="tensorrt")
    with pytest.raises(ConfigError, match=r"must have shape \(1, 8, 8\); got \(1, 9, 9\)"):
        quantize_pt2e(tiny, np.zeros((4, 1, 9, 9), np.float32))


def test_onnxruntime_int8_matches_its_unfused_simulation(
    tiny: torch.nn.Module, inputs: np.ndarray, tmp_path: Path
) -> None:
    fp32 = export(tiny, tmp_path / "m.onnx").path
    result = quantize_onnx_static(fp32, tmp_path / "m-int8.onnx", inputs)
    assert result.quantizer == "onnxruntime-quantize-static-qdq" and result.batch_size is None
    fused = load_runtime("onnxruntime", result.path).run(inputs)
    simulated = simulate_qdq(result.path, inputs)
    assert np.mean(fused.argmax(1) == simulated.argmax(1)) >= 0.99
    quantum = float(simulated.max() - simulated.min()) / 255
    assert np.abs(fused - simulated).max() <= 2 * quantum


@pytest.mark.parametrize("quantizer", ["slimkit", "runtime"])
@pytest.mark.parametrize("runtime", ["pytorch", "onnxruntime", "litert", "executorch"])
def test_prepare_for_runtime_writes_what_each_runtime_loads(
    runtime: str, quantizer: str, tiny: torch.nn.Module, inputs: np.ndarray, tmp_path: Path
) -> None:
    module = {"litert": "ai_edge_litert", "executorch": "executorch"}.get(runtime)
    if module:
        pytest.importorskip(module, reason=f"{module} is not installed")
    pytest.importorskip("executorch", reason="PT2E (torchao) comes with ExecuTorch")
    for precision in ("fp32", "int8"):
        prepared = prepare_for_runtime(
            tiny,
            runtime,
            tmp_path,
            stem="tiny",
            batch_sizes=(1, 4),
            precision=precision,
            calibration_data=inputs,
            quantizer=quantizer,
        )
        fixed = runtime in ("litert", "executorch")
        assert [a.batch_size for a in prepared.artifacts] == ([1, 4] if fixed else [None])
        assert all(a.precision == precision for a in prepared.artifacts)
        assert (prepared.artifacts[0].quantizer is None) == (precision == "fp32")
        slimkit_int8 = precision == "int8" and quantizer == "slimkit"
        if slimkit_int8:  # slimkit's scales in every runtime, held against its integer oracle
            assert {a.quantizer for a in prepared.artifacts} == {"slimkit"}
            assert prepared.reference_name == "slimkit integer reference"
            assert prepared.lsb is not None and prepared.lsb > 0
        elif precision == "int8":
            assert "slimkit" not in {a.quantizer for a in prepared.artifacts}
        reference = prepared.reference(inputs)
        assert reference.shape == (len(inputs), 10)
        for artifact in prepared.artifacts:
            if artifact.path is None:  # PyTorch int8: the simulated model itself
                assert prepared.in_memory is not None
                runner = PyTorchRunner.from_model(prepared.in_memory)
            else:
                runner = load_runtime(runtime, artifact.path)
            out = predict_batches(runner.run, inputs)
            parity = compare_logits(reference, out, lsb=prepared.lsb)
            assert parity.argmax_agreement >= 0.875
            if slimkit_int8:
                assert parity.within_1_lsb is not None and parity.within_1_lsb >= 0.999
    with pytest.raises(ConfigError, match="needs calibration_data"):
        prepare_for_runtime(tiny, runtime, tmp_path, stem="t", precision="int8")


def test_slimkit_int8_falls_back_to_the_runtime_quantizer_with_a_note(tmp_path: Path) -> None:
    # a ViT: slimkit's int8 runs it in PyTorch and ONNX Runtime (float islands between Q/DQ),
    # but the PT2E bridge to LiteRT carries CNN ops only, so LiteRT gets its own quantizer
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    pytest.importorskip("executorch", reason="PT2E (torchao) comes with ExecuTorch")
    torch.manual_seed(0)
    vit = create_model("vit_small", input_shape=(1, 8, 8), patch_size=4).eval()
    x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    for runtime in ("pytorch", "onnxruntime"):
        prepared = prepare_for_runtime(
            vit, runtime, tmp_path, stem="vit", precision="int8", calibration_data=x
        )
        assert prepared.artifacts[0].quantizer == "slimkit"
        assert prepared.reference_name == "slimkit integer reference"
    prepared = prepare_for_runtime(
        vit, "litert", tmp_path, stem="vit", batch_sizes=(8,), precision="int8", calibration_data=x
    )
    assert prepared.artifacts[0].quantizer == "litert-pt2e"
    assert any("cannot be carried to litert" in note for note in prepared.notes)
    out = load_runtime("litert", prepared.artifacts[0].path).run(x[:8])
    assert compare_logits(prepared.reference(x[:8]), out).argmax_agreement >= 0.875


def test_a_given_slimkit_int8_model_is_carried_instead_of_calibrating_again(
    tiny: torch.nn.Module, inputs: np.ndarray, tmp_path: Path
) -> None:
    from slimkit.techniques.quantize import quantize_static, run_reference

    # calibrated on a tenth of the range of the inputs given below: other scales than those
    # calibration_data would give, so the files show which calibration they carry
    given = quantize_static(tiny, torch.from_numpy(inputs[:32] * 0.1))
    prepared = prepare_for_runtime(
        tiny,
        "onnxruntime",
        tmp_path,
        stem="tiny",
        precision="int8",
        calibration_data=inputs,
        quantized=given,
    )
    expected = run_reference(given.graph, inputs)
    np.testing.assert_array_equal(prepared.reference(inputs), expected)
    assert prepared.lsb == float(given.graph.qparams[given.graph.output].scale[0])
    assert prepared.artifacts[0].path is not None
    out = load_runtime("onnxruntime", prepared.artifacts[0].path).run(inputs)
    within = compare_logits(expected, out, lsb=prepared.lsb).within_1_lsb
    assert within is not None and within >= 0.999
    own = prepare_for_runtime(
        tiny, "pytorch", tmp_path, stem="own", precision="int8", calibration_data=inputs
    )
    assert own.lsb != prepared.lsb  # calibrating here would have given other scales

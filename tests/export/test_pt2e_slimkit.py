"""slimkit's own int8 scales carried into LiteRT, ExecuTorch and TFLite Micro through PT2E."""

from __future__ import annotations

import copy
import operator
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.errors import ConfigError
from slimkit.export import export, quantize_pt2e
from slimkit.export.pt2e_slimkit import integer_outputs, slimkit_pt2e
from slimkit.measure import compare_logits
from slimkit.models import create_model
from slimkit.runtime import load_runtime, predict_batches
from slimkit.techniques.quantize import StaticInt8Config, quantize_static, run_reference
from slimkit.techniques.quantize.model import integer_weight

pytest.importorskip("executorch", reason="PT2E (torchao) comes with ExecuTorch")

SHAPE = (1, 12, 12)
EDGE = [("tflite", "litert", "ai_edge_litert"), ("pte", "executorch", "executorch")]


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).random((128, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def quantized(inputs: np.ndarray) -> torch.nn.Module:
    """MobileNetV2-style: depthwise convs, residual adds, ReLU6, global average pooling; with
    CLE and bias correction so that slimkit's weights differ from the float model's."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v2_small", input_shape=SHAPE, num_classes=10).eval()
    with torch.no_grad():  # non-trivial batch norm statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    config = StaticInt8Config(
        calibration="mse", cross_layer_equalization=True, bias_correction=True
    )
    return quantize_static(model, torch.from_numpy(inputs), config)


def _weight_nodes(graph: torch.fx.GraphModule) -> list[np.ndarray]:
    """The int8 weights the PT2E graph quantizes, in graph order (constant-folded)."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    folded = copy.deepcopy(graph)
    constant_fold(folded, _quant_node_constraint)
    weights = []
    for node in folded.graph.nodes:
        if node.op == "get_attr":
            value = operator.attrgetter(str(node.target))(folded)
            if isinstance(value, torch.Tensor) and value.dtype == torch.int8:
                weights.append(value.numpy().astype(np.int64))
    return weights


def test_the_graph_carries_slimkit_scales_and_weights(
    quantized: torch.nn.Module, inputs: np.ndarray
) -> None:
    graph = slimkit_pt2e(quantized)
    assert graph.slimkit_quantizer == "slimkit"
    # every int8 weight of the graph is one of slimkit's integer weights, all of them present
    ops = [op for op in quantized.graph.ops if op.kind in ("conv", "linear")]
    mine = sorted((integer_weight(op) for op in ops), key=lambda w: (w.shape, w.sum()))
    theirs = sorted(_weight_nodes(graph), key=lambda w: (w.shape, w.sum()))
    assert len(mine) == len(theirs) == len(ops)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    # and every activation scale of the graph is one of slimkit's
    scales = {
        round(float(node.args[1]), 12)
        for node in graph.graph.nodes
        if node.op == "call_function" and "quantize_per_tensor" in str(node.target)
    }
    slimkit_scales = {round(float(p.scale[0]), 12) for p in quantized.graph.qparams.values()}
    assert scales and scales <= {round(float(np.float32(s)), 12) for s in slimkit_scales} | (
        slimkit_scales
    )
    # the PT2E graph computes slimkit's simulated model to within one output step
    x = torch.from_numpy(inputs)
    lsb = float(quantized.graph.qparams[quantized.graph.output].scale[0])
    parity = compare_logits(quantized(x).numpy(), graph(x).detach().numpy(), lsb=lsb)
    assert parity.within_1_lsb is not None and parity.within_1_lsb >= 0.999


@pytest.mark.parametrize(("fmt", "runtime", "module"), EDGE)
def test_edge_runtimes_run_slimkit_int8_within_one_step(
    fmt: str,
    runtime: str,
    module: str,
    quantized: torch.nn.Module,
    inputs: np.ndarray,
    tmp_path: Path,
) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed")
    result = export(quantized, tmp_path / f"m.{fmt}", format=fmt, batch_size=16)
    assert result.quantizer == "slimkit"
    assert result.delegation is not None and result.delegation.all_delegated
    out = predict_batches(load_runtime(runtime, result.path, threads=1).run, inputs)
    graph = quantized.graph
    lsb = float(graph.qparams[graph.output].scale[0])
    parity = compare_logits(run_reference(graph, inputs), out, lsb=lsb)
    assert parity.within_1_lsb is not None and parity.within_1_lsb >= 0.999
    assert parity.argmax_agreement >= 0.99


def test_tflite_micro_runs_slimkit_int8_within_one_step(
    quantized: torch.nn.Module, inputs: np.ndarray, tmp_path: Path
) -> None:
    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed")
    result = export(quantized, tmp_path / "m.tflite", format="tflite-micro")
    assert result.quantizer == "slimkit"
    out = predict_batches(load_runtime("tflite-micro", result.path).run, inputs[:32])
    graph = quantized.graph
    # compare on the integer grid: the int8 outputs TFLite Micro wrote vs slimkit's integers
    params = graph.qparams[graph.output]
    zero = int(params.zero_point[0]) - (128 if params.dtype == "uint8" else 0)
    theirs = np.rint(out / float(params.scale[0])).astype(np.int64) + zero
    mine = integer_outputs(graph, inputs[:32])
    assert np.mean(np.abs(theirs - mine) <= 1) >= 0.999
    assert mine.min() >= -128 and mine.max() <= 127


def test_quantize_pt2e_slimkit_label_calibrates_a_float_model(inputs: np.ndarray) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=SHAPE, channels=[4, 8], hidden=[16, 16]).eval()
    graph = quantize_pt2e(model, inputs, quantizer="slimkit")
    assert graph.slimkit_quantizer == "slimkit"
    reference = quantize_static(model, torch.from_numpy(inputs))
    lsb = float(reference.graph.qparams[reference.graph.output].scale[0])
    x = torch.from_numpy(inputs)
    parity = compare_logits(reference(x).numpy(), graph(x).detach().numpy(), lsb=lsb)
    assert parity.within_1_lsb is not None and parity.within_1_lsb >= 0.999
    assert model.training is False


def test_a_model_slimkit_cannot_carry_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="slimkit QuantizedModel"):
        slimkit_pt2e(create_model("mlp", input_shape=SHAPE, hidden=[8]))

"""Post-training static int8: accuracy, the integer reference, real int8 kernels in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.export.onnx_qdq import optimized_op_types
from slimkit.models import create_model
from slimkit.runtime import load_runtime
from slimkit.techniques import compress, config_from_dict, config_to_dict
from slimkit.techniques.quantize import (
    QuantizedModel,
    StaticInt8Config,
    quantize_static,
    run_integer,
    run_reference,
)
from slimkit.train import evaluate

FLOAT_OPS = {"Conv", "Gemm", "MatMul", "Add"}


def _lsb_error(a: np.ndarray, b: np.ndarray, model: QuantizedModel) -> np.ndarray:
    scale = float(model.graph.qparams[model.graph.output].scale[0])
    return np.abs(a - b) / scale


@pytest.mark.parametrize(
    "calibration", ["minmax", "moving_average", "percentile", "mse", "entropy"]
)
def test_every_calibration_keeps_digits_accuracy(
    trained_lenet: nn.Module, digits: Dataset, calibration: str
) -> None:
    qmodel = compress(trained_lenet, [StaticInt8Config(calibration=calibration)], data=digits)
    assert isinstance(qmodel, QuantizedModel)
    _, fp32 = evaluate(trained_lenet, digits.test)
    _, int8 = evaluate(qmodel, digits.test)
    assert int8 >= fp32 - 0.02


def test_simulation_matches_the_integer_reference(
    trained_lenet: nn.Module, digits: Dataset
) -> None:
    qmodel = quantize_static(
        trained_lenet, digits.train.x[:256], StaticInt8Config(calibration="mse")
    )
    x = digits.test.x.numpy()
    error = _lsb_error(qmodel(torch.from_numpy(x)).numpy(), run_reference(qmodel.graph, x), qmodel)
    # fixed-point requantization rounds like float rounding except near ties: a 1-LSB difference
    # in a hidden layer can move an output by an LSB or two, rarely
    assert np.mean(error < 0.5) > 0.97
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


def test_onnxruntime_runs_integer_kernels_within_one_lsb(
    residual_net: nn.Module, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    calibration = torch.rand(128, 1, 8, 8)
    config = StaticInt8Config(calibration="minmax", cross_layer_equalization=False)
    qmodel = quantize_static(residual_net, calibration, config)
    path = export(qmodel, tmp_path / "q.onnx").path
    ops = optimized_op_types(path)
    assert ops.get("QLinearConv", 0) == 3 and ops.get("QLinearAdd", 0) == 1
    assert not FLOAT_OPS & set(ops), ops  # no float compute fed by DequantizeLinear
    x = torch.rand(256, 1, 8, 8).numpy()
    ort = load_runtime("onnxruntime", path).run(x)
    error = _lsb_error(ort, run_reference(qmodel.graph, x), qmodel)
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


def test_onnx_int8_lenet_is_smaller_and_agrees(
    trained_lenet: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    big = create_model("lenet5", input_shape=(1, 28, 28)).eval()
    qbig = quantize_static(big, torch.rand(32, 1, 28, 28))
    assert (
        export(big, tmp_path / "f.onnx").file_bytes / export(qbig, tmp_path / "q.onnx").file_bytes
        >= 3.5
    )
    qmodel = quantize_static(trained_lenet, digits.train.x[:256])
    path = export(qmodel, tmp_path / "digits.onnx").path
    x = digits.test.x.numpy()
    ort = load_runtime("onnxruntime", path).run(x)
    reference = run_reference(qmodel.graph, x)
    assert np.mean(ort.argmax(1) == reference.argmax(1)) >= 0.995
    assert np.mean(_lsb_error(ort, reference, qmodel) <= 1.0 + 1e-4) >= 0.999
    assert run_integer(qmodel.graph, x[:4]).dtype == np.int64


def test_bias_correction_and_equalization_keep_accuracy(
    trained_lenet: nn.Module, digits: Dataset
) -> None:
    _, fp32 = evaluate(trained_lenet, digits.test)
    config = StaticInt8Config(
        calibration="minmax", per_channel=False, cross_layer_equalization=True, bias_correction=True
    )
    qmodel = compress(trained_lenet, [config], data=digits)
    assert evaluate(qmodel, digits.test)[1] >= fp32 - 0.02


def test_int8_activations(trained_lenet: nn.Module, digits: Dataset, tmp_path: Path) -> None:
    qmodel = quantize_static(
        trained_lenet, digits.train.x[:128], StaticInt8Config(activation_dtype="int8")
    )
    assert all(p.dtype == "int8" for p in qmodel.graph.qparams.values())
    path = export(qmodel, tmp_path / "s8.onnx").path
    assert not FLOAT_OPS & set(optimized_op_types(path))
    x = digits.test.x.numpy()
    error = _lsb_error(
        load_runtime("onnxruntime", path).run(x), run_reference(qmodel.graph, x), qmodel
    )
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


def test_config_round_trips_through_a_dict() -> None:
    config = StaticInt8Config(calibration="percentile", percentile=99.9, bias_correction=True)
    data = config_to_dict(config)
    assert data["technique"] == "static_int8" and data["version"] == 1
    assert config_from_dict(data) == config
    with pytest.raises(ConfigError, match="has no option"):
        config_from_dict({**data, "bits": 4})


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (torch.zeros(0, 1, 8, 8), "empty"),
        (torch.full((4, 1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(4, 1, 9, 9), r"shape"),
        (torch.zeros(4, 1, 8, 8, dtype=torch.int64), "float"),
    ],
)
def test_bad_calibration_data(
    trained_lenet: nn.Module, calibration: torch.Tensor, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        quantize_static(trained_lenet, calibration)


def test_model_in_training_mode_is_refused() -> None:
    model = create_model("lenet5", input_shape=(1, 8, 8)).train()
    with pytest.raises(ConfigError, match=r"training mode; call model.eval\(\)"):
        quantize_static(model, torch.rand(4, 1, 8, 8))


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="calibration must be one of"):
        StaticInt8Config(calibration="kl")
    with pytest.raises(ConfigError, match="activation_dtype"):
        StaticInt8Config(activation_dtype="int4")


def test_simulated_model_keeps_its_constants_until_a_weight_is_replaced() -> None:
    from slimkit.techniques.quantize.model import run_simulated

    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=(1, 8, 8), channels=[4, 8], hidden=[16, 16]).eval()
    quantized = quantize_static(model, torch.randn(32, 1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    first = quantized(x)
    kept = quantized._constants
    assert torch.equal(quantized(x), first) and quantized._constants is kept  # computed once
    assert torch.equal(first, run_simulated(quantized.graph, x))  # same as recomputing
    # a replaced weight (a new tensor object) is seen: the constants are recomputed
    linear = next(op for op in quantized.graph.ops if op.kind == "linear")
    linear.weight = -linear.weight
    changed = quantized(x)
    assert quantized._constants is not kept
    assert torch.equal(changed, run_simulated(quantized.graph, x))
    assert not torch.equal(changed, first)

"""Dynamic and weight-only int8 linear layers, in PyTorch and in ONNX Runtime."""

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
from slimkit.techniques import compress
from slimkit.techniques.quantize import DynamicInt8Config, Int8Linear, WeightOnlyInt8Config
from slimkit.train import TrainConfig, evaluate, train


@pytest.fixture(scope="module")
def trained_mlp(digits: Dataset) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=digits.input_shape, hidden=[64, 32])
    train(model, digits, TrainConfig(epochs=10, seed=0))
    return model.eval()


def test_dynamic_int8_layer_matches_integer_arithmetic() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 4)
    layer = Int8Linear(linear, mode="dynamic")
    x = torch.randn(3, 16)
    # by hand: uint8 input with the batch's range, int8 weights, int32 products, one rescale
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255
    zero = round(-low / scale)
    q = np.clip(np.rint(x.numpy() / scale) + zero, 0, 255).astype(np.int64)
    acc = (q - zero) @ layer.weight_int8.numpy().astype(np.int64).T
    expected = acc * scale * layer.weight_scale.numpy() + linear.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(layer(x), linear(x), atol=0.1)


@pytest.mark.parametrize(
    ("config", "fused_op"),
    [(DynamicInt8Config(), "DynamicQuantizeMatMul"), (WeightOnlyInt8Config(), "DequantizeLinear")],
)
def test_exported_linear_int8_runs_in_onnxruntime(
    trained_mlp: nn.Module, digits: Dataset, tmp_path: Path, config: object, fused_op: str
) -> None:
    qmodel = compress(trained_mlp, [config])
    assert sum(isinstance(m, Int8Linear) for m in qmodel.modules()) == 3
    _, fp32 = evaluate(trained_mlp, digits.test)
    assert evaluate(qmodel, digits.test)[1] >= fp32 - 0.01
    fp32_file = export(trained_mlp, tmp_path / "f.onnx")
    result = export(qmodel, tmp_path / "q.onnx")
    assert fp32_file.file_bytes / result.file_bytes > 2.0  # a tiny model: graph overhead counts
    assert fused_op in optimized_op_types(result.path)
    x = digits.test.x.numpy()
    ort = load_runtime("onnxruntime", result.path).run(x)
    simulated = qmodel(torch.from_numpy(x)).detach().numpy()
    assert np.mean(ort.argmax(1) == simulated.argmax(1)) >= 0.995
    assert np.abs(ort - simulated).max() < 0.05 * np.abs(simulated).max()


def test_model_without_linear_layers_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ConfigError, match=r"no nn\.Linear layer"):
        compress(model, [DynamicInt8Config()])

"""Quantization-aware training: STE and LSQ gradients, BN freezing, conversion to int8."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.export.onnx_qdq import optimized_op_types
from slimkit.techniques import compress
from slimkit.techniques.quantize import (
    QATConfig,
    QuantizedModel,
    StaticInt8Config,
    convert,
    prepare_qat,
)
from slimkit.techniques.quantize.qat import fake_quantize_ste
from slimkit.train import evaluate


def test_ste_passes_gradients_inside_the_range_only() -> None:
    x = torch.tensor([-3.0, -0.26, 0.0, 0.74, 3.0], requires_grad=True)
    y = fake_quantize_ste(x, torch.tensor(0.5), 0.0, -2, 2)  # representable: [-1, 1]
    assert y.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    y.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_lsq_step_size_gradient() -> None:
    x = torch.tensor([-3.0, 0.3, 0.74, 3.0])
    scale = torch.tensor(0.5, requires_grad=True)
    fake_quantize_ste(x, scale, 0.0, -2, 2).sum().backward()
    # LSQ: qmin - Z below range, round(x/s) - x/s inside, qmax - Z above range
    expected = -2 + (round(0.6) - 0.6) + (round(1.48) - 1.48) + 2
    assert scale.grad is not None and float(scale.grad) == pytest.approx(expected, abs=1e-6)


def test_qat_recovers_digits_accuracy(trained_lenet: nn.Module, digits: Dataset) -> None:
    _, fp32 = evaluate(trained_lenet, digits.test)
    qmodel = compress(trained_lenet, [QATConfig(epochs=2, lr=1e-4)], data=digits)
    assert isinstance(qmodel, QuantizedModel)
    assert evaluate(qmodel, digits.test)[1] >= fp32 - 0.015


def test_relu_outputs_keep_their_zero_point_at_the_lowest_level(
    trained_lenet: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    # the moving-average ranges of a fused ReLU's output start at 0, so that ONNX Runtime fuses
    # conv + ReLU + quantize into one integer kernel (a zero point above it keeps a float Conv)
    qmodel = compress(trained_lenet, [QATConfig(epochs=1, lr=1e-4)], data=digits)
    assert isinstance(qmodel, QuantizedModel)
    relu_ops = [op for op in qmodel.graph.ops if op.activation in ("relu", "relu6")]
    assert relu_ops
    for op in relu_ops:
        params = qmodel.graph.qparams[op.output]
        assert int(params.zero_point[0]) == params.qmin, op.name
    ops = optimized_op_types(export(qmodel, tmp_path / "qat.onnx").path)
    assert ops.get("QLinearConv", 0) == 2 and not {"Conv", "FusedConv", "Gemm"} & set(ops), ops


def test_converted_model_computes_what_qat_simulated(
    trained_lenet: nn.Module, digits: Dataset
) -> None:
    qat = prepare_qat(trained_lenet, digits.train.x[:256], learn_scales=True)
    qat.eval()
    qmodel = convert(qat)
    x = digits.test.x
    with torch.no_grad():
        simulated = qat(x)
    agreement = (simulated.argmax(1) == qmodel(x).argmax(1)).float().mean()
    assert agreement >= 0.99


def test_batch_norm_statistics_freeze_after_the_given_step(residual_net: nn.Module) -> None:
    qat = prepare_qat(residual_net, torch.rand(64, 1, 8, 8))
    layer = next(layer for layer in qat.layers.values() if layer.batch_norm is not None)
    qat.train()
    qat(torch.rand(8, 1, 8, 8))
    moved = layer.batch_norm.running_mean.clone()
    qat.freeze_batch_norms()
    qat.train()  # re-entering training mode must not unfreeze
    qat(torch.rand(8, 1, 8, 8) * 3)
    assert torch.equal(layer.batch_norm.running_mean, moved)
    # with frozen BN, the QAT model and its integer conversion agree
    qat.eval()
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(convert(qat)(x), qat(x), atol=0.2, rtol=0.05)


def test_static_and_qat_configs_compose_in_compress(
    trained_lenet: nn.Module, digits: Dataset
) -> None:
    with pytest.raises(ConfigError, match="needs data"):
        compress(trained_lenet, [QATConfig(epochs=1)])
    with pytest.raises(ConfigError, match="freeze_bn_after_steps"):
        QATConfig(freeze_bn_after_steps=-1)
    assert isinstance(compress(trained_lenet, [StaticInt8Config()], data=digits), QuantizedModel)

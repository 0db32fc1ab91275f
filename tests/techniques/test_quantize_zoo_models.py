"""Static int8 of the zoo's ShuffleNet, vision transformer and sequence transformer (issue 6).

Each model is trained for a few hundred steps (ShuffleNet and ViT on scikit-learn's digits, the
sequence transformer on a keyword-spotting task over byte sequences), quantized, and checked
three ways: the simulated int8 model against the float model (argmax), ONNX Runtime's run of the
QDQ file against slimkit's integer reference executor (within one step of the output scale), and
the ONNX Runtime argmax against the simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset
from slimkit.export import export
from slimkit.export.onnx_qdq import optimized_op_types
from slimkit.models import create_model
from slimkit.runtime import load_runtime
from slimkit.techniques import compress, config_from_dict
from slimkit.techniques.quantize import QuantizedModel, run_reference

SEQUENCE_LENGTH = 16
KEYWORDS = 4


@pytest.fixture(autouse=True)
def _one_thread(_fixed_threads: None) -> None:
    torch.set_num_threads(1)  # many-layer models on a shared 2-core machine: one thread is fastest


def _lsb_error(a: np.ndarray, b: np.ndarray, model: QuantizedModel) -> np.ndarray:
    scale = float(model.graph.qparams[model.graph.output].scale[0])
    return np.abs(a - b) / scale


def keyword_sequences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Byte sequences of printable characters with one keyword byte (200 + class) planted."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(32, 127, (n, SEQUENCE_LENGTH), generator=generator)
    labels = torch.randint(0, KEYWORDS, (n,), generator=generator)
    positions = torch.randint(0, SEQUENCE_LENGTH, (n,), generator=generator)
    ids[torch.arange(n), positions] = 200 + labels
    return (ids.float() / 255).view(n, 1, 1, SEQUENCE_LENGTH), labels


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """A few hundred Adam steps on random batches (seeded); returns the model in eval mode."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(x), (64,), generator=generator)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# name, builder arguments, training steps
CASES: list[tuple[str, dict[str, Any], int]] = [
    ("shufflenet_small", {}, 120),
    ("vit_small", {}, 200),
    ("vit_small", {"attention": "linear"}, 200),
    ("sequence_transformer", {}, 150),
    ("sequence_transformer", {"embedding": "hashed", "attention": "softmax"}, 150),
]


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=[f"{name}-{'-'.join(map(str, kw.values())) or 'default'}" for name, kw, _ in CASES],
)
def trained(
    request: pytest.FixtureRequest, digits: Dataset
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(trained float model, calibration inputs, test inputs, test labels)."""
    name, kwargs, steps = request.param
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if name == "sequence_transformer":
        model = create_model(
            name, input_shape=(1, 1, SEQUENCE_LENGTH), num_classes=KEYWORDS, **kwargs
        )
        x, y = keyword_sequences(1024, seed=0)
        test_x, test_y = keyword_sequences(512, seed=1)
    else:
        model = create_model(name, input_shape=digits.input_shape, **kwargs)
        x, y = digits.train.x, digits.train.y
        test_x, test_y = digits.test.x, digits.test.y
    return fit(model, x, y, steps), x[:256], test_x, test_y


def test_static_int8_keeps_the_float_models_predictions(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    model, calibration, x, y = trained
    config = config_from_dict({"technique": "static_int8"})
    qmodel = compress(model, [config], calibration_data=calibration)
    assert isinstance(qmodel, QuantizedModel)
    with torch.no_grad():
        fp32, int8 = model(x).argmax(1), qmodel(x).argmax(1)
    accuracy = (fp32 == y).float().mean().item()
    assert accuracy >= 0.85, accuracy  # a trained model: the check below means something
    assert (int8 == fp32).float().mean().item() >= 0.97
    assert (int8 == y).float().mean().item() >= accuracy - 0.02


def test_onnxruntime_agrees_with_the_integer_reference(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    model, calibration, x, _ = trained
    qmodel = compress(
        model, [config_from_dict({"technique": "static_int8"})], calibration_data=calibration
    )
    assert isinstance(qmodel, QuantizedModel)
    path = export(qmodel, tmp_path / "q.onnx").path
    inputs = x.numpy()
    ort = load_runtime("onnxruntime", path).run(inputs)
    reference = run_reference(qmodel.graph, inputs)
    assert np.mean(_lsb_error(ort, reference, qmodel) <= 1.0 + 1e-4) >= 0.999
    with torch.no_grad():
        simulated = qmodel(x).numpy()
    assert np.mean(ort.argmax(1) == simulated.argmax(1)) >= 0.99
    # convolutions, linear layers and products of activations run on integer kernels
    ops = optimized_op_types(path)
    assert not {"Conv", "Gemm", "MatMul"} & set(ops), ops
    assert ops.get("QLinearConv", 0) + ops.get("QGemm", 0) >= 2, ops
    matmuls = sum(op.kind == "matmul" for op in qmodel.graph.ops)
    assert ops.get("QLinearMatMul", 0) == matmuls, ops


def test_hard_swish_and_squeeze_excite_quantize(
    digits: Dataset, randomize_batch_norms: Callable[..., nn.Module], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = create_model(
        "mobilenet_v2_small", input_shape=digits.input_shape, activation="hardswish", se_ratio=0.25
    )
    model = randomize_batch_norms(model).eval()
    qmodel = compress(
        model,
        [config_from_dict({"technique": "static_int8"})],
        calibration_data=digits.train.x[:256],
    )
    assert isinstance(qmodel, QuantizedModel)
    kinds = {op.kind for op in qmodel.graph.ops}
    assert {"hardswish", "hardsigmoid", "mul"} <= kinds
    x = digits.test.x
    with torch.no_grad():
        assert (qmodel(x).argmax(1) == model(x).argmax(1)).float().mean().item() >= 0.9
    path = export(qmodel, tmp_path / "se.onnx").path
    ort = load_runtime("onnxruntime", path).run(x.numpy())
    reference = run_reference(qmodel.graph, x.numpy())
    assert np.mean(_lsb_error(ort, reference, qmodel) <= 1.0 + 1e-4) >= 0.999

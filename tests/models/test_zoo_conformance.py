"""The conformance suite of the model zoo: every registered model builds at its size, learns from
training steps, counts, and exports to ONNX with parity in ONNX Runtime.

Models meant for 224x224 counting (``mobilenet_v1``, ``mobilenet_v2``) take the training step at a
quarter width on 32x32 RGB inputs (the same code, a fraction of the time) and are exported by
``tests/export/test_onnx_export.py``, which exports every registered model at 8x8. Variants that
switch layers (linear attention, hashed embeddings, squeeze-excite) take the training step too;
their layers' export is checked in ``tests/layers/test_layer_export.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimkit.export import export
from slimkit.measure import count_costs, count_parameters
from slimkit.models import create_model, list_models
from slimkit.runtime import load_runtime

MNIST_SHAPE = (1, 28, 28)
COUNTING_ONLY = ("mobilenet_v1", "mobilenet_v2")
# name -> (input shape, builder arguments) where the defaults are not the right test
SUITE_SETTINGS: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {
    "mobilenet_v1": ((3, 32, 32), {"width_multiplier": 0.25}),
    "mobilenet_v2": ((3, 32, 32), {"width_multiplier": 0.25}),
}
VARIANTS: list[tuple[str, tuple[int, int, int], dict[str, Any]]] = [
    ("vit_small", MNIST_SHAPE, {"attention": "linear"}),
    ("sequence_transformer", (1, 1, 64), {"embedding": "hashed", "attention": "softmax"}),
    ("sequence_transformer", (3, 4, 4), {"embedding": "full"}),
    ("mobilenet_v2_small", MNIST_SHAPE, {"activation": "hardswish", "se_ratio": 0.25}),
    ("mobilenet_v1_small", (1, 8, 8), {"width_multiplier": 0.5, "depth_multiplier": 2}),
    ("shufflenet_small", MNIST_SHAPE, {"groups": 4, "width_multiplier": 0.5}),
]
REGISTERED = [
    pytest.param(name, *SUITE_SETTINGS.get(name, (MNIST_SHAPE, {})), id=name)
    for name in list_models()
]
WITH_VARIANTS = REGISTERED + [
    pytest.param(name, shape, kwargs, id=f"{name}-{'-'.join(map(str, kwargs.values()))}")
    for name, shape, kwargs in VARIANTS
]


@pytest.mark.parametrize(("name", "shape", "kwargs"), WITH_VARIANTS)
def test_model_learns_from_a_step_and_counts(
    name: str, shape: tuple[int, int, int], kwargs: dict[str, Any]
) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=5, **kwargs)
    x = torch.rand(8, *shape)
    y = torch.arange(8) % 5

    # a training step reaches every parameter and moves it; a few steps lower the loss
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            assert all(
                p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()
            )
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert losses[-1] < losses[0], losses

    cost = count_costs(model, shape)
    assert cost.params == count_parameters(model) == sum(layer.params for layer in cost.layers)
    assert cost.macs > 0 and model.training  # counting leaves the mode alone


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "shape", "kwargs"), [case for case in REGISTERED if case.id not in COUNTING_ONLY]
)
def test_model_exports_with_parity(
    name: str, shape: tuple[int, int, int], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=5, **kwargs)
    with torch.no_grad():  # batch-norm statistics other than the defaults
        model.train()(torch.rand(16, *shape))
    model.eval()
    path = export(model, tmp_path / f"{name}.onnx").path
    runner = load_runtime("onnxruntime", path)
    batch = np.random.default_rng(1).random((3, *shape), dtype=np.float32)
    expected = model(torch.from_numpy(batch)).detach().numpy()
    assert expected.shape == (3, 5)
    np.testing.assert_allclose(runner.run(batch), expected, atol=1e-4, rtol=1e-4)


# every zoo model takes every compression technique: attention, channel shuffle, hard-swish and
# squeeze-excite quantize and prune like any other layer (issue 6)
@pytest.mark.parametrize(
    "technique", ["static_int8", "dynamic_int8", "magnitude_pruning", "channel_pruning"]
)
@pytest.mark.parametrize(("name", "shape", "kwargs"), REGISTERED)
def test_model_is_accepted_by_compression(
    name: str, shape: tuple[int, int, int], kwargs: dict[str, Any], technique: str
) -> None:
    from slimkit.techniques import compress, config_from_dict

    if name in COUNTING_ONLY:
        pytest.skip("224x224 counting model (its small twin is tested)")
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, **kwargs).eval()
    x = torch.rand(8, *shape)
    options = {
        "magnitude_pruning": {"sparsity": 0.5, "epochs": 0},
        "channel_pruning": {"ratio": 0.5, "epochs": 0},
    }.get(technique, {})
    config = config_from_dict({"technique": technique, **options})
    compressed = compress(model, [config], calibration_data=x)
    logits = compressed(x)
    assert logits.shape == (8, 10) and torch.isfinite(logits).all()
    if technique == "channel_pruning":
        assert count_costs(compressed, shape).macs < count_costs(model, shape).macs

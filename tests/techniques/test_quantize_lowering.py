"""The IR beyond convolution networks: integer data movement, matrix products, float islands and
exact token ids, in the simulation, the integer reference executor and ONNX Runtime."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.export.onnx_qdq import optimized_op_types
from slimkit.layers import ChannelShuffle, TransformerBlock
from slimkit.models import create_model
from slimkit.models.transformer import SequenceTransformer
from slimkit.runtime import load_runtime
from slimkit.techniques.quantize import (
    QuantizedModel,
    convert,
    prepare_qat,
    quantize_static,
    run_integer,
    run_reference,
)
from slimkit.techniques.quantize.graph import build_graph, trace
from slimkit.techniques.quantize.ir import FLOAT_ISLANDS, MOVES
from slimkit.techniques.quantize.model import run_float


def _lsb_error(a: np.ndarray, b: np.ndarray, model: QuantizedModel) -> np.ndarray:
    scale = float(model.graph.qparams[model.graph.output].scale[0])
    return np.abs(a - b) / scale


def _integers_of(qmodel: QuantizedModel, tensor: str, x: np.ndarray) -> np.ndarray:
    """The reference executor's integers (or exact values) of one intermediate tensor."""
    graph = copy.copy(qmodel.graph)
    graph.output = tensor
    return run_integer(graph, x)


class ShuffleNetlet(nn.Module):
    """conv → ReLU → channel shuffle → grouped conv → average pool → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(1, 8, 3, padding=1)
        self.shuffle = ChannelShuffle(2)
        self.second = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(8 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(self.shuffle(F.relu(self.first(x))))
        return self.head(self.pool(y).flatten(1))


def test_a_channel_shuffle_moves_integers_with_its_input_scale(tmp_path: Path) -> None:
    torch.manual_seed(0)
    qmodel = quantize_static(ShuffleNetlet().eval(), torch.rand(64, 1, 8, 8))
    graph = qmodel.graph
    moves = [op for op in graph.ops if op.kind in MOVES]
    assert [op.kind for op in moves] == ["reshape", "transpose", "reshape"]
    assert moves[0].attrs["shape"] == [-1, 2, 4, 8, 8]  # the batch dimension stays free
    for op in moves:  # data movement keeps its input's scale and zero point
        assert graph.qparams[op.output] == graph.qparams[op.inputs[0]], op.name
    # the reference moves the integers themselves: channel g·(C/g) + i goes to i·g + g
    x = torch.rand(16, 1, 8, 8).numpy()
    before = _integers_of(qmodel, moves[0].inputs[0], x)
    after = _integers_of(qmodel, moves[-1].output, x)
    expected = before.reshape(16, 2, 4, 8, 8).transpose(0, 2, 1, 3, 4).reshape(16, 8, 8, 8)
    assert np.array_equal(after, expected)
    # ONNX Runtime keeps both convolutions integer across the shuffle
    path = export(qmodel, tmp_path / "shuffle.onnx").path
    ops = optimized_op_types(path)
    assert ops.get("QLinearConv", 0) == 2 and "Conv" not in ops, ops
    error = _lsb_error(load_runtime("onnxruntime", path).run(x), run_reference(graph, x), qmodel)
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


def test_concatenation_shares_one_scale_covering_both_inputs(tmp_path: Path) -> None:
    torch.manual_seed(0)

    class Join(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.small = nn.Conv2d(1, 4, 3, padding=1)
            self.large = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(8 * 64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            joined = torch.cat([self.small(x), 10.0 * self.large(x)], dim=1)
            return self.head(F.relu(joined).flatten(1))

    model = Join().eval()
    qmodel = quantize_static(model, torch.rand(64, 1, 8, 8))
    graph = qmodel.graph
    concat = next(op for op in graph.ops if op.kind == "concat")
    shared = graph.qparams[concat.output]
    assert all(graph.qparams[name] == shared for name in concat.inputs)
    values: dict[str, torch.Tensor] = {}
    run_float(graph, torch.rand(64, 1, 8, 8), lambda op, y: values.__setitem__(op.output, y))
    low = float(shared.scale[0]) * (shared.qmin - int(shared.zero_point[0]))
    high = float(shared.scale[0]) * (shared.qmax - int(shared.zero_point[0]))
    assert low < 0.9 * float(values[concat.output].min())
    assert high > 0.9 * float(values[concat.output].max())
    x = torch.rand(128, 1, 8, 8).numpy()
    path = export(qmodel, tmp_path / "join.onnx").path
    error = _lsb_error(load_runtime("onnxruntime", path).run(x), run_reference(graph, x), qmodel)
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_attention_is_integer_matmuls_between_float_islands(attention: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(TransformerBlock(16, 2, attention=attention), nn.Flatten()).eval()
    calibration = torch.randn(64, 6, 16)
    qmodel = quantize_static(model, calibration)
    graph = qmodel.graph
    kinds = {op.kind for op in graph.ops}
    assert {"matmul", "layer_norm", "gelu", "slice", "transpose", "reshape"} <= kinds
    assert ("softmax" in kinds) == (attention == "softmax")
    assert ("elu" in kinds) == (attention == "linear")
    for op in graph.ops:
        if op.kind == "matmul" or op.kind in FLOAT_ISLANDS:  # own scales, observed
            assert graph.qparams[op.output] is not graph.qparams[op.inputs[0]], op.name
    x = torch.randn(32, 6, 16)
    with torch.no_grad():
        simulated, fp32 = qmodel(x).numpy(), model(x).numpy()
    reference = run_reference(graph, x.numpy())
    assert np.mean(_lsb_error(simulated, reference, qmodel) <= 1.0 + 1e-4) >= 0.999
    assert np.abs(simulated - fp32).max() < 0.25 * np.abs(fp32).max()


def test_token_ids_are_carried_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("sequence_transformer", input_shape=(2, 1, 12)).eval()
    assert isinstance(model, SequenceTransformer)
    x = torch.randint(0, 256, (32, 2, 1, 12)).float() / 255
    qmodel = quantize_static(model, x)
    graph = qmodel.graph
    assert not graph.ops[0].quantized and graph.ops[0].output not in graph.qparams
    embedding = next(op for op in graph.ops if op.kind == "embedding")
    assert embedding.quantized and embedding.weight_qparams is not None
    assert embedding.weight_qparams.per_channel  # one scale per table row
    ids = _integers_of(qmodel, embedding.inputs[0], x.numpy())
    assert ids.dtype == np.int64 and np.array_equal(ids, model.token_ids(x).numpy())
    path = export(qmodel, tmp_path / "sequence.onnx").path
    error = _lsb_error(
        load_runtime("onnxruntime", path).run(x.numpy()), run_reference(graph, x.numpy()), qmodel
    )
    assert np.mean(error <= 1.0 + 1e-4) >= 0.999


class ClassToken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(tokens[:, 0])


class WholeSum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.sum()


class FusedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.scaled_dot_product_attention(x, x, x)[:, 0])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ClassToken(), r"layer 'expand' \(expand\) has no int8 implementation"),
        (WholeSum(), r"layer 'sum_1': int8 sum needs dim="),
        (
            FusedAttention(),
            r"layer 'scaled_dot_product_attention' \(scaled_dot_product_attention\) has no int8",
        ),
    ],
)
def test_what_is_still_unsupported_is_named(model: nn.Module, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_graph(trace(model.eval()), (3, 4))


def test_qat_trains_a_transformer_and_refuses_a_concatenation() -> None:
    torch.manual_seed(0)
    model = create_model("vit_small", input_shape=(1, 8, 8), depth=1)
    x = torch.rand(64, 1, 8, 8)
    qat = prepare_qat(model, x)
    optimizer = torch.optim.Adam(qat.parameters(), lr=1e-3)
    for _ in range(2):
        loss = F.cross_entropy(qat(x), torch.arange(64) % 10)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    qat.eval()
    qmodel = convert(qat)
    with torch.no_grad():
        agreement = (qat(x).argmax(1) == qmodel(x).argmax(1)).float().mean().item()
    assert agreement >= 0.95
    reference = run_reference(qmodel.graph, x.numpy())
    assert np.mean(_lsb_error(qmodel(x).numpy(), reference, qmodel) <= 1.0 + 1e-4) >= 0.999
    shufflenet = create_model("shufflenet_small", input_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match=r"layer 'cat' \(concat\): quantization-aware training"):
        prepare_qat(shufflenet, x)

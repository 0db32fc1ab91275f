"""The slimkit.sparse format: relative indices, bit-exact round trips, rebuilt models, bad files."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import CheckpointError, ConfigError
from slimkit.techniques import compress
from slimkit.techniques.cluster import ClusteringConfig
from slimkit.techniques.prune import (
    MagnitudePruningConfig,
    decode_sparse,
    encode_sparse,
    load_sparse,
    read_sparse,
    save_sparse,
)
from slimkit.techniques.prune.sparse_codec import position_symbols, positions_of
from slimkit.train import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

_VIEWS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16}


def assert_bit_exact(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same keys, dtypes, shapes and bit patterns (so -0.0 ≠ 0.0 and NaN == NaN)."""
    assert list(a) == list(b)
    for key, tensor in a.items():
        other = b[key]
        assert tensor.dtype == other.dtype and tensor.shape == other.shape, key
        view = _VIEWS.get(tensor.dtype) or (torch.int16 if tensor.dtype == torch.bfloat16 else None)
        if view is None:
            assert torch.equal(tensor, other), key
        else:
            assert torch.equal(tensor.view(view), other.view(view)), key


def test_relative_indices_with_escapes_by_hand() -> None:
    # d = 2 bits: M = 3. Gaps 1, 3, 17: "1", "3", then 17 = 5 skips of 3 + "2"
    positions = np.array([0, 3, 20])
    symbols = position_symbols(positions, 2)
    assert symbols.tolist() == [1, 3, 0, 0, 0, 0, 0, 2]
    assert positions_of(symbols, 2).tolist() == positions.tolist()
    # d = 1 is a bitmask up to the last stored element
    assert position_symbols(np.array([1, 2, 5]), 1).tolist() == [0, 1, 1, 0, 0, 1]
    rng = np.random.default_rng(0)
    for width in range(1, 13):
        positions = np.flatnonzero(rng.random(5000) < 0.07)
        assert (
            positions_of(position_symbols(positions, width), width).tolist() == positions.tolist()
        )


def awkward_state() -> dict[str, torch.Tensor]:
    """Tensors that break careless encoders: signed zeros, NaN, other dtypes, empty, scalar."""
    generator = torch.Generator().manual_seed(0)
    sparse = torch.randn(40, 50, generator=generator)
    sparse[torch.rand(40, 50, generator=generator) < 0.9] = 0.0
    sparse[0, 0], sparse[0, 1], sparse[39, 49] = -0.0, float("nan"), float("-inf")
    far = torch.zeros(10_000)
    far[[3, 4000, 9999]] = torch.tensor([1.5, -2.0, 1.5])  # gaps far longer than 2^d
    shared = torch.tensor([0.25, -0.5, 0.0, 0.25]).repeat(300)
    return {
        "sparse": sparse,
        "far": far,
        "shared": shared,
        "dense64": torch.randn(7, 3, generator=generator, dtype=torch.float64),
        "half": torch.randn(33, generator=generator).half(),
        "brain": torch.randn(12, generator=generator).bfloat16(),
        "count": torch.tensor(17, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "zeros": torch.zeros(3, 3),
        "scalar": torch.tensor(-0.0),
    }


@pytest.mark.parametrize(
    ("values", "coding", "sparse", "index_bits"),
    [
        *itertools.product(["auto", "raw"], ["fixed", "huffman"], [True], [None]),
        ("auto", "huffman", False, None),
        ("auto", "fixed", True, 1),
        ("auto", "huffman", True, 3),
    ],
)
def test_every_option_round_trips_bit_exact(
    values: str, coding: str, sparse: bool, index_bits: int | None
) -> None:
    state = awkward_state()
    encoding = encode_sparse(
        state, values=values, coding=coding, sparse=sparse, index_bits=index_bits
    )
    decoded, spec, metadata = decode_sparse(encoding.data)
    assert_bit_exact(state, decoded)
    assert spec is None and metadata == {}
    # a stored tensor never takes more than its raw bytes
    for cost in encoding.tensors:
        raw = state[cost.name].numel() * state[cost.name].element_size()
        assert cost.total_bytes <= raw, cost
    assert encoding.payload_bytes == sum(c.total_bytes for c in encoding.tensors)


@pytest.fixture(scope="module")
def deep_compressed(small_mlp: nn.Module, digits: Dataset) -> nn.Module:
    """small_mlp pruned to 85% and clustered to 16 values per layer (no fine-tuning)."""
    configs = [MagnitudePruningConfig(sparsity=0.85), ClusteringConfig(bits=4)]
    return compress(small_mlp, configs, data=digits)


def test_file_rebuilds_the_model_exactly(
    deep_compressed: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    path = tmp_path / "mlp.sparse"
    written = save_sparse(deep_compressed, path, metadata={"note": "test"})
    assert written.path == path and path.stat().st_size == written.file_bytes
    loaded = load_sparse(path)
    assert loaded.spec.to_dict() == deep_compressed.slimkit_spec.to_dict()
    assert loaded.metadata == {"note": "test"}
    assert_bit_exact(deep_compressed.state_dict(), loaded.model.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded.model(digits.test.x), deep_compressed(digits.test.x))
    # and it is much smaller than the dense checkpoint of the same (mostly zero) weights
    dense_file = save_checkpoint(deep_compressed, tmp_path / "mlp.safetensors")
    assert written.file_bytes * 4 < dense_file.stat().st_size


def test_pruned_weights_cost_their_indices_and_values_only(deep_compressed: nn.Module) -> None:
    encoding = encode_sparse(deep_compressed, values="raw", coding="fixed", index_bits=4)
    for cost in encoding.tensors:
        if cost.layout == "sparse":
            symbols = json.loads(_header(encoding.data))["tensors"]
            entry = next(t for t in symbols if t["name"] == cost.name)
            n = entry["positions"]["symbols"]
            assert cost.position_bytes == -(-n * 4 // 8)  # 4 bits per relative index
            assert cost.value_bytes == 4 * cost.stored  # fp32 per stored value
    weights = [c for c in encoding.tensors if c.name.endswith("weight")]
    assert all(c.layout == "sparse" for c in weights)


def _header(data: bytes) -> bytes:
    (length,) = struct.unpack("<I", data[8:12])
    return data[12 : 12 + length]


def test_corrupt_files_are_refused_with_the_reason(
    deep_compressed: nn.Module, tmp_path: Path
) -> None:
    data = encode_sparse(deep_compressed).data
    header = json.loads(_header(data))
    cases = {
        "no marker": (b"NOTSPARS" + data[8:], "not a slimkit.sparse file"),
        "truncated header": (data[:40], "is truncated"),
        "truncated payload": (data[:-10], "is corrupt: blob"),
        "bad json": (
            data[:12] + b"{" * len(_header(data)) + data[12 + len(_header(data)) :],
            "corrupt header",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.sparse"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            read_sparse(path)

    def rewrite(change: dict[str, object]) -> Path:
        text = json.dumps({**header, **change}).encode()
        path = tmp_path / "edited.sparse"
        path.write_bytes(
            data[:8] + struct.pack("<I", len(text)) + text + data[12 + len(_header(data)) :]
        )
        return path

    with pytest.raises(CheckpointError, match="format version 2"):
        read_sparse(rewrite({"version": 2}))
    with pytest.raises(CheckpointError, match="holds no model spec"):
        load_sparse(rewrite({"model_spec": None}))
    wrong_spec = {**header["model_spec"], "kwargs": {"hidden": [8]}}
    with pytest.raises(CheckpointError, match="does not fit model 'mlp'"):
        load_sparse(rewrite({"model_spec": wrong_spec}))
    with pytest.raises(CheckpointError, match="does not exist"):
        read_sparse(tmp_path / "missing.sparse")


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ConfigError, match="coding one of"):
        encode_sparse({"w": torch.ones(3)}, coding="zip")
    with pytest.raises(ConfigError, match=r"index_bits must be None or an int in \[1, 12\]; got 0"):
        encode_sparse({"w": torch.ones(3)}, index_bits=0)
    with pytest.raises(ConfigError, match=r"dtype torch\.complex64"):
        encode_sparse({"w": torch.ones(3, dtype=torch.complex64)})

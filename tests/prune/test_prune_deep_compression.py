"""Deep Compression: prune → cluster → Huffman, and the size accounting of each stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.techniques import compress
from slimkit.techniques.cluster import ClusteringConfig
from slimkit.techniques.prune import (
    STAGES,
    MagnitudePruningConfig,
    compression_stages,
    encode_sparse,
    load_sparse,
    save_sparse,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipeline(small_mlp: nn.Module, digits: Dataset) -> nn.Module:
    """small_mlp pruned to 90% with fine-tuning, then clustered to 16 values per layer, tuned."""
    configs = [
        MagnitudePruningConfig(sparsity=0.9, epochs=3, lr=0.05),
        ClusteringConfig(bits=4, epochs=2, lr=1e-3),
    ]
    return compress(small_mlp, configs, data=digits)


def test_the_pipeline_keeps_accuracy_and_shrinks_each_stage(
    pipeline: nn.Module, small_mlp: nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    from slimkit.train import evaluate

    assert evaluate(pipeline, digits.test)[1] >= evaluate(small_mlp, digits.test)[1] - 0.03
    stages = compression_stages(pipeline)
    payload = [stages.encodings[stage].payload_bytes for stage in STAGES]
    assert payload == sorted(payload, reverse=True) and len(set(payload)) == 4
    sizes = [stages.file_bytes(stage) for stage in STAGES]  # + a JSON header of ~1 KB
    assert stages.fp32_bytes == 4 * sum(p.numel() for p in small_mlp.parameters())
    assert stages.ratio("huffman") == stages.fp32_bytes / sizes[-1]
    assert stages.fp32_bytes / payload[-1] > 12  # 10% of the weights left, ~4 bits each
    # the last stage is exactly the default file, and the file rebuilds the model
    written = save_sparse(pipeline, tmp_path / "dc.sparse")
    assert written.file_bytes == stages.file_bytes("huffman")
    with torch.no_grad():
        x = digits.test.x
        assert torch.equal(load_sparse(written.path).model(x), pipeline(x))  # type: ignore[arg-type]
    summary = json.loads(json.dumps(stages.to_dict()))
    assert summary["stages"]["huffman"]["file_bytes"] == sizes[-1]
    header, rows = stages.table()
    assert len(rows) == len(pipeline.state_dict()) + 2 and len(header) == len(rows[0])


def test_each_stage_costs_what_its_encoding_says(pipeline: nn.Module) -> None:
    stages = compression_stages(pipeline)
    state = pipeline.state_dict()
    for index, (name, tensor) in enumerate(state.items()):
        dense = stages.encodings["dense"].tensors[index]
        pruned = stages.encodings["pruned"].tensors[index]
        clustered = stages.encodings["clustered"].tensors[index]
        huffman = stages.encodings["huffman"].tensors[index]
        assert dense.total_bytes == 4 * tensor.numel() and dense.layout == "dense"
        if not name.endswith("weight"):
            continue
        nonzero = int((tensor != 0).sum())
        assert pruned.layout == "sparse" and pruned.stored == nonzero
        assert pruned.value_bytes == 4 * nonzero  # fp32 per surviving weight
        # clustering: 16 centroids → 4 bits per surviving weight + a 16-entry fp32 codebook
        assert clustered.values == "codebook" and clustered.codebook_bytes == 16 * 4
        assert clustered.value_bytes == math.ceil(nonzero * 4 / 8)
        # Huffman: within one bit per symbol of the entropy of the cluster indices (+ table)
        _, counts = torch.unique(tensor[tensor != 0], return_counts=True)
        p = counts.double().numpy() / nonzero
        entropy_bits = float(-(p * np.log2(p)).sum()) * nonzero
        table = math.ceil(16 * 5 / 8)
        assert huffman.value_bytes <= clustered.value_bytes
        if huffman.value_bytes < clustered.value_bytes:  # Huffman was chosen for this stream
            assert (
                entropy_bits / 8 <= huffman.value_bytes - table <= (entropy_bits + nonzero) / 8 + 1
            )


def test_fixed_index_bits_as_in_the_paper(pipeline: nn.Module) -> None:
    # Han et al. store fully connected relative indices in 5 bits
    stages = compression_stages(pipeline, index_bits=5)
    assert {t.index_bits for t in stages.encodings["pruned"].tensors if t.layout == "sparse"} == {5}
    best = compression_stages(pipeline)  # free choice of width per tensor can only help
    for stage in STAGES:
        assert best.file_bytes(stage) <= stages.file_bytes(stage) + 64  # header digits differ


def test_a_dense_model_gains_nothing_and_loses_nothing(small_mlp: nn.Module) -> None:
    encoding = encode_sparse(small_mlp)
    raw = sum(t.numel() * t.element_size() for t in small_mlp.state_dict().values())
    assert encoding.payload_bytes == raw  # no zeros, no shared values: stored raw

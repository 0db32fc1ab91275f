"""Embeddings: parameter counts, lookups against tables, hashing against plain Python."""

from __future__ import annotations

import pytest
import torch

from slimkit.errors import ConfigError
from slimkit.layers import FactorizedEmbedding, HashedEmbedding, PatchEmbedding, PositionEmbedding
from slimkit.layers.embedding import HASH_PRIME


def test_factorized_embedding_costs_v_e_plus_e_h() -> None:
    vocab, e, h = 1000, 16, 128
    emb = FactorizedEmbedding(vocab, e, h)
    assert sum(p.numel() for p in emb.parameters()) == vocab * e + e * h  # vs vocab * h
    ids = torch.tensor([[3, 999, 0]])
    expected = emb.table.weight[ids] @ emb.projection.weight.T
    assert torch.allclose(emb(ids), expected)


def test_hashed_embedding_sums_the_rows_python_hashing_picks() -> None:
    emb = HashedEmbedding(num_buckets=37, embedding_dim=4, num_hashes=3, seed=5)
    assert sum(p.numel() for p in emb.parameters()) == 37 * 4  # whatever the vocabulary
    ids = torch.tensor([0, 1, 255, 70_000, 2**31 - 1])
    a, b = emb.multipliers.tolist(), emb.offsets.tolist()
    for row, token in zip(emb(ids), ids.tolist(), strict=True):
        buckets = [((ai * token + bi) % HASH_PRIME) % 37 for ai, bi in zip(a, b, strict=True)]
        assert torch.allclose(row, emb.table.weight[buckets].sum(dim=0))
    # the seed defines the hash functions
    assert HashedEmbedding(37, 4, 3, seed=5).multipliers.tolist() == a
    assert HashedEmbedding(37, 4, 3, seed=6).multipliers.tolist() != a


def test_hashed_embedding_spreads_ids_over_the_buckets() -> None:
    buckets = HashedEmbedding(64, 2, num_hashes=1).bucket_ids(torch.arange(6400)).flatten()
    counts = torch.bincount(buckets, minlength=64)
    assert counts.min() > 50 and counts.max() < 150  # 100 per bucket on average


def test_patch_embedding_makes_row_major_tokens_of_each_patch() -> None:
    emb = PatchEmbedding(in_channels=2, patch_size=3, dim=5)
    x = torch.randn(1, 2, 6, 9)
    tokens = emb(x)
    assert tokens.shape == (1, 6, 5)  # (6/3) x (9/3) patches
    weight, bias = emb.projection.weight, emb.projection.bias
    row, col = 1, 2  # token 1 * 3 + 2
    patch = x[0, :, 3 * row : 3 * row + 3, 3 * col : 3 * col + 3]
    expected = (weight * patch).sum(dim=(1, 2, 3)) + bias
    assert torch.allclose(tokens[0, 5], expected, atol=1e-6)


def test_position_embedding_adds_one_vector_per_position() -> None:
    pos = PositionEmbedding(4, 3)
    x = torch.zeros(2, 4, 3)
    assert torch.equal(pos(x)[1], pos.weight)
    with pytest.raises(ConfigError, match="num_positions must be an int >= 1"):
        PositionEmbedding(0, 3)

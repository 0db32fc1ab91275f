"""Embeddings that cost fewer parameters: factorized and hashed; and the ViT patch embedding.

- :class:`FactorizedEmbedding` (Lan et al. 2020, "ALBERT: A Lite BERT for Self-supervised Learning
  of Language Representations", ICLR 2020): a ``V x E`` table followed by an ``E x H`` projection,
  ``V E + E H`` parameters instead of ``V H``.
- :class:`HashedEmbedding` (the hashing trick of Weinberger et al. 2009, "Feature Hashing for Large
  Scale Multitask Learning", with several hash functions into one shared pool as in Svenstrup et
  al. 2017, "Hash Embeddings for Efficient Word Representations"): ids of any vocabulary map
  through ``k`` hash functions into ``B`` buckets and the ``k`` bucket vectors are summed, so the
  table has ``B x E`` parameters whatever the vocabulary size. (Svenstrup et al.'s per-id
  importance weights are left out: they would cost parameters per id again.)
- :class:`PatchEmbedding` and :class:`PositionEmbedding` (Dosovitskiy et al. 2021, "An Image is
  Worth 16x16 Words", ICLR 2021): non-overlapping patches projected to tokens, plus learned
  positions.

Lookups cost no multiply-adds; projections are ``nn.Linear``/``nn.Conv2d`` and are counted as such.

Example:
    >>> import torch
    >>> emb = FactorizedEmbedding(1000, 16, 128)
    >>> emb(torch.tensor([[1, 2, 3]])).shape, sum(p.numel() for p in emb.parameters())
    (torch.Size([1, 3, 128]), 18048)
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers.conv import check_channels

HASH_PRIME = 2_147_483_647  # 2^31 - 1: products of ids < 2^31 and factors < 2^31 fit in int64


class FactorizedEmbedding(nn.Module):
    """ALBERT's factorized embedding: ``ids → (V x E table) → (E x H linear, no bias)``.

    Args:
        num_embeddings: vocabulary size ``V``.
        embedding_dim: width ``E`` of the table (small).
        hidden_dim: width ``H`` of the output tokens.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, hidden_dim: int) -> None:
        super().__init__()
        check_channels(
            num_embeddings=num_embeddings, embedding_dim=embedding_dim, hidden_dim=hidden_dim
        )
        self.table = nn.Embedding(num_embeddings, embedding_dim)
        self.projection = nn.Linear(embedding_dim, hidden_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: (...) int64 -> (..., E) -> (..., H)
        return self.projection(self.table(ids))


class HashedEmbedding(nn.Module):
    """Sum of ``num_hashes`` rows of a ``num_buckets x embedding_dim`` table, chosen by hashing.

    Hash ``i`` of id ``x`` is ``((a_i x + b_i) mod P) mod B`` with ``P = 2^31 - 1`` and ``a_i``,
    ``b_i`` drawn from ``seed`` (a universal hash family). Ids must lie in ``[0, 2^31)``.

    Args:
        num_buckets: rows ``B`` of the shared table.
        embedding_dim: width of the embeddings.
        num_hashes: hash functions ``k`` per id (two ids collide in all of them rarely).
        seed: seed of the hash functions (part of the model's definition).
    """

    multipliers: torch.Tensor
    offsets: torch.Tensor

    def __init__(
        self, num_buckets: int, embedding_dim: int, num_hashes: int = 2, seed: int = 0
    ) -> None:
        super().__init__()
        check_channels(num_buckets=num_buckets, embedding_dim=embedding_dim, num_hashes=num_hashes)
        if not 0 <= seed < 2**63:
            raise ConfigError(f"seed must be an int in [0, 2^63); got {seed!r}")
        generator = torch.Generator().manual_seed(seed)
        self.num_buckets = num_buckets
        self.table = nn.Embedding(num_buckets, embedding_dim)
        multipliers = torch.randint(1, HASH_PRIME, (num_hashes,), generator=generator)
        offsets = torch.randint(0, HASH_PRIME, (num_hashes,), generator=generator)
        self.register_buffer("multipliers", multipliers, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)

    def bucket_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The ``k`` bucket ids of every id: ``(...)`` → ``(..., k)``."""
        hashed = (ids.unsqueeze(-1) * self.multipliers + self.offsets) % HASH_PRIME
        return hashed % self.num_buckets

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: (...) int64 -> buckets (..., k) -> rows (..., k, E) -> sum (..., E)
        return self.table(self.bucket_ids(ids)).sum(dim=-2)


class PatchEmbedding(nn.Module):
    """Split ``(N, C, H, W)`` into ``p x p`` patches and project each to a ``dim``-wide token.

    A convolution with kernel and stride ``p``: the tokens come out as ``(N, H/p · W/p, dim)`` in
    row-major order.

    Args:
        in_channels: image channels ``C``.
        patch_size: patch side ``p``.
        dim: token width.
    """

    def __init__(self, in_channels: int, patch_size: int, dim: int) -> None:
        super().__init__()
        check_channels(in_channels=in_channels, patch_size=patch_size, dim=dim)
        self.projection = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, dim, H/p, W/p) -> (N, H/p · W/p, dim)
        return self.projection(x).flatten(2).transpose(1, 2)


class PositionEmbedding(nn.Module):
    """Adds a learned vector per position to ``(N, L, dim)`` tokens (initialised N(0, 0.02²)).

    Args:
        num_positions: sequence length ``L``.
        dim: token width.
    """

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        check_channels(num_positions=num_positions, dim=dim)
        self.weight = nn.Parameter(torch.randn(num_positions, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, L, dim) -> (N, L, dim)
        return x + self.weight

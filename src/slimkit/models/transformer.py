"""Small transformers: a vision transformer for 28x28 images and a sequence (text) classifier.

Both keep the registry's contract, ``(N, C, H, W)`` float32 in and ``(N, classes)`` logits out, so
they train, export and run like every other model; both take ``attention="softmax"`` (Vaswani et
al. 2017) or ``"linear"`` (Katharopoulos et al. 2020, linear in the sequence length).

- ``vit_small`` (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", ICLR 2021): ``p x p``
  patches → tokens with learned positions → pre-norm transformer blocks → mean over tokens →
  linear classifier. 28x28 with ``patch_size=4`` gives 49 tokens, 8x8 gives 4.
- ``sequence_transformer``: reads an input as a sequence of ``L = H · W`` positions (row-major)
  whose ``C`` values in [0, 1] are quantized to ``vocab_size`` levels, i.e. token ids, inside the
  model. Text is bytes scaled by 1/255 in an ``(N, 1, 1, L)`` tensor (:func:`encode_text`), which
  round-trips exactly with the default vocabulary of 256; an image becomes a sequence of pixel
  tokens (784 on MNIST, where linear attention pays). The ids are embedded with a full,
  factorized (ALBERT) or hashed table, one table per channel with the channels' vectors summed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimkit.errors import check_choice
from slimkit.layers import (
    FactorizedEmbedding,
    HashedEmbedding,
    PatchEmbedding,
    PositionEmbedding,
    TransformerBlock,
)
from slimkit.models.registry import register_model

EMBEDDINGS = ("full", "factorized", "hashed")


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return value


class VisionTransformer(nn.Module):
    """Patch embedding + positions → transformer blocks → layer norm → mean over tokens → linear.

    Args:
        input_shape: (C, H, W); H and W must be multiples of ``patch_size``.
        num_classes: number of output logits.
        patch_size: side of the square patches.
        dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        attention: ``"softmax"`` or ``"linear"``.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        patch_size: int = 4,
        dim: int = 32,
        depth: int = 3,
        num_heads: int = 2,
        mlp_ratio: float = 2.0,
        attention: str = "softmax",
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        _check_positive_int("patch_size", patch_size)
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"input {height}x{width} is not a whole number of {patch_size}x{patch_size} "
                f"patches; pass a patch_size that divides both sides"
            )
        tokens = (height // patch_size) * (width // patch_size)
        self.patch_embedding = PatchEmbedding(channels, patch_size, dim)
        self.position = PositionEmbedding(tokens, dim)
        self.blocks = nn.Sequential(
            *[
                TransformerBlock(dim, num_heads, mlp_ratio, attention)
                for _ in range(_check_positive_int("depth", depth))
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> tokens (N, L, dim) -> blocks (N, L, dim) -> mean (N, dim) -> logits
        tokens = self.blocks(self.position(self.patch_embedding(x)))
        return self.classifier(self.norm(tokens).mean(dim=1))


class SequenceTransformer(nn.Module):
    """Quantize values to token ids → embedding + positions → transformer blocks → mean → linear.

    Args:
        input_shape: (C, H, W), read as ``H · W`` positions of ``C`` values each.
        num_classes: number of output logits.
        vocab_size: quantization levels of a value in [0, 1] (256: bytes).
        embedding: ``"full"`` (a ``V x dim`` table), ``"factorized"`` (``V x E`` then ``E x dim``)
            or ``"hashed"`` (``hash_buckets x dim``, ``num_hashes`` hashes per id).
        embedding_dim: ``E`` of the factorized embedding.
        hash_buckets: rows of the hashed embedding's table.
        num_hashes: hash functions of the hashed embedding.
        dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        attention: ``"softmax"`` or ``"linear"``.
    """

    channel_offsets: torch.Tensor

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        vocab_size: int = 256,
        embedding: str = "factorized",
        embedding_dim: int = 8,
        hash_buckets: int = 64,
        num_hashes: int = 2,
        dim: int = 32,
        depth: int = 2,
        num_heads: int = 2,
        mlp_ratio: float = 2.0,
        attention: str = "linear",
    ) -> None:
        super().__init__()
        check_choice("embedding", embedding, EMBEDDINGS)
        channels, height, width = input_shape
        self.vocab_size = _check_positive_int("vocab_size", vocab_size)
        ids = channels * vocab_size  # each channel has its own range of ids
        self.embedding: nn.Module
        if embedding == "full":
            self.embedding = nn.Embedding(ids, dim)
        elif embedding == "factorized":
            self.embedding = FactorizedEmbedding(ids, embedding_dim, dim)
        else:
            self.embedding = HashedEmbedding(hash_buckets, dim, num_hashes)
        offsets = torch.arange(channels).view(1, channels, 1) * vocab_size
        self.register_buffer("channel_offsets", offsets, persistent=False)
        self.position = PositionEmbedding(height * width, dim)
        self.blocks = nn.Sequential(
            *[
                TransformerBlock(dim, num_heads, mlp_ratio, attention)
                for _ in range(_check_positive_int("depth", depth))
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def token_ids(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` values in [0, 1] → ``(N, C, H·W)`` int64 token ids."""
        levels = torch.round(x.clamp(0.0, 1.0) * (self.vocab_size - 1)).to(torch.int64)
        return levels.flatten(2) + self.channel_offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> ids (N, C, L) -> embeddings (N, C, L, dim) -> summed (N, L, dim)
        tokens = self.position(self.embedding(self.token_ids(x)).sum(dim=1))
        tokens = self.blocks(tokens)  # (N, L, dim)
        return self.classifier(self.norm(tokens).mean(dim=1))


def encode_text(texts: Sequence[str | bytes], length: int) -> torch.Tensor:
    """UTF-8 bytes of each text, cut or zero-padded to ``length``, as ``(N, 1, 1, length)`` / 255.

    The input ``sequence_transformer`` expects for text (with ``input_shape=(1, 1, length)``).

    Example:
        >>> encode_text(["hi"], 3).mul(255).round().flatten().tolist()
        [104.0, 105.0, 0.0]
    """
    _check_positive_int("length", length)
    rows = []
    for text in texts:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        padded = data[:length].ljust(length, b"\0")
        rows.append(torch.tensor(list(padded), dtype=torch.float32))
    return (torch.stack(rows) / 255.0).view(len(rows), 1, 1, length)


@register_model(
    "vit_small",
    "Small vision transformer for 28x28 inputs (Dosovitskiy et al. 2021); softmax or linear",
)
def vit_small(
    input_shape: tuple[int, int, int],
    num_classes: int,
    patch_size: int = 4,
    dim: int = 32,
    depth: int = 3,
    num_heads: int = 2,
    mlp_ratio: float = 2.0,
    attention: str = "softmax",
) -> nn.Module:
    """Small ViT: 4x4 patches, width 32, 3 blocks of 2 heads, mean pooling."""
    return VisionTransformer(
        input_shape, num_classes, patch_size, dim, depth, num_heads, mlp_ratio, attention
    )


@register_model(
    "sequence_transformer",
    "Sequence/text classifier: values as token ids, factorized or hashed embedding, attention",
)
def sequence_transformer(
    input_shape: tuple[int, int, int],
    num_classes: int,
    vocab_size: int = 256,
    embedding: str = "factorized",
    embedding_dim: int = 8,
    hash_buckets: int = 64,
    num_hashes: int = 2,
    dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    mlp_ratio: float = 2.0,
    attention: str = "linear",
) -> nn.Module:
    """Sequence classifier over ``H · W`` tokens (text: ``input_shape=(1, 1, length)``)."""
    return SequenceTransformer(
        input_shape,
        num_classes,
        vocab_size,
        embedding,
        embedding_dim,
        hash_buckets,
        num_hashes,
        dim,
        depth,
        num_heads,
        mlp_ratio,
        attention,
    )

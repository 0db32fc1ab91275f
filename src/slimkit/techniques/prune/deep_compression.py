"""The size accounting of Deep Compression: what each stage saves, per layer and in total.

Han et al. 2016 ("Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR) chain three stages and report the size after each (their
Table 2-5). slimkit runs the stages as techniques and the file format, and measures them here:

1. ``dense``: every tensor as raw fp32 (the reference: 4 bytes per parameter);
2. ``pruned``: the non-zero weights as raw fp32 plus their relative indices (fixed width);
3. ``clustered``: the same positions, each value a fixed-width index into the layer's codebook
   (``b`` bits for ``2^b`` centroids) plus the codebook, wherever that is smaller than raw
   values (biases and unclustered layers stay raw);
4. ``huffman``: both index streams Huffman-coded (plus their code tables).

Each stage is the real ``slimkit.sparse`` encoding of the model with that stage's options, so the
numbers are bytes a file really has. The pipeline itself::

    pruned = compress(model, [MagnitudePruningConfig(...), ClusteringConfig(bits=6, ...)], data=d)
    save_sparse(pruned, "model.sparse")      # stage 4 on disk
    compression_stages(pruned).table()       # the four stages, per layer

Computing the ``pruned`` stage on a clustered model gives the same positions and raw values as
before clustering (clustering keeps zeros at zero), so one model yields every stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.techniques.prune.sparse_format import SparseEncoding, encode_sparse

STAGES: dict[str, dict[str, Any]] = {
    "dense": {"values": "raw", "coding": "fixed", "sparse": False},
    "pruned": {"values": "raw", "coding": "fixed", "sparse": True},
    "clustered": {"values": "auto", "coding": "fixed", "sparse": True},
    "huffman": {"values": "auto", "coding": "huffman", "sparse": True},
}


@dataclass(frozen=True)
class CompressionStages:
    """Bytes per tensor and per file at each Deep Compression stage.

    Attributes:
        parameters: number of values in all the stored tensors.
        encodings: stage name → the encoding of the whole model at that stage.
    """

    parameters: int
    encodings: Mapping[str, SparseEncoding]

    @property
    def fp32_bytes(self) -> int:
        """Four bytes per value: the fp32 reference of the compression ratio."""
        return 4 * self.parameters

    def file_bytes(self, stage: str) -> int:
        """Bytes of the whole file at ``stage`` (header with the model spec included)."""
        return self.encodings[stage].file_bytes

    def ratio(self, stage: str) -> float:
        """``fp32_bytes / file_bytes(stage)``: how many times smaller than the fp32 weights."""
        return self.fp32_bytes / self.file_bytes(stage)

    def layers(self) -> list[dict[str, Any]]:
        """One row per tensor: its elements, stored values, and payload bytes at every stage."""
        rows = []
        for index, cost in enumerate(self.encodings["dense"].tensors):
            row: dict[str, Any] = {
                "tensor": cost.name,
                "numel": cost.numel,
                "nonzero": self.encodings["pruned"].tensors[index].stored,
            }
            for stage, encoding in self.encodings.items():
                row[f"{stage}_bytes"] = encoding.tensors[index].total_bytes
            huffman = self.encodings["huffman"].tensors[index]
            row["index_bits"] = huffman.index_bits
            row["ratio"] = 4 * cost.numel / max(huffman.total_bytes, 1)
            rows.append(row)
        return rows

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of a printable table: every tensor, then the payload and file totals."""
        header = ["tensor", "numel", "non-zero", *(f"{s} B" for s in STAGES), "ratio"]
        rows = [
            [
                r["tensor"],
                f"{r['numel']:,}",
                f"{r['nonzero']:,}",
                *(f"{r[f'{s}_bytes']:,}" for s in STAGES),
                f"{r['ratio']:.1f}x",
            ]
            for r in self.layers()
        ]
        payload = [self.encodings[s].payload_bytes for s in STAGES]
        files = [self.file_bytes(s) for s in STAGES]
        nonzero = sum(r["nonzero"] for r in self.layers())
        common = [f"{self.parameters:,}", f"{nonzero:,}"]
        rows.append(
            [
                "payload",
                *common,
                *(f"{b:,}" for b in payload),
                f"{self.fp32_bytes / payload[-1]:.1f}x",
            ]
        )
        rows.append(["file", *common, *(f"{b:,}" for b in files), f"{self.ratio('huffman'):.1f}x"])
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: totals and ratios per stage, and the per-tensor rows."""
        return {
            "parameters": self.parameters,
            "fp32_bytes": self.fp32_bytes,
            "stages": {
                stage: {
                    "file_bytes": encoding.file_bytes,
                    "payload_bytes": encoding.payload_bytes,
                    "header_bytes": encoding.header_bytes,
                    "ratio_vs_fp32": self.ratio(stage),
                }
                for stage, encoding in self.encodings.items()
            },
            "layers": self.layers(),
        }


def compression_stages(
    model: nn.Module | Mapping[str, torch.Tensor], *, index_bits: int | None = None
) -> CompressionStages:
    """Encode ``model`` at each Deep Compression stage and account for the bytes.

    Args:
        model: a (pruned, clustered) model or its state dict.
        index_bits: bits per relative index (Han et al.: 5 for fully connected layers, 8 for
            convolutions); ``None`` picks the best width per tensor and stage.

    Example:
        >>> stages = compression_stages(model)  # doctest: +SKIP
        >>> stages.ratio("huffman")  # doctest: +SKIP
        40.2
    """
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    encodings = {
        stage: encode_sparse(model, index_bits=index_bits, **options)
        for stage, options in STAGES.items()
    }
    return CompressionStages(sum(t.numel() for t in state.values()), encodings)

"""The ``slimkit.sparse`` file: pruned (and clustered) weights stored so that zeros cost nothing.

A dense checkpoint of a 90%-sparse model is as large as the dense model: zeros are stored like any
other number. This format stores each tensor with :mod:`~slimkit.techniques.prune.sparse_codec`
(relative indices of the non-zero elements, shared values, Huffman coding: the storage of Deep
Compression, Han et al. 2016) and rebuilds the exact state dict, and the model, from the file
alone. Nothing in it is executed or unpickled.

Layout (integers little-endian)::

    bytes 0-7     magic b"SLIMSPRS"
    bytes 8-11    uint32 H: length of the header
    bytes 12..    header: UTF-8 JSON {"format": "slimkit.sparse", "version": 1,
                  "model_spec": {...} | null, "metadata": {...}, "tensors": [entry, ...]}
    then          payload: the blobs, each referenced from the header as [offset, length]
                  relative to the payload's first byte

A tensor entry is ``{"name", "dtype", "shape", "layout": "dense" | "sparse", "count",
"positions"?: {"bits", "symbols", "stream"}, "values": {"kind": "raw", "data"} | {"kind":
"codebook", "size", "codebook", "stream"}}``; a stream is ``{"coding": "fixed", "bits", "data"}``
or ``{"coding": "huffman", "alphabet", "lengths", "n_bits", "data"}``.

Example:
    >>> from slimkit.models import create_model
    >>> model = create_model("lenet300_100", input_shape=(1, 28, 28))
    >>> info = save_sparse(model, "model.sparse")  # doctest: +SKIP
    >>> restored = load_sparse("model.sparse").model  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import CheckpointError, ModelError, SlimkitError
from slimkit.io import write_atomic
from slimkit.models import ModelSpec, build_model, model_spec_of
from slimkit.techniques.prune.sparse_codec import (
    Blobs,
    TensorCost,
    decode_tensor,
    encode_tensor,
)
from slimkit.train import Checkpoint

MAGIC = b"SLIMSPRS"
FORMAT = "slimkit.sparse"
VERSION = 1
_PREFIX = len(MAGIC) + 4


@dataclass(frozen=True)
class SparseEncoding:
    """A model encoded in the ``slimkit.sparse`` format, with the cost of every tensor.

    Attributes:
        data: the whole file's bytes.
        header_bytes: bytes before the payload (magic, length, JSON header).
        tensors: what each tensor costs in the payload.
        path: where it was written, if it was.
    """

    data: bytes = field(repr=False)
    header_bytes: int
    tensors: tuple[TensorCost, ...]
    path: Path | None = None

    @property
    def file_bytes(self) -> int:
        """Bytes of the whole file."""
        return len(self.data)

    @property
    def payload_bytes(self) -> int:
        """Bytes of the tensors' blobs."""
        return self.file_bytes - self.header_bytes


def encode_sparse(
    model: nn.Module | Mapping[str, torch.Tensor],
    *,
    values: str = "auto",
    coding: str = "huffman",
    sparse: bool = True,
    index_bits: int | None = None,
    spec: ModelSpec | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> SparseEncoding:
    """Encode a model's state dict (or a state dict) into the bytes of a ``slimkit.sparse`` file.

    Args:
        model: a model (its spec is stored when it carries one) or a plain state dict.
        values: ``raw`` (keep every value's bytes) or ``auto`` (a codebook of the distinct
            values + one index per value, where smaller: clustered weights).
        coding: ``huffman`` or ``fixed`` (bit-packed) for the index and value streams.
        sparse: store the non-zero elements and their relative indices where that is smaller.
        index_bits: bits per relative index; ``None`` picks the best per tensor.
        spec: the model spec to store (defaults to the model's own).
        metadata: extra JSON-serializable data to store.
    """
    if isinstance(model, nn.Module):
        state = model.state_dict()
        spec = spec or model_spec_of(model)
    else:
        state = dict(model)
    blobs = Blobs()
    entries, costs = [], []
    for name, tensor in state.items():
        entry, cost = encode_tensor(
            name,
            tensor,
            blobs,
            values=values,
            coding=coding,
            sparse=sparse,
            index_bits=index_bits,
        )
        entries.append(entry)
        costs.append(cost)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model_spec": spec.to_dict() if spec is not None else None,
        "metadata": dict(metadata or {}),
        "tensors": entries,
    }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    prefix = MAGIC + struct.pack("<I", len(text)) + text
    return SparseEncoding(prefix + b"".join(blobs.parts), len(prefix), tuple(costs))


def save_sparse(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    values: str = "auto",
    coding: str = "huffman",
    sparse: bool = True,
    index_bits: int | None = None,
    spec: ModelSpec | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> SparseEncoding:
    """Write a model in the ``slimkit.sparse`` format, atomically.

    Takes the options of :func:`encode_sparse`; returns the encoding with ``path`` set.

    Example:
        >>> save_sparse(pruned_model, "lenet.sparse").file_bytes  # doctest: +SKIP
        28511
    """
    encoding = encode_sparse(
        model,
        values=values,
        coding=coding,
        sparse=sparse,
        index_bits=index_bits,
        spec=spec,
        metadata=metadata,
    )

    def write(tmp: Path) -> None:
        tmp.write_bytes(encoding.data)

    written = write_atomic(path, write)
    return SparseEncoding(encoding.data, encoding.header_bytes, encoding.tensors, written)


def _parse(data: bytes, source: str) -> tuple[dict[str, Any], bytes]:
    if len(data) < _PREFIX or data[: len(MAGIC)] != MAGIC:
        raise CheckpointError(
            f"{source} is not a slimkit.sparse file (no {MAGIC!r} marker); write one with "
            "slimkit.techniques.prune.save_sparse"
        )
    (length,) = struct.unpack("<I", data[len(MAGIC) : _PREFIX])
    if _PREFIX + length > len(data):
        raise CheckpointError(
            f"{source} is truncated: its header needs {length} bytes, {len(data) - _PREFIX} remain"
        )
    try:
        header = json.loads(data[_PREFIX : _PREFIX + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{source} has a corrupt header: {error}") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{source} has no {FORMAT!r} header")
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"{source} has format version {header.get('version')!r}; this slimkit reads {VERSION}"
        )
    return header, data[_PREFIX + length :]


def decode_sparse(
    data: bytes, source: str = "data"
) -> tuple[dict[str, torch.Tensor], ModelSpec | None, dict[str, Any]]:
    """The state dict, model spec (or ``None``) and metadata held in a file's bytes.

    Raises:
        CheckpointError: the bytes are not a readable ``slimkit.sparse`` file.
    """
    header, payload = _parse(data, source)
    try:
        spec_data = header["model_spec"]
        spec = ModelSpec.from_dict(spec_data) if spec_data is not None else None
        state = {entry["name"]: decode_tensor(entry, payload) for entry in header["tensors"]}
        metadata = dict(header.get("metadata") or {})
    except (SlimkitError, KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"{source} is corrupt: {error}") from error
    return state, spec, metadata


def read_sparse(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], ModelSpec | None, dict[str, Any]]:
    """The state dict, model spec (or ``None``) and metadata of a ``slimkit.sparse`` file."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"sparse model file {file} does not exist or is not a file")
    return decode_sparse(file.read_bytes(), str(file))


def load_sparse(path: str | os.PathLike[str]) -> Checkpoint:
    """Rebuild the model stored in a ``slimkit.sparse`` file (eval mode), weights bit-exact.

    Raises:
        CheckpointError: the file is missing or corrupt, holds no model spec, or its tensors do
            not fit the model the spec builds.
    """
    state, spec, metadata = read_sparse(path)
    if spec is None:
        raise CheckpointError(
            f"{path} holds no model spec, so it cannot rebuild a model; read its tensors with "
            "read_sparse, or save it from a model built by slimkit.create_model"
        )
    try:
        model = build_model(spec)
        model.load_state_dict(state, strict=True)
    except (ModelError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not fit model {spec.name!r}: {error}") from error
    model.eval()
    return Checkpoint(model=model, spec=spec, metadata=metadata, path=Path(path))

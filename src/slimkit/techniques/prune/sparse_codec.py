"""Encoding one tensor compactly: sparse positions, shared values, fixed-width or Huffman streams.

A tensor is stored in one of two layouts:

- ``dense``: every element is a coded value;
- ``sparse``: only the elements whose bit pattern is not all zeros are coded values (so ``-0.0``
  and ``NaN`` survive exactly), and their positions are a stream of *relative index* symbols with
  ``d`` bits each (Han et al. 2016, §2, Figure 2): with ``M = 2^d − 1``, a symbol ``g`` in
  ``[1, M]`` says "the next stored element is ``g`` places after the previous one", and the symbol
  ``0`` says "skip ``M`` places" (Han et al. pad a filler zero value instead; the escape costs the
  same index bits and no value). With ``d = 1`` the stream is exactly a bitmask up to the last
  stored element.

The coded values are either ``raw`` (the tensor's own bytes) or a ``codebook`` (the distinct bit
patterns, stored raw, and one index per value): after weight clustering a layer has ``2^b``
distinct values, so each costs ``b`` bits. Each symbol stream is coded ``fixed`` (bit-packed at
``ceil(log2(alphabet))`` bits) or, where that is smaller, ``huffman`` (canonical Huffman, with
five bits of code length per alphabet symbol). The layout, the value kind and ``d`` are chosen
per tensor to minimize its bytes within the options the caller allows, so a stored tensor is
never larger than its raw bytes.

Everything works on the integer view of the tensor's bits, so decoding is bit-exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from slimkit.errors import ConfigError, DataError
from slimkit.techniques.prune.huffman import HuffmanCode

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_BITS_VIEW = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}
VALUE_KINDS = ("auto", "raw")
CODINGS = ("fixed", "huffman")
INDEX_BITS = range(1, 13)  # widths tried for the relative indices
MAX_CODEBOOK = 1 << 16
LENGTH_BITS = 5  # bits per code length in a stored Huffman table (lengths are at most 20)


class Blobs:
    """The binary payload being written: appends byte strings and returns their references."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> list[int]:
        """Append ``data``; returns ``[offset, length]`` within the payload."""
        self.parts.append(data)
        self.size += len(data)
        return [self.size - len(data), len(data)]


def fixed_width(alphabet: int) -> int:
    """Bits of a fixed-width code for ``alphabet`` symbols (at least 1)."""
    return max(1, (alphabet - 1).bit_length())


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """Pack symbols at ``width`` bits each, most significant bit first."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = (symbols.astype(np.int64)[:, None] >> shifts) & 1  # (n, width)
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


def unpack_fixed(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed` for ``count`` symbols."""
    if len(data) != math.ceil(count * width / 8):
        raise DataError(f"a {width}-bit stream of {count} symbols has {len(data)} bytes")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width]
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return (bits.reshape(count, width).astype(np.int64) << shifts).sum(axis=1)


def _table_bytes(alphabet: int) -> int:
    return math.ceil(alphabet * LENGTH_BITS / 8)


def _huffman_wins(symbols: np.ndarray, alphabet: int) -> tuple[HuffmanCode, bool]:
    code = HuffmanCode.for_symbols(symbols, alphabet)
    huffman = math.ceil(code.cost(symbols) / 8) + _table_bytes(alphabet)
    return code, huffman < math.ceil(len(symbols) * fixed_width(alphabet) / 8)


def stream_bytes(symbols: np.ndarray, alphabet: int, coding: str) -> int:
    """Bytes that :func:`encode_stream` will write for these symbols (code tables included)."""
    fixed = math.ceil(len(symbols) * fixed_width(alphabet) / 8)
    if coding == "fixed":
        return fixed
    code = HuffmanCode.for_symbols(symbols, alphabet)
    return min(fixed, math.ceil(code.cost(symbols) / 8) + _table_bytes(alphabet))


def encode_stream(symbols: np.ndarray, alphabet: int, coding: str, blobs: Blobs) -> dict[str, Any]:
    """Write a symbol stream; returns its header entry.

    ``coding="huffman"`` writes the Huffman code where it is smaller than the fixed-width one
    (with its table of code lengths, :data:`LENGTH_BITS` bits per symbol of the alphabet), and
    the fixed-width code otherwise: a short stream is not worth its table.
    """
    code, huffman = _huffman_wins(symbols, alphabet) if coding == "huffman" else (None, False)
    if code is None or not huffman:
        width = fixed_width(alphabet)
        return {"coding": "fixed", "bits": width, "data": blobs.add(pack_fixed(symbols, width))}
    data, n_bits = code.encode(symbols)
    return {
        "coding": "huffman",
        "alphabet": alphabet,
        "lengths": blobs.add(pack_fixed(code.lengths, LENGTH_BITS)),
        "n_bits": n_bits,
        "data": blobs.add(data),
    }


def decode_stream(entry: dict[str, Any], count: int, alphabet: int, payload: bytes) -> np.ndarray:
    """Read ``count`` symbols of a stream written by :func:`encode_stream`."""
    data = blob(payload, entry["data"])
    if entry["coding"] == "fixed":
        if int(entry["bits"]) != fixed_width(alphabet):
            raise DataError(f"a fixed stream over {alphabet} symbols has {entry['bits']} bits")
        symbols = unpack_fixed(data, int(entry["bits"]), count)
    elif entry["coding"] == "huffman":
        if int(entry["alphabet"]) != alphabet:
            raise DataError(
                f"a Huffman table over {entry['alphabet']} symbols; {alphabet} expected"
            )
        lengths = unpack_fixed(blob(payload, entry["lengths"]), LENGTH_BITS, alphabet)
        symbols = HuffmanCode.from_lengths(lengths).decode(data, count, int(entry["n_bits"]))
    else:
        raise DataError(f"unknown stream coding {entry['coding']!r}")
    if symbols.size and symbols.max() >= alphabet:
        raise DataError(f"a stream symbol is outside its alphabet of {alphabet}")
    return symbols


def blob(payload: bytes, reference: list[int]) -> bytes:
    """The bytes of a ``[offset, length]`` reference, checked to lie inside the payload."""
    offset, length = int(reference[0]), int(reference[1])
    if offset < 0 or length < 0 or offset + length > len(payload):
        raise DataError(f"blob [{offset}, {length}] lies outside the {len(payload)}-byte payload")
    return payload[offset : offset + length]


def position_symbols(positions: np.ndarray, width: int) -> np.ndarray:
    """Relative-index symbols of ascending ``positions`` with ``width``-bit symbols."""
    skip = (1 << width) - 1
    gaps = np.diff(positions, prepend=-1)  # >= 1
    escapes = (gaps - 1) // skip
    symbols = np.zeros(int(escapes.sum()) + len(gaps), dtype=np.int64)
    symbols[np.cumsum(escapes + 1) - 1] = gaps - escapes * skip
    return symbols


def positions_of(symbols: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`position_symbols`."""
    skip = (1 << width) - 1
    advance = np.where(symbols == 0, skip, symbols)
    return (np.cumsum(advance) - 1)[symbols != 0]


@dataclass(frozen=True)
class TensorCost:
    """The bytes one stored tensor takes, by part.

    Attributes:
        name: state-dict key.
        numel: elements of the tensor.
        stored: elements stored as values (non-zero ones in the sparse layout).
        layout: ``dense`` or ``sparse``.
        values: ``raw`` or ``codebook``.
        index_bits: ``d`` of the relative indices (``None`` for dense).
        position_bytes: the relative-index stream (with its Huffman table).
        value_bytes: the value stream: raw values, or codebook indices (with their table).
        codebook_bytes: the codebook.
    """

    name: str
    numel: int
    stored: int
    layout: str
    values: str
    index_bits: int | None
    position_bytes: int
    value_bytes: int
    codebook_bytes: int

    @property
    def total_bytes(self) -> int:
        """All the payload bytes of this tensor."""
        return self.position_bytes + self.value_bytes + self.codebook_bytes


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _value_bytes(bits: np.ndarray, itemsize: int, kind: str, coding: str) -> tuple[str, int]:
    """The value kind to use for these bit patterns (``raw`` or ``codebook``) and its bytes."""
    raw = len(bits) * itemsize
    if kind == "raw" or len(bits) == 0:
        return "raw", raw
    codebook, inverse = np.unique(bits, return_inverse=True)
    if len(codebook) > MAX_CODEBOOK:
        return "raw", raw
    size = len(codebook) * itemsize + stream_bytes(inverse.reshape(-1), len(codebook), coding)
    return ("raw", raw) if size >= raw else ("codebook", size)


def _choose(
    bits: np.ndarray,
    positions: np.ndarray,
    itemsize: int,
    *,
    values: str,
    coding: str,
    sparse: bool,
    index_bits: int | None,
) -> tuple[str, str, int | None]:
    """The smallest (layout, value kind, index bits) among the allowed ones."""
    kind, best = _value_bytes(bits, itemsize, values, coding)
    choice: tuple[str, str, int | None] = ("dense", kind, None)
    if sparse:
        kind, size = _value_bytes(bits[positions], itemsize, values, coding)
        for width in [index_bits] if index_bits else INDEX_BITS:
            size_with_index = size + stream_bytes(
                position_symbols(positions, width), 1 << width, coding
            )
            if size_with_index < best:
                best, choice = size_with_index, ("sparse", kind, width)
    return choice


def encode_tensor(
    name: str,
    tensor: torch.Tensor,
    blobs: Blobs,
    *,
    values: str = "auto",
    coding: str = "huffman",
    sparse: bool = True,
    index_bits: int | None = None,
) -> tuple[dict[str, Any], TensorCost]:
    """Encode one tensor into ``blobs``; returns its header entry and what it cost.

    Args:
        name: the state-dict key.
        tensor: any tensor of a dtype in :data:`DTYPES`.
        blobs: the payload to append to.
        values: ``raw`` (the values' own bytes) or ``auto`` (a codebook of the distinct values and
            one index per value, where that is smaller than the raw bytes).
        coding: ``fixed`` or ``huffman`` for every symbol stream.
        sparse: allow the sparse layout (chosen when it is smaller than the dense one).
        index_bits: ``d`` of the relative indices; ``None`` tries 1 to 12 and keeps the best.
    """
    dtype_name = next((k for k, v in DTYPES.items() if v == tensor.dtype), None)
    if dtype_name is None:
        raise ConfigError(f"tensor {name!r} has dtype {tensor.dtype}, which the format cannot hold")
    if values not in VALUE_KINDS or coding not in CODINGS:
        raise ConfigError(
            f"values must be one of {VALUE_KINDS} and coding one of {CODINGS}; "
            f"got {values!r}, {coding!r}"
        )
    if index_bits is not None and index_bits not in INDEX_BITS:
        raise ConfigError(f"index_bits must be None or an int in [1, 12]; got {index_bits!r}")
    tensor = tensor.detach().cpu().contiguous()
    numel = tensor.numel()
    entry: dict[str, Any] = {"name": name, "dtype": dtype_name, "shape": list(tensor.shape)}
    view = _BITS_VIEW.get(tensor.dtype)
    if view is None or numel == 0:  # integers, booleans, empty tensors: their raw bytes
        raw = _raw_bytes(tensor)
        entry |= {"layout": "dense", "count": numel, "values": {"kind": "raw"}}
        entry["values"]["data"] = blobs.add(raw)
        return entry, TensorCost(name, numel, numel, "dense", "raw", None, 0, len(raw), 0)
    bits = tensor.view(view).flatten().numpy().astype(np.int64)  # bit patterns
    positions = np.flatnonzero(bits != 0)
    layout, kind, width = _choose(
        bits,
        positions,
        tensor.element_size(),
        values=values,
        coding=coding,
        sparse=sparse,
        index_bits=index_bits,
    )
    entry |= {"layout": layout, "count": numel if layout == "dense" else len(positions)}
    position_bytes = codebook_bytes = 0
    if width is not None:
        symbols = position_symbols(positions, width)
        start = blobs.size
        stream = encode_stream(symbols, 1 << width, coding, blobs)
        entry["positions"] = {"bits": width, "symbols": len(symbols), "stream": stream}
        position_bytes = blobs.size - start
    start = blobs.size
    if kind == "raw":
        flat = tensor.flatten()
        stored = flat if layout == "dense" else flat[torch.from_numpy(positions)]
        entry["values"] = {"kind": "raw", "data": blobs.add(_raw_bytes(stored))}
    else:
        codebook, inverse = np.unique(
            bits if layout == "dense" else bits[positions], return_inverse=True
        )
        book = _raw_bytes(torch.from_numpy(codebook).to(view))  # same bits as the dtype
        codebook_bytes = len(book)
        entry["values"] = {
            "kind": "codebook",
            "size": len(codebook),
            "codebook": blobs.add(book),
            "stream": encode_stream(inverse.reshape(-1), len(codebook), coding, blobs),
        }
    value_bytes = blobs.size - start - codebook_bytes
    cost = TensorCost(
        name,
        numel,
        int(entry["count"]),
        layout,
        kind,
        width,
        position_bytes,
        value_bytes,
        codebook_bytes,
    )
    return entry, cost


def decode_tensor(entry: dict[str, Any], payload: bytes) -> torch.Tensor:
    """Rebuild a tensor from its header entry and the payload (bit-exact)."""
    dtype = DTYPES[entry["dtype"]]
    shape = [int(n) for n in entry["shape"]]
    numel = math.prod(shape)
    count = int(entry["count"])
    values = entry["values"]
    view = _BITS_VIEW.get(dtype)
    if view is None or numel == 0:
        raw = blob(payload, values["data"])
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if values["kind"] != "raw" or len(raw) != numel * itemsize:
            raise DataError(f"tensor {entry['name']!r} needs {numel * itemsize} raw bytes")
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
    if values["kind"] == "raw":
        raw = blob(payload, values["data"])
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if len(raw) != count * itemsize:
            raise DataError(f"tensor {entry['name']!r} needs {count * itemsize} raw value bytes")
        stored = (
            torch.frombuffer(bytearray(raw), dtype=view) if count else torch.zeros(0, dtype=view)
        )
    elif values["kind"] == "codebook":
        size = int(values["size"])
        book = blob(payload, values["codebook"])
        if size < 1 or len(book) != size * torch.empty(0, dtype=dtype).element_size():
            raise DataError(f"tensor {entry['name']!r} has a codebook of {len(book)} bytes")
        codebook = torch.frombuffer(bytearray(book), dtype=view)
        stored = codebook[torch.from_numpy(decode_stream(values["stream"], count, size, payload))]
    else:
        raise DataError(f"tensor {entry['name']!r} has unknown value kind {values['kind']!r}")
    if entry["layout"] == "dense":
        if count != numel:
            raise DataError(f"dense tensor {entry['name']!r} stores {count} of {numel} values")
        out = stored
    elif entry["layout"] == "sparse":
        width = int(entry["positions"]["bits"])
        if width not in INDEX_BITS:
            raise DataError(f"tensor {entry['name']!r} has index bits {width}")
        symbols = decode_stream(
            entry["positions"]["stream"], int(entry["positions"]["symbols"]), 1 << width, payload
        )
        positions = positions_of(symbols, width)
        if len(positions) != count or (count and positions[-1] >= numel):
            raise DataError(f"tensor {entry['name']!r} has positions that do not fit its shape")
        out = torch.zeros(numel, dtype=view)
        out[torch.from_numpy(positions)] = stored
    else:
        raise DataError(f"tensor {entry['name']!r} has unknown layout {entry['layout']!r}")
    return out.view(dtype).reshape(shape)

"""Checks of a ``.pte`` program made in Python before ExecuTorch's C++ runtime reads it.

ExecuTorch verifies a program's flatbuffer, but the XNNPACK payloads inside it are trusted, and
its Python bindings abort the process when the runtime logs a string that is not UTF-8. Fuzzing
found corrupt files that crashed the process where slimkit can refuse them first, in one line:

- a constant's named key, or the payload's format identifier, that is not UTF-8 (SIGABRT: the
  bindings raise inside C++ while logging it);
- a constant tensor whose dimensions need more bytes than its data holds (SIGBUS: XNNPACK reads
  past the end of the mapped file).

What is checked: the program reads with ExecuTorch's own Python deserializer (every string
decoded), and each XNNPACK payload's XNNGraph flatbuffer (schema
``executorch/backends/xnnpack/serialization/schema.fbs``) has a known identifier, UTF-8 strings,
and constants as large as their tensors. Operator parameters (a convolution's kernel size against
its weight's shape, ...) are not checked: XNNPACK trusts them and a corrupt one can still crash
the process (see :func:`check_program`).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from slimkit.errors import RuntimeLoadError
from slimkit.runtime.base import first_line

XNN_IDENTIFIERS = (b"XN00", b"XN01")
# bytes per element of the XNNDatatype enum; 4-bit types hold two per byte (counted as 1/2)
XNN_ITEM_BYTES: dict[int, float] = {
    1: 4,  # fp32
    2: 2,  # fp16
    3: 1,  # qint8
    4: 1,  # quint8
    5: 4,  # qint32
    6: 1,  # qcint8
    7: 4,  # qcint32
    8: 0.5,  # qcint4
    9: 1,  # qdint8
    10: 0.5,  # qbint4
    11: 1,  # qpint8
    12: 4,  # int32
    14: 2,  # bf16
}
NO_OFFSET = (1 << 64) - 1  # ConstantDataOffset.offset when the data is named, not inline

# (path, size, mtime) of files that passed: a runner loads its file again per thread count
_checked: set[tuple[str, int, int]] = set()


def check_program(path: Path) -> None:
    """Refuse, in one line, a ``.pte`` file that fails the checks of this module.

    Raises:
        RuntimeLoadError: the program or one of its XNNPACK payloads is corrupt.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _checked:
        return
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        pte = deserialize_pte_binary(path.read_bytes())
        named = _named_sizes(pte.named_data)
        program = pte.program
        for plan in program.execution_plan:
            for delegate in plan.delegates:
                if delegate.id == "XnnpackBackend" and delegate.processed.location.name == "INLINE":
                    payload = program.backend_delegate_data[delegate.processed.index].data
                    check_xnnpack_payload(bytes(payload), named)
    except Exception as error:  # any failure to read it in Python: corrupt, or not a program
        raise RuntimeLoadError(
            f"executorch: {path} is not a readable ExecuTorch program ({type(error).__name__}: "
            f"{first_line(error)}); is the file complete and really .pte?"
        ) from None
    _checked.add(key)


def _named_sizes(named_data: Any) -> dict[str, int]:
    """Bytes of each named blob of the program (the data of XNNPACK's constants)."""
    if named_data is None:
        return {}
    buffers = named_data.buffers
    return {key: len(buffers[entry.buffer_index]) for key, entry in named_data.pte_data.items()}


def check_xnnpack_payload(payload: bytes, named: dict[str, int]) -> None:
    """Raise ValueError (or UnicodeDecodeError, or a parse error) unless the XNNGraph of an
    XNNPACK payload has a known identifier, UTF-8 strings and constants that fit their tensors.

    ``named``: bytes of each named blob of the program, by key.
    """
    from flatbuffers import table

    inline = len(payload)
    if payload[4:8] == b"XH00":  # XNNHeader: magic, header size, flatbuffer and constants
        offset, size, _, inline = struct.unpack("<IIIQ", payload[10:30])
        payload = payload[offset : offset + size]
    if payload[4:8] not in XNN_IDENTIFIERS:
        raise ValueError(f"XNNGraph identifier {payload[4:8]!r} is not one of {XNN_IDENTIFIERS}")
    (root,) = struct.unpack("<I", payload[:4])
    graph = table.Table(bytearray(payload), root)
    version = graph.Offset(4)  # field 0: version
    if version:
        graph.String(version + graph.Pos).decode("utf-8")
    available = [_constant_bytes(entry, named, inline) for entry in _tables(graph, 8)]
    for value in _tables(graph, 2):  # field 2: xvalues
        _check_constant(value, available)


def _tables(parent: Any, slot: int) -> list[Any]:
    """The tables of the vector of tables in field ``slot`` of ``parent``."""
    from flatbuffers import table

    field = parent.Offset(4 + 2 * slot)
    if not field:
        return []
    start, count = parent.Vector(field), parent.VectorLen(field)
    if count * 4 > len(parent.Bytes):
        raise ValueError(f"an XNNGraph vector claims {count} entries")
    return [table.Table(parent.Bytes, parent.Indirect(start + 4 * i)) for i in range(count)]


def _scalar(parent: Any, slot: int, kind: Any) -> int:
    """Scalar field ``slot`` of ``parent`` (0 when absent, the flatbuffer default)."""
    field = parent.Offset(4 + 2 * slot)
    return int(parent.Get(kind, field + parent.Pos)) if field else 0


def _constant_bytes(entry: Any, named: dict[str, int], inline: int) -> int:
    """Bytes of data one ConstantDataOffset entry gives its tensor."""
    from flatbuffers import number_types as types

    key_field = entry.Offset(4 + 2 * 2)  # field 2: named_key
    key = entry.String(key_field + entry.Pos).decode("utf-8") if key_field else ""
    if key:
        if key not in named:
            raise ValueError(f"XNNGraph constant {key!r} is not in the program's named data")
        return named[key]
    offset = _scalar(entry, 0, types.Uint64Flags)
    size = _scalar(entry, 1, types.Uint64Flags)
    if offset != NO_OFFSET and offset + size > inline:
        raise ValueError(f"XNNGraph constant at {offset} (+{size}) lies past its {inline} bytes")
    return size


def _check_constant(value: Any, available: list[int]) -> None:
    """Raise ValueError if a constant tensor needs more bytes than its data holds."""
    from flatbuffers import number_types as types
    from flatbuffers import table

    kind = _scalar(value, 0, types.Uint8Flags)  # XValue: union type, then the union
    field = value.Offset(6)
    if not field or kind not in (1, 2):  # XNNTensorValue, XNNQuantizedTensorValue
        return
    tensor = table.Table(value.Bytes, value.Indirect(field + value.Pos))
    if kind == 2:  # the quantized value's field 0 is its XNNTensorValue
        inner = tensor.Offset(4)
        if not inner:
            return
        tensor = table.Table(tensor.Bytes, tensor.Indirect(inner + tensor.Pos))
    index = _scalar(tensor, 3, types.Uint32Flags)  # constant_buffer_idx (0: not a constant)
    if index == 0:
        return
    if index >= len(available):
        raise ValueError(f"XNNGraph tensor names constant {index} of {len(available)}")
    dims_field = tensor.Offset(4 + 2 * 2)
    dims = (
        [
            tensor.Get(types.Uint32Flags, tensor.Vector(dims_field) + 4 * i)
            for i in range(tensor.VectorLen(dims_field))
        ]
        if dims_field
        else []
    )
    item = XNN_ITEM_BYTES.get(_scalar(tensor, 0, types.Int16Flags))
    needed = math.ceil(math.prod(dims) * item) if item is not None else 0
    if needed > available[index]:
        raise ValueError(
            f"XNNGraph constant tensor of dims {dims} needs {needed} bytes; its data holds "
            f"{available[index]}"
        )

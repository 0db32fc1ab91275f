"""What this machine's CPU is: its model name and instruction-set flags (Linux ``/proc/cpuinfo``).

One reader for the records of every measurement (:mod:`slimkit.measure.environment`) and for the
choices that depend on the CPU (the int8 weight range, :func:`int8_saturates`).
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# x86 instructions that multiply int8 pairs into int32 without an int16 intermediate
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, tuple[str, ...]]:
    """``(model name, flags)`` of the first CPU; the flags are empty where they cannot be read."""
    model: str = platform.processor() or platform.machine()
    flags: list[str] = []
    path = Path("/proc/cpuinfo")
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    return model, tuple(flags)


def int8_saturates() -> bool:
    """Whether ONNX Runtime's int8 kernels can saturate on this CPU.

    On x86-64 without VNNI (AVX2, AVX-512 without VNNI), ONNX Runtime multiplies uint8 activations
    by int8 weights with ``vpmaddubsw``, which adds two products into an int16 and saturates when
    both are large (255 · 127 · 2 > 32767): outputs then differ from the integer arithmetic by far
    more than a step. Weights in [-63, 63] cannot saturate (ONNX Runtime's ``reduce_range``). ARM
    and VNNI CPUs accumulate in int32 and never saturate.
    """
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    _, flags = cpu_info()
    return bool(flags) and not any(flag in flags for flag in INT8_DOT_FLAGS)

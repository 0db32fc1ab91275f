"""The environment a measurement was taken in: CPU, instruction sets, threads, package versions.

Latency depends on the CPU (AVX2 only vs AVX-512 VNNI changes int8 speed a lot), so every record
carries this.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from slimkit.cpu import cpu_info

CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
PACKAGES = (
    "slimkit",
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "scikit-learn",
    "ai-edge-litert",
    "litert-torch",
    "executorch",
)


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = cpu_info()
    return model, list(flags)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def idle_state() -> dict[str, Any]:
    """How an idle CPU of this machine sleeps (Linux), which sets how fast a woken thread runs.

    In a virtual machine a vCPU that goes idle halts; waking it for the next parallel section
    costs a trip through the hypervisor unless the guest polls first (``guest_halt_poll_ns``, the
    ``haltpoll`` cpuidle driver). Multi-thread latency of small models depends on it, so every
    record carries it.
    """
    poll = _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    return {
        "cpuidle_driver": _read("/sys/devices/system/cpu/cpuidle/current_driver"),
        "guest_halt_poll_ns": int(poll) if poll is not None and poll.isdigit() else None,
    }


def package_version(name: str) -> str | None:
    """Installed version of ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _machine() -> dict[str, Any]:
    model, flags = _cpuinfo()
    features = [f for f in CPU_FEATURES if f in flags]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    return {
        "cpu": model,
        "cpu_features": features,
        "cpu_count": affinity,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "virtual_machine": "hypervisor" in flags,
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in PACKAGES},
    }


def environment() -> dict[str, Any]:
    """A JSON-safe description of this machine and the packages measuring on it.

    The idle state is read afresh on every call (it can be changed while a process runs).

    Example:
        >>> env = environment()
        >>> sorted(env)[:3]
        ['cpu', 'cpu_count', 'cpu_features']
    """
    return {**_machine(), "idle": idle_state()}


def describe_cpu(env: dict[str, Any] | None = None) -> str:
    """One line such as ``AMD EPYC (2 cores; avx2, fma, avx512_vnni)``."""
    env = env or environment()
    features = ", ".join(env["cpu_features"]) or "no AVX2"
    return f"{env['cpu']} ({env['cpu_count']} cores; {features})"

"""The environment a measurement was taken in: CPU, instruction sets, threads, package versions.

Latency depends on the CPU (AVX2 only vs AVX-512 VNNI changes int8 speed a lot), so every record
carries this.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from slimkit.errors import ConfigError

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
    return model, flags


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


HALT_POLL = Path("/sys/module/haltpoll/parameters")


@contextmanager
def guest_halt_polling(nanoseconds: int) -> Iterator[None]:
    """Let idle vCPUs of this virtual machine poll ``nanoseconds`` before halting, then restore.

    A benchmark-host setting, like ``pyperf system tune``: with polling off (some hosts boot
    guests with ``haltpoll.guest_halt_poll_ns=0``) every parallel section that wakes a second
    thread pays a halted vCPU's wake-up through the hypervisor, and the multi-thread latency of
    small models jumps between modes. Needs root and the ``haltpoll`` cpuidle driver.

    Raises:
        ConfigError: not a guest with ``haltpoll``, or the settings cannot be written (not root).
    """
    if nanoseconds < 0:
        raise ConfigError(f"halt polling needs nanoseconds >= 0; got {nanoseconds}")
    poll, shrink = HALT_POLL / "guest_halt_poll_ns", HALT_POLL / "guest_halt_poll_allow_shrink"
    if not poll.is_file():
        raise ConfigError(
            f"{poll} does not exist: guest halt polling needs a KVM guest with the haltpoll "
            "cpuidle driver; run without the halt-polling option"
        )
    saved = {path: path.read_text().strip() for path in (poll, shrink) if path.is_file()}
    try:
        poll.write_text(str(nanoseconds))
        if shrink in saved:
            shrink.write_text("N")  # keep the window at the value asked for
    except OSError as error:
        raise ConfigError(
            f"cannot set guest halt polling ({error.strerror}): writing {poll} needs root"
        ) from error
    try:
        yield
    finally:
        for path, value in saved.items():
            path.write_text(value)


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

    The idle state is read afresh on every call (a benchmark may tune it while it runs).

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

"""Microcontroller memory, measured: the tensor arena (RAM) and the flash a ``.tflite`` file needs.

On a microcontroller the budget is bytes, not milliseconds. TFLite Micro places every tensor it
needs at run time (activations, per-operator scratch, its own bookkeeping) in one *tensor arena*,
a byte array the firmware declares with a fixed size; the model itself stays in flash.

- :func:`probe_arena` measures the smallest arena that runs a file. The interpreter's allocation
  record (``RecordingMicroAllocator``) gives the bytes in use after allocation. It is only where
  the search starts: the arena must also hold temporary allocations made while operators are
  prepared (measured: LeNet-5 on 8x8 digits records 5,100 bytes and needs 5,816), and the record
  counts some alignment padding (LeNet-5 on MNIST records 10,508 and runs with 10,504). The probe
  bisects from the record to the exact byte, running one sample at each size. Every try runs in
  a child process (a too-small arena can crash this interpreter), and the answer is confirmed in a
  fresh child: it runs with the arena, and fails cleanly (an error, not a crash) with 16 bytes
  less.
- :func:`plan_activations` is slimkit's own plan of the activation memory (tensor lifetimes,
  greedy placement by size, 16-byte alignment, as TFLite Micro's greedy planner does): a
  cross-check of the arena's non-persistent part, computed from the file alone.
- :func:`mcu_memory` gathers both with the flash size: the model bytes plus a stated *estimate*
  of the interpreter code for the operators used (:data:`CORE_CODE_BYTES` +
  :data:`OPERATOR_CODE_BYTES` per distinct operator, from the TFLite Micro documentation's
  Cortex-M3 figures: "the core runtime fits in 16 KB", "22 KB with the operators of a speech
  keyword model" (four operators)). Measure the real code size with your linker map.
- :func:`check_mcu_budget` compares them with a RAM/flash budget and raises one clear line.

The arena is measured with the host build of TFLite Micro (64-bit pointers). A 32-bit
microcontroller build stores smaller structures, so its arena is usually somewhat smaller;
optimized kernels (CMSIS-NN) may ask for more scratch memory than the reference kernels.

Example:
    >>> memory = mcu_memory("lenet5-int8.tflite")  # doctest: +SKIP
    >>> memory["arena_bytes"], memory["flash_bytes"]  # doctest: +SKIP
    (10504, 100152)
    >>> check_mcu_budget(memory, ram_bytes="32KB", flash_bytes="64KB")  # doctest: +SKIP
    McuBudgetError: lenet5-int8.tflite does not fit the budget: flash 100,152 bytes > flash ...
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slimkit.errors import ConfigError, RuntimeLoadError
from slimkit.runtime.tflite_graph import TFLiteGraph, read_tflite_graph
from slimkit.runtime.tflite_micro import check_operators, host_arena_bytes, import_tflite_micro

logger = logging.getLogger(__name__)

ALIGNMENT = 16  # TFLite Micro aligns every arena buffer to 16 bytes
CONFIRM_MARGIN = 16  # the confirmation runs with the arena and fails with this many bytes less
STARTUP_S = 60.0  # a probe child's allowance to start (import NumPy and TFLite Micro)
CORE_CODE_BYTES = 16 * 1024
OPERATOR_CODE_BYTES = 1536  # (22 KB - 16 KB) / 4 operators of the micro speech model
FLASH_ESTIMATE_BASIS = (
    "model bytes + 16 KiB interpreter core + 1.5 KiB per distinct operator (estimate from the "
    "TFLite Micro documentation's Cortex-M3 figures: core 16 KB, 22 KB with a 4-operator model)"
)
_CHILD = Path(__file__).with_name("mcu_probe_child.py")
_RUN_CHILD = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


class McuBudgetError(ConfigError):
    """A model does not fit a microcontroller budget (RAM, flash, or integer-only)."""


# --------------------------------------------------------------------------- activation planner


@dataclass(frozen=True)
class ActivationPlan:
    """slimkit's plan of a graph's activation memory.

    Attributes:
        peak_live_bytes: the most bytes of activations alive at once (a lower bound for any plan).
        planned_bytes: the size of a greedy placement (largest tensors first, each at the lowest
            offset free during its lifetime), each tensor rounded up to 16 bytes.
        tensors: activations planned.
    """

    peak_live_bytes: int
    planned_bytes: int
    tensors: int


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def plan_activations(graph: TFLiteGraph) -> ActivationPlan:
    """Plan where the activations of ``graph`` live in the arena (non-persistent memory).

    A tensor lives from the operator that writes it (the start, for graph inputs) to the last
    operator that reads it (the end, for graph outputs).

    Example:
        >>> plan_activations(read_tflite_graph("lenet5.tflite")).planned_bytes  # doctest: +SKIP
        5888
    """
    last_op = max(len(graph.operators) - 1, 0)
    first: dict[int, int] = {t: 0 for t in graph.inputs}
    last: dict[int, int] = {t: last_op for t in graph.outputs}
    for op in graph.operators:
        for t in op.outputs:
            first.setdefault(t, op.index)
            last[t] = max(last.get(t, op.index), op.index)
        for t in op.inputs:
            last[t] = max(last.get(t, op.index), op.index)
    sizes = {t.index: _aligned(t.nbytes) for t in graph.activations() if t.index in first}
    lifetimes = {t: (first[t], last.get(t, first[t])) for t in sizes}
    peak = max(
        (
            sum(size for t, size in sizes.items() if lifetimes[t][0] <= step <= lifetimes[t][1])
            for step in range(last_op + 1)
        ),
        default=0,
    )
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for t in sorted(sizes, key=lambda t: (-sizes[t], t)):
        start, end = lifetimes[t]
        offset = 0
        for other_offset, other_size, other_first, other_last in sorted(placed):
            overlaps_in_time = not (end < other_first or other_last < start)
            if overlaps_in_time and offset + sizes[t] > other_offset:
                offset = max(offset, other_offset + other_size)
        placed.append((offset, sizes[t], start, end))
    planned = max((offset + size for offset, size, _, _ in placed), default=0)
    return ActivationPlan(peak_live_bytes=peak, planned_bytes=planned, tensors=len(sizes))


# --------------------------------------------------------------------------- arena probe


@dataclass(frozen=True)
class ArenaProbe:
    """The smallest arena of a file, and how it was found.

    Attributes:
        arena_bytes: the smallest arena with which one sample runs.
        recorded_bytes: the allocation record's total (bytes in use after allocation).
        recorded_head_bytes: its non-persistent part (the activation plan TFLite Micro made).
        recorded_tail_bytes: its persistent part (tensor structs, operator data, scratch).
        fails_cleanly_below: True when ``arena_bytes - 16`` failed with an error, not a crash.
        probes: arena sizes tried (each a run of one sample in a child process).
    """

    arena_bytes: int
    recorded_bytes: int
    recorded_head_bytes: int
    recorded_tail_bytes: int
    fails_cleanly_below: bool
    probes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


class _Child:
    """One probe child process; tries arena sizes until it exits, crashes or hangs.

    ``timeout_s`` bounds one attempt (its first also gets :data:`STARTUP_S` to import); a child
    that crashes or does not answer in time is killed, and the attempt reported as failed.
    """

    def __init__(self, path: Path, folder: Path, timeout_s: float) -> None:
        self.path, self.timeout_s, self.answered = path, timeout_s, False
        self.log = folder / "stderr.txt"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RUN_CHILD, str(_CHILD), str(path), str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=folder,
            text=True,
        )

    def ask(self, command: str, arena: int) -> dict[str, Any]:
        """Run one attempt; a crash or hang is ``{"ok": False, "died": True, ...}``."""
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        timeout = self.timeout_s + (0 if self.answered else STARTUP_S)
        try:
            process.stdin.write(f"{command} {arena}\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else ""
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            self.answered = True
            return dict(json.loads(line))
        hung = process.poll() is None
        if hung:  # a too-small arena can also send this interpreter into an endless loop
            process.kill()
            process.wait()
        log = self.log.read_text(errors="replace").strip() if self.log.is_file() else ""
        return {
            "arena": arena,
            "ok": False,
            "died": True,
            "error": f"no answer in {timeout:.0f} s (killed)"
            if hung
            else f"crashed (exit code {process.returncode})",
            "log": log[-2000:],
            "record": {},
        }

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _last_message(reply: dict[str, Any]) -> str:
    lines = [line.strip() for line in str(reply.get("log", "")).splitlines() if line.strip()]
    return lines[-1] if lines else str(reply.get("error", ""))


def probe_arena_details(path: str | os.PathLike[str], *, timeout_s: float = 20.0) -> ArenaProbe:
    """Measure the smallest tensor arena that runs ``path`` in TFLite Micro, with its evidence.

    ``timeout_s`` bounds one attempt (one sample); an attempt that takes longer counts as failed.

    Raises:
        ExportError: the file uses an operator TFLite Micro does not support.
        RuntimeLoadError: the file does not run even with a generous arena, or the result does
            not reproduce in a fresh process.
    """
    import_tflite_micro()
    path = Path(path).absolute()  # the probe's child runs in a folder of its own
    graph = read_tflite_graph(path)
    check_operators(graph)
    generous = host_arena_bytes(graph)
    probes = 0
    with tempfile.TemporaryDirectory(prefix="slimkit-arena-") as tmp:
        folder = Path(tmp)
        child = _Child(path, folder, timeout_s)
        results: dict[int, bool] = {}

        def runs(arena: int) -> bool:
            nonlocal child, probes
            if arena not in results:
                probes += 1
                reply = child.ask("try", arena)
                if reply.get("died"):  # a crash or hang is a failure; carry on in a new child
                    child.close()
                    child = _Child(path, folder, timeout_s)
                results[arena] = bool(reply["ok"])
            return results[arena]

        try:
            reply = child.ask("record", generous)
            probes += 1
            if not reply["ok"]:
                raise RuntimeLoadError(
                    f"tflite-micro: {path.name} does not run even with a {generous:,}-byte arena: "
                    f"{_last_message(reply)}"
                )
            record = reply["record"]
            recorded = int(record.get("total", 0))
            low, high = max(recorded, 1), generous  # bisect between a failing and a running size
            if runs(low):  # step down from the record (far below it, the interpreter can hang)
                step = ALIGNMENT * 16
                while low > 1 and runs(low):
                    high, low, step = low, max(low - step, 1), step * 2
            else:  # grow from the record by halves of it until a size runs
                step = max(recorded // 2, 64)
                while not runs(min(low + step, generous)) and low + step < generous:
                    low, step = low + step, step * 2
                high = min(low + step, generous)
            while high - low > 1:
                middle = (low + high) // 2
                if runs(middle):
                    high = middle
                else:
                    low = middle
        finally:
            child.close()
        confirm = _Child(path, folder, timeout_s)
        try:
            at = confirm.ask("try", high)
            below = confirm.ask("try", high - CONFIRM_MARGIN) if high > CONFIRM_MARGIN else None
        finally:
            confirm.close()
    probes += 2
    if not at["ok"] or (below is not None and below["ok"]):
        raise RuntimeLoadError(
            f"tflite-micro: the arena probe of {path.name} did not reproduce in a fresh process "
            f"({high:,} bytes: {'runs' if at['ok'] else 'fails'}; {high - CONFIRM_MARGIN:,} "
            f"bytes: {'runs' if below and below['ok'] else 'fails'})"
        )
    result = ArenaProbe(
        arena_bytes=high,
        recorded_bytes=recorded,
        recorded_head_bytes=int(record.get("head", 0)),
        recorded_tail_bytes=int(record.get("tail", 0)),
        fails_cleanly_below=below is None or not below.get("died", False),
        probes=probes,
    )
    logger.info("tflite-micro: %s needs a %d-byte arena (%d probes)", path.name, high, probes)
    return result


def probe_arena(path: str | os.PathLike[str], *, timeout_s: float = 20.0) -> int:
    """The smallest tensor arena, in bytes, with which TFLite Micro runs ``path``.

    Measured in child processes and confirmed in a fresh one (it runs with this arena and fails
    with 16 bytes less); see :func:`probe_arena_details` for the evidence.

    Example:
        >>> probe_arena("lenet5-int8.tflite")  # doctest: +SKIP
        10504
    """
    return probe_arena_details(path, timeout_s=timeout_s).arena_bytes


# --------------------------------------------------------------------------- memory and budget


def interpreter_code_bytes(operators: int) -> int:
    """The flash estimate of TFLite Micro's code for a model with ``operators`` distinct ops."""
    return CORE_CODE_BYTES + OPERATOR_CODE_BYTES * operators


def mcu_memory(path: str | os.PathLike[str], *, timeout_s: float = 20.0) -> dict[str, Any]:
    """RAM and flash of ``path`` on a microcontroller: arena measured, flash estimated.

    Returns:
        A JSON-safe dict: ``arena_bytes`` (measured smallest arena), ``flash_bytes`` (model bytes
        + interpreter code estimate), ``model_bytes``, ``interpreter_code_bytes``,
        ``flash_basis`` (how the estimate is made), ``operators``, ``int8`` (integer-only
        activations), the allocation record, and slimkit's plan (``planner_peak_live_bytes``,
        ``planner_plan_bytes``) beside TFLite Micro's own (``arena_recorded_head_bytes``).

    Example:
        >>> mcu_memory("lenet5-int8.tflite")["arena_bytes"]  # doctest: +SKIP
        10504
    """
    tflite_micro = import_tflite_micro()
    graph = read_tflite_graph(path)
    operators = check_operators(graph)
    probe = probe_arena_details(path, timeout_s=timeout_s)
    plan = plan_activations(graph)
    code = interpreter_code_bytes(len(operators))
    return {
        "path": str(path),
        "arena_bytes": probe.arena_bytes,
        "flash_bytes": graph.model_bytes + code,
        "model_bytes": graph.model_bytes,
        "interpreter_code_bytes": code,
        "flash_basis": FLASH_ESTIMATE_BASIS,
        "operators": operators,
        "int8": not graph.is_float(),
        "arena_recorded_bytes": probe.recorded_bytes,
        "arena_recorded_head_bytes": probe.recorded_head_bytes,
        "arena_recorded_tail_bytes": probe.recorded_tail_bytes,
        "arena_fails_cleanly_below": probe.fails_cleanly_below,
        "arena_probes": probe.probes,
        "planner_peak_live_bytes": plan.peak_live_bytes,
        "planner_plan_bytes": plan.planned_bytes,
        "tflite_micro_version": str(tflite_micro.__version__),
    }


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: int | str) -> int:
    """Bytes from ``4096``, ``"32KB"``, ``"32 KiB"`` or ``"1MB"`` (K = 1024, as MCU datasheets).

    Example:
        >>> parse_size("32KB"), parse_size("1.5 KiB"), parse_size(64)
        (32768, 1536, 64)
    """
    if isinstance(value, bool) or (isinstance(value, int) and value <= 0):
        raise ConfigError(f"a memory size must be a positive number of bytes; got {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if match is None:
        raise ConfigError(f"a memory size must look like 4096, '32KB' or '1 MiB'; got {value!r}")
    unit = (match.group(2) or "").lower()[:1]
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"a memory size must be a positive number of bytes; got {value!r}")
    return size


def budget_violations(
    memory: Mapping[str, Any],
    *,
    ram_bytes: int | str | None = None,
    flash_bytes: int | str | None = None,
    int8_only: bool = False,
) -> list[str]:
    """What in ``memory`` (from :func:`mcu_memory`) breaks the budget; empty when it fits."""
    problems = []
    if int8_only and not memory.get("int8", False):
        problems.append(
            "it has float activations and this budget is int8-only (quantize it: export with "
            "calibration_data, or pass a PT2E int8 graph)"
        )
    for label, key, limit in (
        ("arena", "arena_bytes", ram_bytes),
        ("flash", "flash_bytes", flash_bytes),
    ):
        if limit is None:
            continue
        budget = parse_size(limit)
        if int(memory[key]) > budget:
            kind = "RAM" if label == "arena" else "flash"
            problems.append(
                f"{label} {int(memory[key]):,} bytes > {kind} budget {budget:,} bytes "
                f"({int(memory[key]) - budget:,} over)"
            )
    return problems


def check_mcu_budget(
    model: str | os.PathLike[str] | Mapping[str, Any],
    *,
    ram_bytes: int | str | None = None,
    flash_bytes: int | str | None = None,
    int8_only: bool = False,
) -> dict[str, Any]:
    """Measure (or take) a model's memory and raise :class:`McuBudgetError` if it does not fit.

    Args:
        model: a ``.tflite`` file, or the dict :func:`mcu_memory` returned for one.
        ram_bytes: the most arena RAM allowed (bytes, or ``"32KB"``).
        flash_bytes: the most flash allowed for model + interpreter code (bytes, or ``"64KB"``).
        int8_only: refuse models with float activations (devices without an FPU).

    Returns:
        The memory dict, when the model fits.

    Example:
        >>> check_mcu_budget("m.tflite", ram_bytes="32KB", flash_bytes="64KB")  # doctest: +SKIP
    """
    if isinstance(model, Mapping):
        memory = dict(model)
    else:
        graph = read_tflite_graph(model)  # an int8-only budget refuses fp32 before measuring
        if int8_only and graph.is_float():
            floats = sum(t.dtype.startswith("FLOAT") for t in graph.activations())
            raise McuBudgetError(
                f"{graph.path.name} is a float model ({floats} float32 activations) and the "
                "budget is int8-only; quantize it (export with calibration_data, or pass a PT2E "
                "int8 graph)"
            )
        memory = mcu_memory(model)
    problems = budget_violations(
        memory, ram_bytes=ram_bytes, flash_bytes=flash_bytes, int8_only=int8_only
    )
    if problems:
        name = Path(str(memory.get("path", "the model"))).name
        raise McuBudgetError(f"{name} does not fit the budget: {'; '.join(problems)}")
    return memory

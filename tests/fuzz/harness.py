"""Run fuzz inputs in a persistent child process, so that a hang or a crash is counted, not fatal.

A :class:`Worker` starts ``python harness.py --child`` once and sends it one input at a time
(length-prefixed JSON on the child's stdin/stdout, see :func:`dumps`: nothing is unpickled); the
child runs the target's ``check`` and answers with an :class:`Outcome`. When no answer comes within
the timeout the child is killed and the input counted as a hang; when the child dies (a segfault in
a native runtime, an abort) the input is counted as a crash. Either way the next input starts a
fresh child, which first runs one seed input of the target (its warm-up: imports and first-call
allocations, so that memory bounds measure the input, not the imports).

The child limits its address space (``--memory``), so that an input that makes a parser allocate
without bound fails there (MemoryError, or an abort) instead of taking the machine.

Used by ``tests/fuzz/test_fuzz.py`` and ``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
KINDS = ("ok", "clean", "foreign", "hang", "crash")
DEFAULT_MEMORY = 4 << 30
_HEADER = struct.Struct("<Q")


@dataclass(frozen=True)
class Outcome:
    """What one input did: ``kind`` is one of :data:`KINDS`; ``detail`` says why for failures."""

    kind: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.kind in ("ok", "clean")


def _tagged(value: Any) -> Any:
    """``value`` as plain JSON: bytes, tuples, non-finite floats and dicts with any keys tagged."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, bytes | bytearray):
        return {"bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_tagged(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    raise TypeError(f"a fuzz input cannot hold a {type(value).__name__}")


def _untagged(value: Any) -> Any:
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    if not isinstance(value, dict):
        return value
    ((tag, body),) = value.items()
    if tag == "float":
        return float(body)
    if tag == "bytes":
        return base64.b64decode(body)
    if tag == "tuple":
        return tuple(_untagged(v) for v in body)
    return {_untagged(k): _untagged(v) for k, v in body}


def dumps(value: Any) -> bytes:
    """A fuzz input (or an answer) as JSON bytes: how inputs cross the pipe and are kept on disk
    (``benchmarks/results/fuzz/failures/*.json``); :func:`loads` reads them back."""
    return json.dumps(_tagged(value), separators=(",", ":")).encode("utf-8")


def loads(blob: bytes) -> Any:
    """The value :func:`dumps` wrote (plain data only: no code runs)."""
    return _untagged(json.loads(blob))


def _send(stream: IO[bytes], value: Any) -> None:
    payload = dumps(value)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts = []
    while size > 0:
        part = stream.read(size)
        if not part:
            raise EOFError("the other side closed the pipe")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _receive(stream: IO[bytes]) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return loads(_read_exactly(stream, size))


class Worker:
    """A persistent child process that runs targets' checks; see the module docstring.

    Args:
        warmup: ``warmup(target) -> input``: a valid input of the target, run first in every
            fresh child (None: no warm-up).
        timeout: seconds one input may take before it counts as a hang.
        memory: the child's address-space limit in bytes (None: no limit).
        log: where the child's stdout and stderr go (native runtimes are chatty); None discards.
    """

    def __init__(
        self,
        warmup: Callable[[str], Any],
        *,
        timeout: float = 60.0,
        memory: int | None = DEFAULT_MEMORY,
        log: Path | None = None,
    ) -> None:
        self.warmup = warmup
        self.timeout = timeout
        self.memory = memory
        self.log = log
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._warm: set[str] = set()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(HERE / "harness.py"), "--child"]
        if self.memory is not None:
            command += ["--memory", str(self.memory)]
        sink = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink
            )
        finally:
            if self.log is not None:
                sink.close()  # type: ignore[union-attr]
        self._warm = set()
        return process

    def close(self) -> None:
        """Stop the child (it is restarted by the next :meth:`run`)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def _kill(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        code = process.wait()
        self.restarts += 1
        return code

    def _exchange(self, target: str, data: Any, timeout: float) -> Outcome:
        if self._process is None:
            self._process = self._start()
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        started = time.perf_counter()
        try:
            _send(process.stdin, (target, data))
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            if not ready:
                self._kill()
                return Outcome(
                    "hang", f"no answer in {timeout:.0f} s", time.perf_counter() - started
                )
            kind, detail, seconds = _receive(process.stdout)
        except (EOFError, OSError, ValueError):
            code = self._kill()
            name = signal.Signals(-code).name if code is not None and code < 0 else f"exit {code}"
            return Outcome("crash", f"the child died ({name})", time.perf_counter() - started)
        return Outcome(kind, detail, seconds)

    @staticmethod
    def dumps(data: Any) -> bytes:
        """An input as the bytes a failure file keeps (see :func:`dumps`)."""
        return dumps(data)

    def run(self, target: str, data: Any) -> Outcome:
        """Run one input of ``target`` in the child; never raises for what the input does."""
        if target not in self._warm:
            seed = self.warmup(target)
            if seed is not None:
                # a fresh child imports everything first: give it time, whatever the timeout
                warm = self._exchange(target, seed, max(self.timeout, 600.0))
                if not warm.passed:
                    return Outcome(warm.kind, f"the warm-up seed failed: {warm.detail}")
            self._warm.add(target)
        return self._exchange(target, data, self.timeout)


# --- the child ------------------------------------------------------------------------------


def _child(memory: int | None) -> None:
    """Answer (target, input) requests on stdin with Outcomes on a private copy of stdout."""
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the parsers print goes to stderr, not into the protocol
    requests = os.fdopen(0, "rb")
    if memory is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    sys.path.insert(0, str(HERE))
    import targets  # this folder, put on sys.path above

    with tempfile.TemporaryDirectory(prefix="slimkit-fuzz-") as folder:
        count = 0
        while True:
            try:
                name, data = _receive(requests)
            except EOFError:
                return
            count += 1
            work = Path(folder) / str(count)
            work.mkdir()
            started = time.perf_counter()
            try:
                kind, detail = targets.TARGETS[name].check(data, work), ""
            except AssertionError as error:
                kind, detail = "foreign", str(error) or traceback.format_exc(limit=3)
            except BaseException as error:  # a bug of the check itself counts as a failure too
                kind, detail = "foreign", f"the check raised {type(error).__name__}: {error}"
            _send(protocol, (kind, detail[:2000], time.perf_counter() - started))
            _remove(work)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"]:
        sys.exit("harness.py runs as a child of tests/fuzz/test_fuzz.py or benchmarks/fuzz.py")
    limit = int(sys.argv[3]) if sys.argv[2:3] == ["--memory"] else None
    _child(limit)

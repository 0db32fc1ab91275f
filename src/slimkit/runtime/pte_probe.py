"""Try a ``.pte`` file in a probe process before this process loads it.

ExecuTorch's XNNPACK backend trusts a program's operator parameters and memory plan: fuzzing
found corrupt files that :mod:`slimkit.runtime.pte_check` cannot refuse from Python and that
crash the process that loads them (a convolution whose kernel width no longer matches its weight:
SIGBUS at load; a delegate call without its arguments or a broken node: heap corruption during
``execute``, SIGSEGV or glibc's ``malloc(): invalid size``). So a file this process has not
verified before is first loaded and run once on zeros (its own input shape and batch) in another
process; a crash, an abort or a hang there becomes one :class:`RuntimeLoadError` line here.

One probe process serves this process (``pte_probe_child.py``): started on the first file,
reused for the next ones, started again only after it died. It imports ExecuTorch and torch once
(about 5 s) and tries every file in a fork of itself, so a corrupt file damages nothing that a
later file uses. Its stderr (ExecuTorch's native logging) goes to a temporary file, never to the
terminal; its last line names the cause in the error where it is useful (``malloc(): ...``).

Verified files are remembered by content (SHA-256) for the life of this process: a file is
probed once, however many runners load it. Files slimkit itself wrote in this process are marked
verified by the exporter (:func:`mark_verified`), and :func:`slimkit.measure.measure_isolated`
passes :func:`verified_digests` to its child processes, so neither pays for the probe again.

Example:
    >>> verify_pte(Path("lenet5.pte"))  # doctest: +SKIP
    >>> verify_pte(Path("corrupt.pte"))  # doctest: +SKIP
    RuntimeLoadError: executorch: corrupt.pte crashed ExecuTorch (SIGBUS) when loaded and run ...
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slimkit.errors import RuntimeLoadError

logger = logging.getLogger(__name__)

TIMEOUT_S = 120.0  # one file's load and run in the probe, at most (a guard against a hang)
STARTUP_S = 300.0  # the probe process's allowance to import ExecuTorch and torch
REPLY_MARGIN_S = 30.0  # beyond the file's timeout, before the probe process itself is given up
_CHILD = Path(__file__).with_name("pte_probe_child.py")
_RUN_CHILD = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
# the probe computes nothing itself: no BLAS or OpenMP worker threads in a process that forks
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_verified: set[str] = set()  # SHA-256 hex digests of files that loaded and ran without a crash
_lock = threading.Lock()  # one exchange with the probe process at a time
_probe: _ProbeProcess | None = None


def file_digest(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes (what :func:`mark_verified` takes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mark_verified(digests: Iterable[str]) -> None:
    """Record files (by :func:`file_digest`) as safe to load: ExecuTorch wrote them in this
    process, or a probe in this process or its parent tried them."""
    _verified.update(digests)


def verified_digests() -> frozenset[str]:
    """The digests of every file verified in this process (to pass to a child process)."""
    return frozenset(_verified)


def is_verified(digest: str) -> bool:
    """Whether the file of this :func:`file_digest` was verified in this process."""
    return digest in _verified


def start_probe() -> None:
    """Start the probe process now unless one runs; it imports ExecuTorch in the background
    (about 5 s) while this process does its own imports, and :func:`verify_pte` waits for it."""
    with _lock:
        _running_probe()


def verify_pte(path: Path, *, digest: str | None = None, timeout_s: float | None = None) -> None:
    """Load ``path`` and run it once on zeros in the probe process, unless already verified.

    Args:
        path: a ``.pte`` file (checked by :func:`slimkit.runtime.pte_check.check_program`).
        digest: its :func:`file_digest`, if already computed.
        timeout_s: the file's load and run, at most (default :data:`TIMEOUT_S`).

    Raises:
        RuntimeLoadError: the file crashed, aborted or hung the probe, or the probe process
            could not start.
    """
    digest = digest or file_digest(path)
    if digest in _verified:
        return
    timeout = TIMEOUT_S if timeout_s is None else timeout_s
    with _lock:
        if digest in _verified:
            return
        started = time.perf_counter()
        reply = _running_probe().ask(path.absolute(), timeout)
    if reply.get("crashed", True):
        raise RuntimeLoadError(_crash_message(path, reply, timeout))
    logger.debug(
        "executorch: %s verified in a probe process in %.2f s (%s)",
        path.name,
        time.perf_counter() - started,
        reply.get("error") or ("ran on zeros" if reply.get("ran") else "loaded"),
    )
    _verified.add(digest)


def close_probe() -> None:
    """Stop the probe process (the next unverified file starts a new one)."""
    global _probe
    with _lock:
        probe, _probe = _probe, None
    if probe is not None:
        probe.close()


atexit.register(close_probe)


def _running_probe() -> _ProbeProcess:
    global _probe
    if _probe is None or not _probe.alive():
        if _probe is not None:
            _probe.close()
        _probe = None
        _probe = _ProbeProcess()
    return _probe


def _crash_message(path: Path, reply: dict[str, Any], timeout: float) -> str:
    version = _executorch_version()
    cause = f"the file is corrupt or made for another ExecuTorch version (this is {version})"
    if reply.get("hung"):
        return (
            f"executorch: {path} did not load and run on zeros within {timeout:.0f} s in a probe "
            f"process (stopped); {cause}"
        )
    if "signal" in reply:
        how = _signal_name(int(reply["signal"]))
    elif "exit" in reply:
        how = f"exit code {reply['exit']}"
    else:
        how = str(reply.get("error") or "no answer")
    last = _useful_line(str(reply.get("log", "")))
    how += f": {last}" if last else ""
    return (
        f"executorch: {path} crashed ExecuTorch ({how}) when loaded and run on zeros in a probe "
        f"process; {cause}"
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _useful_line(log: str) -> str:
    """The log's last line, unless it is ExecuTorch's routine logging (``[file.cpp:12] ...``)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    if not lines or lines[-1].startswith("["):
        return ""
    line = lines[-1]
    return line if len(line) <= 200 else line[:197] + "..."


def _executorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ExecuTorch {version('executorch')}"
    except PackageNotFoundError:
        return "an unknown ExecuTorch"


class _ProbeProcess:
    """The probe process: started here, answers one JSON line per file (see the child script)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="slimkit-pte-probe-"))
        self.log = self.folder / "probe.log"
        with self.log.open("wb") as sink:  # the child's imports may talk: never to the terminal
            self.process = subprocess.Popen(
                [sys.executable, "-c", _RUN_CHILD, str(_CHILD), str(self.folder)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
                cwd=self.folder,
                env=os.environ | _ONE_THREAD,
                text=True,
                start_new_session=True,  # Ctrl-C is this process's; the probe ends on end of input
            )
        self.started = time.perf_counter()
        self.ready = False

    def _wait_ready(self) -> None:
        """Wait for the child's ``{"ready": true}``: its imports done."""
        line = self._read_line(STARTUP_S)
        if not line.strip().startswith("{"):
            code = self.process.poll()
            why = f"no answer in {STARTUP_S:.0f} s" if code is None else f"exit code {code}"
            last = self._last_log_line()
            self.close()
            raise RuntimeLoadError(
                "executorch: the probe process that tries .pte files before loading them did not "
                f"start ({why}{': ' + last if last else ''}); check that "
                f"`{sys.executable} -c 'import executorch.runtime'` works"
            )
        self.ready = True
        logger.debug(
            "executorch: probe process ready %.1f s after its start",
            time.perf_counter() - self.started,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, path: Path, timeout_s: float) -> dict[str, Any]:
        """Try one file; a probe process that dies or stops answering is a crash of the file."""
        if not self.ready:
            self._wait_ready()
        process = self.process
        assert process.stdin is not None
        request = json.dumps({"path": str(path), "timeout_s": timeout_s})
        try:
            process.stdin.write(request + "\n")
            process.stdin.flush()
            line = self._read_line(timeout_s + REPLY_MARGIN_S)
        except OSError:
            line = ""
        with contextlib.suppress(ValueError):
            return dict(json.loads(line))
        hung = process.poll() is None
        reply: dict[str, Any] = {"crashed": True, "log": self._last_log_line()}
        self.close()
        if hung:
            reply["hung"] = True
        elif process.returncode < 0:
            reply["signal"] = -process.returncode
        else:
            reply["exit"] = process.returncode
        return reply

    def _read_line(self, timeout_s: float) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            ready, _, _ = select.select([stdout], [], [], timeout_s)
            return stdout.readline() if ready else ""
        except (OSError, ValueError):
            return ""

    def _last_log_line(self) -> str:
        try:
            return _useful_line(self.log.read_text(errors="replace")[-2000:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the process (end of input, then a kill) and remove its folder."""
        process = self.process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                try:  # the process and the fork trying a file: its session's group
                    os.killpg(process.pid, signal.SIGKILL)
                except (OSError, AttributeError):  # gone already, or no process groups
                    process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)

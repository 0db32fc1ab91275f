"""What stops a trial that is not the candidate's fault: an interruption, or the machine.

A trial stopped so is retried on the next run and never counted as a failure (study.py). This
module tells them apart from a failure of the candidate itself:

- :func:`noting_interrupts` notes SIGINT/SIGTERM in :data:`INTERRUPTED` while a worker runs: the
  KeyboardInterrupt a signal raises can be wrapped in another error (torch's exporters) or lost
  (a C extension being imported at that moment), and the trial then fails in some other way;
  :func:`caused_by_interrupt` still knows;
- :func:`environment_problem` recognises a full disk, a read-only or unwritable run folder (by the
  error, or by trying to write there); memory is left out on purpose: a search space may hold
  models too big for the machine, and those are the candidate's failures;
- :func:`signals_held` lets the retry marks be written before a second Ctrl-C acts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# errors of the machine, not of the candidate: the trial is retried on the next run
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
    | {errno.EMFILE, errno.ENFILE}
)
ENVIRONMENT_MESSAGES = ("No space left on device", "Read-only file system", "Disk quota exceeded")
PROBE_BYTES = 256 * 1024


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while inside (a second Ctrl-C waits until the retry marks are
    written); one that came meanwhile is delivered on leaving. Only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: Any) -> None:
        pending.append(signum)

    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, note) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            signal.raise_signal(pending[0])


def environment_text(text: str) -> bool:
    """Whether an error's text (as a record kept it) says the machine failed, not the candidate."""
    return any(words in text for words in ENVIRONMENT_MESSAGES) or "[Errno 28]" in text


def environment_problem(error: BaseException, folder: str | os.PathLike[str] | None) -> str | None:
    """Why a trial failed because of the machine (disk full, read-only, ...), else None.

    Looks for an ``OSError`` of such a kind in the error's chain or words, then tries to write a
    small file in ``folder`` (some writers, e.g. ``torch.save``, lose the ``errno``).
    """
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return os.strerror(current.errno)
        for words in ENVIRONMENT_MESSAGES:
            if words in str(current):
                return words
        current = current.__cause__ or current.__context__
    if folder is None:
        return None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as probe_error:
        return probe_error.strerror or str(probe_error)
    return None


# set when this process got SIGINT/SIGTERM inside run_worker: the KeyboardInterrupt it raises
# can be lost (a C extension importing at that moment swallows it) or wrapped in another error,
# and a trial failing after it must not count as the candidate's failure
INTERRUPTED = threading.Event()


@contextlib.contextmanager
def noting_interrupts() -> Iterator[None]:
    """Set :data:`INTERRUPTED` on SIGINT (and SIGTERM when Python handles it), then do as before."""
    INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}

    def noting(signum: int, frame: Any) -> None:
        INTERRUPTED.set()
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif signum == signal.SIGINT and handler == signal.SIG_DFL:
            raise KeyboardInterrupt

    wrapped = [n for n, h in previous.items() if callable(h) or n == signal.SIGINT]
    for number in wrapped:
        signal.signal(number, noting)
    try:
        yield
    finally:
        for number in wrapped:
            signal.signal(number, previous[number])


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether this process was interrupted, or a KeyboardInterrupt lies in the error's chain
    (a library may wrap what it catches)."""
    if INTERRUPTED.is_set():
        return True
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt):
            return True
        current = current.__cause__ or current.__context__
    return False

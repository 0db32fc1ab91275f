"""The study's journal file (Optuna's ``JournalFileBackend``), repaired on open, never left torn.

Optuna appends one JSON line per operation. A write that fails part-way (disk full, a process
killed inside ``write``) leaves a *torn* last line with no newline; Optuna's readers skip it, but
the next writer appended its record onto it, which made one undecodable line, and from then on
every reader failed with ``JSONDecodeError``.

:class:`SafeJournalBackend` mends this at both ends, always under the journal's lock:

- a write that raises (``ENOSPC``, ``KeyboardInterrupt``) truncates the file back to where it
  started, and every write first drops a torn tail left by a writer that was killed;
- :func:`repair_journal` (run on open when the file does not end in a newline, or when it cannot
  be read) drops a torn last record and, in a file already damaged by the old behaviour, keeps the
  complete record that was appended onto a torn one; each drop is logged with what was lost;
- :class:`JournalLock`: a wait for the lock that is interrupted (Ctrl-C) never removes the lock
  of the process that holds it, as Optuna's did.

Only bytes no reader can have consumed are removed (a line counts once its newline is written), so
the byte offsets other processes have cached stay valid.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

logger = logging.getLogger(__name__)

RECORD_START = b'{"op_code":'
OPERATIONS = {
    0: "create study",
    1: "delete study",
    2: "set study attribute",
    3: "set study system attribute",
    4: "create trial",
    5: "set trial parameter",
    6: "set trial state",
    7: "report intermediate value",
    8: "set trial attribute",
    9: "set trial system attribute",
    10: "discard trials",
}


def describe_record(raw: bytes) -> str:
    """What a (possibly torn) record was, e.g. ``'set trial attribute' (trial 3), 57 bytes``."""
    text = raw.decode("utf-8", errors="replace")
    op = re.search(r'"op_code":\s*(\d+)', text)
    trial = re.search(r'"trial_id":\s*(\d+)', text)
    what = f"{OPERATIONS.get(int(op.group(1)), 'unknown')!r}" if op else "an unreadable record"
    if trial:
        what += f" (trial id {trial.group(1)})"
    return f"{what}, {len(raw)} bytes"


def _decodes(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def _salvage(line: bytes) -> bytes | None:
    """The complete record appended onto a torn one (``<torn><record>\\n``), if there is one."""
    start = line.find(RECORD_START, 1)
    while start != -1:
        if _decodes(line[start:]):
            return line[start:]
        start = line.find(RECORD_START, start + 1)
    return None


def _repaired_lines(content: bytes) -> tuple[list[bytes], list[str], bool]:
    """Lines to keep (with their newlines), a description of each piece dropped, and whether
    any damage lies inside the file (not only in its torn tail)."""
    kept: list[bytes] = []
    lost: list[str] = []
    lines = content.split(b"\n")
    tail = lines.pop()  # after the last newline: empty, or a torn record
    for line in lines:
        if _decodes(line):
            kept.append(line + b"\n")
            continue
        record = _salvage(line)
        if record is not None:
            lost.append(describe_record(line[: len(line) - len(record)]))
            kept.append(record + b"\n")
        else:
            lost.append(describe_record(line))
    inside = bool(lost)
    if tail:
        lost.append(describe_record(tail))
    return kept, lost, inside


def torn_tail(path: str) -> int | None:
    """The size the file should have if its last record is torn (no newline), else None."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        end = size
        while end > 0:  # scan back for the last newline, a block at a time
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            found = block.rfind(b"\n")
            if found != -1:
                return start + found + 1
            end = start
        return 0


def drop_torn_tail(path: str) -> str | None:
    """Truncate a torn last record away (caller holds the lock); returns what was lost."""
    keep = torn_tail(path)
    if keep is None:
        return None
    with open(path, "rb") as f:
        f.seek(keep)
        lost = describe_record(f.read())
    os.truncate(path, keep)
    logger.warning(
        "%s: dropped a torn last record (%s), left by a write that failed (disk full or "
        "a process killed while writing); the complete records are kept",
        path,
        lost,
    )
    return lost


def repair_journal(path: str) -> list[str]:
    """Drop torn records from a journal file (caller holds the lock); returns what was lost.

    A torn tail is truncated in place (no space needed). Damage inside the file (a record
    appended onto a torn one by an older slimkit) is rewritten through a temporary file and an
    atomic rename.
    """
    with open(path, "rb") as f:
        content = f.read()
    kept, lost, inside = _repaired_lines(content)
    if not inside:  # at most a torn tail: cut it off in place
        dropped = drop_torn_tail(path)
        return [dropped] if dropped else []
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".study.journal.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(kept))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    logger.warning(
        "%s: dropped %d damaged record(s) (%s), left by writes that failed (disk full or a "
        "process killed while writing); the %d complete records are kept",
        path,
        len(lost),
        "; ".join(lost),
        len(kept),
    )
    return lost


class JournalLock(JournalFileOpenLock):
    """Optuna's lock file (``study.journal.lock``), minus two hazards of its ``acquire``.

    Interrupted while waiting (Ctrl-C), Optuna's lock removes the lock file although another
    process holds it; that process's release then fails (``RuntimeError``). Here an interrupted
    wait leaves the file alone, a lock left by a killed writer is taken over only if it is the
    same file after ``grace_period`` seconds, and a release of a lock taken over meanwhile is
    logged, not raised.
    """

    def acquire(self) -> bool:
        """Create the lock file (waiting while another process holds it)."""
        delay = 0.001
        seen: tuple[int, float] | None = None
        changed = time.monotonic()
        while True:
            try:
                os.close(os.open(self._lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return True
            except FileExistsError:
                pass
            try:
                stat = os.stat(self._lock_file)
            except FileNotFoundError:
                continue
            if (stat.st_ino, stat.st_mtime) != seen:
                seen, changed = (stat.st_ino, stat.st_mtime), time.monotonic()
            elif self.grace_period is not None and time.monotonic() - changed > self.grace_period:
                logger.warning("%s: its holder is gone; taking the lock over", self._lock_file)
                with suppress(FileNotFoundError):
                    os.unlink(self._lock_file)
                seen = None
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Remove the lock file (a lock taken over by another process is left to it)."""
        try:
            super().release()
        except RuntimeError:
            logger.warning("%s was taken over while held (a write took too long)", self._lock_file)


class SafeJournalBackend(JournalFileBackend):
    """Optuna's journal file backend whose writes never leave a torn record behind.

    Example:
        >>> import optuna, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "study.journal")
        >>> storage = optuna.storages.JournalStorage(SafeJournalBackend(path))
    """

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path, lock_obj=JournalLock(file_path))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the journal's lock (the one every writer takes)."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def repair(self) -> list[str]:
        """Drop torn records under the lock; returns what was lost (see :func:`repair_journal`)."""
        with self.locked():
            lost = repair_journal(self._file_path)
        self._log_number_offset = {0: 0}  # byte offsets of lines may have moved
        return lost

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append records; on any failure the file is cut back to where this write started."""
        data = b"".join(
            json.dumps(log, separators=(",", ":")).encode("utf-8") + b"\n" for log in logs
        )
        with self.locked():
            drop_torn_tail(self._file_path)  # a writer killed mid-record left it
            start = os.path.getsize(self._file_path)
            try:
                with open(self._file_path, "ab") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                grown = os.path.getsize(self._file_path) > start
                if grown and torn_tail(self._file_path) is not None:
                    os.truncate(self._file_path, start)  # no reader can have read any of it
                raise


def _last_line(path: str) -> bytes:
    """The file's last complete line (without its newline); empty when there is none."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        block = b""
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start) + block
            found = block.rstrip(b"\n").rfind(b"\n")
            if found != -1 or start == 0:
                return block.rstrip(b"\n")[found + 1 :]
            end = start
        return b""


def needs_repair(path: str) -> bool:
    """Whether the journal ends in a torn or undecodable record (looks at the end only: damage
    further up makes Optuna's reader fail, and is repaired then)."""
    try:
        if torn_tail(path) is not None:
            return True
        last = _last_line(path)
        return bool(last) and not _decodes(last)
    except FileNotFoundError:
        return False

"""The probe process of :mod:`slimkit.runtime.pte_probe`: try ``.pte`` files, each in a fork.

Run as a script (``python -c <runpy> pte_probe_child.py FOLDER``), never imported by slimkit: it
imports only ExecuTorch's runtime and torch (once: about 5 s), then says ``{"ready": true}`` on
stdout and answers each line on stdin, ``{"path": ..., "timeout_s": ...}``, with one JSON line.

Each file is tried in a fork of this process, which shares the imports but not the damage a
corrupt file does: the fork loads the program and its ``forward`` method, runs it once on zeros
of its own input shape and batch, frees both (heap corruption often shows only when memory is
freed), and reports. This process never loads a file itself, so it survives every file. The
reply is ``{"crashed": false}`` (the file ran, or ExecuTorch refused it with an error: either
way it did not crash), or ``{"crashed": true, "signal": N}`` / ``"exit": N`` / ``"hung": true``,
each with ``"log"``: the last lines the fork wrote to file descriptor 2 (ExecuTorch's C++ logging,
glibc's heap checks), kept in ``FOLDER/file.log``, rewritten for every file.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import sys
import time
from typing import Any

METHOD = "forward"
MAX_INPUT_BYTES = 1 << 30  # a corrupt file can claim any input shape: run none larger than this
LOG_TAIL = 2000


def run_file(path: str) -> dict[str, Any]:
    """Load ``path``, run its forward once on zeros, free everything: what happened."""
    import torch
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    method = program.load_method(METHOD)
    ran = False
    if method is not None:
        meta = method.metadata
        if meta.num_inputs() == 1:
            sizes = [int(d) for d in meta.input_tensor_meta(0).sizes()]
            if math.prod(sizes) * 4 <= MAX_INPUT_BYTES:
                outputs = method.execute([torch.zeros(sizes, dtype=torch.float32)])
                del outputs
                ran = True
    del method, program
    return {"crashed": False, "ran": ran}


def _fork_side(path: str, log_path: str, reply_fd: int, protocol_fd: int) -> None:
    """The fork: fd 0 from /dev/null, fds 1 and 2 to the log; one JSON reply; never returns."""
    try:
        os.close(protocol_fd)  # only the probe process answers its parent
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            reply = run_file(path)
        except Exception as error:  # ExecuTorch refused the file: an error, not a crash
            text = str(error).strip().splitlines()
            reply = {
                "crashed": False,
                "error": f"{type(error).__name__}: {text[0] if text else ''}",
            }
        data = json.dumps(reply).encode()
        while data:
            data = data[os.write(reply_fd, data) :]
    finally:
        os._exit(0)


def _read_reply(reply_fd: int, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the fork writes until it closes its end; and whether the time ran out."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([reply_fd], [], [], remaining)[0]:
            return b"".join(chunks), True
        chunk = os.read(reply_fd, 65536)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def _log_tail(log_path: str) -> str:
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - LOG_TAIL, 0))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def try_file(path: str, timeout_s: float, log_path: str, protocol_fd: int) -> dict[str, Any]:
    """Try ``path`` in a fork of this process; stop it after ``timeout_s`` seconds."""
    if not hasattr(os, "fork"):  # no fork (Windows): try it here; a crash ends this process
        try:
            return run_file(path)
        except Exception as error:
            return {"crashed": False, "error": f"{type(error).__name__}: {error}"}
    reply_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reply_fd)
        _fork_side(path, log_path, write_fd, protocol_fd)
    os.close(write_fd)
    try:
        data, hung = _read_reply(reply_fd, timeout_s)
    finally:
        os.close(reply_fd)
    if hung:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if not hung and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data:
        return dict(json.loads(data))
    reply: dict[str, Any] = {"crashed": True, "log": _log_tail(log_path)}
    if hung:
        reply["hung"] = True
    elif os.WIFSIGNALED(status):
        reply["signal"] = os.WTERMSIG(status)
    else:
        reply["exit"] = os.waitstatus_to_exitcode(status)
    return reply


def main() -> int:
    folder = sys.argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; this one ends on EOF
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever native code prints goes to the log, not into the protocol
    import torch  # noqa: F401  (imported once here, shared by every fork)
    from executorch.runtime import Runtime

    Runtime.get()
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    log_path = os.path.join(folder, "file.log")
    for line in sys.stdin:
        request = json.loads(line)
        reply = try_file(
            str(request["path"]), float(request["timeout_s"]), log_path, protocol.fileno()
        )
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The child process of the arena probe: try arena sizes in TFLite Micro, one JSON line each.

Run as a script (``python mcu_probe_child.py MODEL STDERR_FILE``), never imported by slimkit: it
imports only ``tflite_micro`` and NumPy, so it starts fast, and a crash of the interpreter (a
too-small arena can crash this build) kills this process, not the user's.

Each line on stdin is ``try N`` or ``record N``: build an interpreter with an ``N``-byte arena,
run one all-zero sample, and answer one JSON line on stdout ``{"arena": N, "ok": ..., "error":
..., "log": ...}``; ``record`` also prints the interpreter's allocation record and returns it. The
interpreter's messages (its C++ code writes to file descriptor 2) go to ``STDERR_FILE``, rewritten
for every attempt, so the parent can still read the last one after a crash.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

RECORD_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def attempt(model: bytes, arena: int, record: bool, stderr_path: str) -> dict[str, Any]:
    """Build, run one sample, and report; TFLite Micro's messages are captured from fd 2."""
    import numpy as np
    from tflite_micro import runtime

    reply: dict[str, Any] = {"arena": arena, "ok": False, "error": "", "record": {}}
    sys.stderr.flush()
    saved = os.dup(2)
    with open(stderr_path, "w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
            details = interpreter.get_input_details(0)
            interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
            interpreter.invoke()
            interpreter.get_output(0)
            if record:
                interpreter.print_allocations()
            reply["ok"] = True
        except Exception as error:  # TFLite Micro raises RuntimeError when the arena is short
            reply["error"] = f"{type(error).__name__}: {error}"
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    reply["log"] = text[-2000:]
    reply["record"] = {kind: int(value) for kind, value in RECORD_LINE.findall(text)}
    return reply


def main() -> int:
    model_path, stderr_path = sys.argv[1], sys.argv[2]
    with open(model_path, "rb") as handle:
        model = handle.read()
    for line in sys.stdin:
        command, _, size = line.strip().partition(" ")
        if command not in ("try", "record"):
            break
        reply = attempt(model, int(size), command == "record", stderr_path)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

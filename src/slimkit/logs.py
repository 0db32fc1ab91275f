"""Where other libraries' output goes: their loggers, their warnings and their native stderr.

slimkit logs and never prints; the libraries it drives are louder. torch, onnxscript, absl,
TensorFlow (inside litert-torch), ExecuTorch and Optuna log through Python loggers, some with
handlers of their own, and the C++ runtimes (LiteRT's interpreter, ExecuTorch's cpuinfo and thread
pool) write straight to file descriptor 2, past Python. Two tools keep that off a terminal:

- :func:`native_output_captured` redirects file descriptor 2 to a temporary file around a call
  into native code. What was written is logged at DEBUG on ``slimkit.native`` and, if the call
  raises, attached to the exception as a note, so an error keeps its context. With
  ``SLIMKIT_DEBUG=1`` in the environment (``slimkit --debug`` sets it, child processes inherit
  it), nothing is redirected: the text reaches the terminal as it is written.
- :func:`route_library_logs` (for the command line) shows slimkit's own records at the chosen
  level and other libraries' records only with ``debug``; Python warnings go through the same
  filter.

Example:
    >>> with native_output_captured("litert") as native:  # doctest: +SKIP
    ...     interpreter.allocate_tensors()
    >>> native.text  # doctest: +SKIP
    'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger("slimkit.native")

DEBUG_ENV = "SLIMKIT_DEBUG"
NOTE_LINES = 40  # the last lines of native output kept in an exception's note

# C++ logging of TensorFlow (under litert-torch) and gRPC/absl: errors only
_NATIVE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}

_lock = threading.RLock()  # one redirect at a time: file descriptor 2 is the whole process's


@dataclass
class NativeOutput:
    """What native code wrote to file descriptor 2 inside :func:`native_output_captured`."""

    what: str
    text: str = ""
    captured: bool = False  # False: the output went to the terminal (debug)


def debugging() -> bool:
    """Whether ``SLIMKIT_DEBUG`` asks for everything (``slimkit --debug`` sets it for its
    child processes)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def native_output_captured(what: str) -> Iterator[NativeOutput]:
    """Send what is written to file descriptor 2 in the block to a temporary file.

    Python's own ``sys.stderr`` writes made in the block are captured too (they share the
    descriptor). Child processes started in the block inherit the redirect.

    Args:
        what: a label for the log record and the note (e.g. ``"litert"``).

    Yields:
        A :class:`NativeOutput` whose ``text`` is filled when the block ends.
    """
    output = NativeOutput(what)
    if debugging():
        yield output
        return
    with _lock, tempfile.TemporaryFile() as sink:
        _flush_stderr()
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 (a daemon): nothing to keep off a terminal
            yield output
            return
        try:
            os.dup2(sink.fileno(), 2)
            try:
                yield output
            finally:
                _flush_stderr()
                os.dup2(saved, 2)
                output.captured = True
                sink.seek(0)
                output.text = sink.read().decode("utf-8", "replace")
                if output.text.strip():
                    logger.debug("%s wrote to stderr:\n%s", what, output.text.rstrip())
        except Exception as error:
            _attach(error, output)
            raise
        finally:
            os.close(saved)


def _flush_stderr() -> None:
    with contextlib.suppress(Exception):  # a closed or replaced sys.stderr
        sys.stderr.flush()


def _attach(error: BaseException, output: NativeOutput) -> None:
    """Keep the native text with the error: its last lines as a note (shown in tracebacks)."""
    lines = output.text.rstrip().splitlines()
    if not lines:
        return
    tail = "\n".join(lines[-NOTE_LINES:])
    more = f" (last {NOTE_LINES} of {len(lines)} lines)" if len(lines) > NOTE_LINES else ""
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(f"{output.what} wrote to stderr{more}:\n{tail}")


class OwnRecordsOnly(logging.Filter):
    """Passes slimkit's records; other libraries' (and Python warnings) only with ``debug``."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        return self.debug or record.name == "slimkit" or record.name.startswith("slimkit.")


def route_library_logs(handler: logging.Handler, *, debug: bool, verbose: bool) -> None:
    """Log slimkit's records through ``handler``; keep other libraries quiet unless ``debug``.

    slimkit's records show from WARNING (INFO with ``verbose``, DEBUG with ``debug``). Other
    libraries' records, Python warnings included, show only with ``debug``. Libraries that
    install their own handlers are turned down too: torch through ``TORCH_LOGS`` (read at its
    import; its level when it is already imported), Optuna by :func:`route_optuna_logs` where it
    is used, TensorFlow's C++ logging through ``TF_CPP_MIN_LOG_LEVEL``. With ``debug``,
    ``SLIMKIT_DEBUG=1`` lets native output through here and in child processes.
    """
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler.addFilter(OwnRecordsOnly(debug))
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    logging.captureWarnings(True)
    if debug:
        os.environ[DEBUG_ENV] = "1"
        for name in ("matplotlib", "PIL"):  # font and image-plugin chatter, even for debugging
            logging.getLogger(name).setLevel(logging.INFO)
        return
    os.environ.pop(DEBUG_ENV, None)
    for key, value in _NATIVE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TORCH_LOGS", "-torch")  # torch's loggers: errors only
    if "torch" in sys.modules:  # imported already: TORCH_LOGS was read
        logging.getLogger("torch").setLevel(logging.ERROR)
    if "optuna" in sys.modules:
        route_optuna_logs()


def route_optuna_logs() -> None:
    """Optuna's records through the root logger (and its filter) instead of Optuna's handler.

    Records of WARNING and up (INFO with ``SLIMKIT_DEBUG``) reach the root; a program that
    configured no logging sees Optuna's warnings as Python's last-resort handler prints them.
    """
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.INFO if debugging() else optuna.logging.WARNING)

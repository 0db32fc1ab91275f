"""Local worker processes of ``run_search``: spawned, stopped, and quiet on Ctrl-C.

Workers 1..N-1 are spawned with SIGINT ignored, so a Ctrl-C during their start-up (``import
torch`` takes seconds) prints no traceback; once ready, SIGINT or SIGTERM makes a worker raise
KeyboardInterrupt once (its running trial is marked for a retry, see study.py) and exit with
status 130, silently. The parent sends SIGTERM to its workers when it stops (Ctrl-C, an error),
and Linux sends it when the parent dies (``PR_SET_PDEATHSIG``), so no worker outlives a search.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

from slimkit.errors import SlimkitError
from slimkit.logs import debugging, route_library_logs, route_optuna_logs
from slimkit.threads import prefer_passive_waiting, use_threads

logger = logging.getLogger(__name__)


def _interrupt_once(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM in a spawned worker: one KeyboardInterrupt, later ones ignored.

    Later ones get a handler that does nothing rather than ``SIG_IGN``: a signal already on its
    way (Ctrl-C, then the parent's SIGTERM) would otherwise print "ignored due to race condition".
    """
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: Any) -> None:
    """A signal after the first: the worker is already stopping."""


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (so a killed search leaves no workers)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup has to do
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def child_worker(
    settings: dict[str, Any],
    storage: str | None,
    index: int,
    threads: int,
    wait_s: float,
    parent: int,
) -> None:
    """The target of a spawned process: worker ``index`` of ``run_search`` (exits 0, 1 or 130)."""
    from slimkit.search.run import SearchSettings, work  # while SIGINT is still ignored

    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    code = 0
    try:
        _die_with_parent(parent)
        use_threads(threads)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"worker {index}: %(message)s"))
        # the parent's rule: slimkit's warnings, other libraries' records only with --debug
        route_library_logs(handler, debug=debugging(), verbose=False)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-missing noise
        route_optuna_logs()
        work(SearchSettings.from_dict(settings), storage, worker_index=index, wait_s=wait_s)
    except KeyboardInterrupt:
        code = 130  # quietly: the trial is marked for a retry, the parent reports
    except (SlimkitError, OSError) as error:
        logger.error("%s", error)
        code = 1
    finally:  # shutting down (atexit hooks run next): a Ctrl-C now has nothing to stop
        signal.signal(signal.SIGINT, _ignore)
        signal.signal(signal.SIGTERM, _ignore)
    sys.exit(code)


def start_children(
    settings: dict[str, Any], storage: str | None, workers: int, threads: int, wait_s: float
) -> list[Any]:
    """Spawn workers 1..N-1 (``settings``: ``SearchSettings.to_dict()``) with SIGINT ignored
    until each is ready to handle it."""
    prefer_passive_waiting()  # the children's OpenMP threads sleep when idle (they inherit it)
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=child_worker,
            args=(settings, storage, index, threads, wait_s, os.getpid()),
            daemon=False,
        )
        for index in range(1, workers)
    ]
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main and children else None
    try:
        for child in children:
            child.start()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return children


def stop_children(children: list[Any], timeout_s: float = 60.0) -> None:
    """SIGTERM the workers still running (each marks its trial for a retry), then wait."""
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(timeout_s)
        if child.is_alive():
            child.kill()
            child.join()

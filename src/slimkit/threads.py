"""One thread policy: how many threads each pool slimkit starts may use, and that none spins.

slimkit computes with several thread pools, often in one process: PyTorch's intra-op (OpenMP,
which also runs MKL and oneDNN) and inter-op pools, ONNX Runtime's, OpenBLAS's under NumPy,
XNNPACK's in LiteRT and ExecuTorch, and the search's worker processes. Each sized to every core
and waiting *actively* for its next piece of work, they take the CPU from one another and from
everything else on the machine: on 2 cores under moderate load the demo once spent 8.7 times the
CPU time it needs on an idle machine (625 s against 72 s). Every pool's size is decided here,
from one number, the command's ``--threads`` (a function's ``threads=``):

- :func:`resolve_threads`: ``None`` is the CPUs this process may run on
  (``os.sched_getaffinity``); a larger request is cut to that, because threads beyond the CPUs
  only wait on one another.
- PyTorch intra-op threads (and its inter-op pool, once per process) and NumPy's BLAS follow
  :func:`compute_threads` (a context) or :func:`use_threads` (the rest of the process: the CLI).
- OpenMP threads sleep when they have no work: :func:`prefer_passive_waiting` puts
  ``OMP_WAIT_POLICY=PASSIVE`` in the environment (unless the user chose a policy) before torch is
  first imported, and child processes inherit it. OpenMP reads it once, when torch loads it.
- ONNX Runtime sessions come from :func:`onnxruntime_options`: the count and spinning off
  (``session.intra_op.allow_spinning`` and ``session.inter_op.allow_spinning`` = ``"0"``).
- LiteRT interpreters are made with ``num_threads``, and ExecuTorch's process-wide XNNPACK pool is
  resized to the runner's count (:mod:`slimkit.runtime.litert`, :mod:`slimkit.runtime.executorch`).
- ``workers`` search processes share the threads: each gets :func:`threads_per_worker`.
- Data loading is in-process slicing of tensors: no loader worker processes.

Latency measurement keeps the thread counts it is given (a recipe's ``target.threads``,
``slimkit bench --threads``): that count is what is being measured.

Example:
    >>> with compute_threads(1) as threads:  # doctest: +SKIP
    ...     train(model, data, config)  # PyTorch computes on 1 thread here
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from slimkit.errors import ConfigError

logger = logging.getLogger(__name__)

WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")

_current: int | None = None  # the count of the innermost compute_threads / use_threads


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to compute with: ``threads``, at most :func:`available_cpus`.

    ``None`` is the count in effect (an enclosing :func:`compute_threads` or :func:`use_threads`),
    else every CPU this process may use.

    Raises:
        ConfigError: ``threads`` is not an int >= 1.

    Example:
        >>> resolve_threads(10_000) == available_cpus()
        True
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads must be an int >= 1 (or unset: every CPU); got {threads!r}")
    cpus = available_cpus()
    wanted = threads if threads is not None else (_current or cpus)
    if wanted > cpus:
        if threads is not None:
            logger.warning(
                "threads=%d but this process may use %d CPUs: computing on %d threads",
                threads,
                cpus,
                cpus,
            )
        return cpus
    return wanted


def current_threads() -> int:
    """The thread count in effect (see :func:`resolve_threads`)."""
    return resolve_threads(None)


def threads_per_worker(threads: int | None, workers: int) -> int:
    """Each of ``workers`` processes' share of ``threads`` (at least 1)."""
    return max(1, resolve_threads(threads) // max(1, workers))


def prefer_passive_waiting() -> bool:
    """Make OpenMP threads sleep, not spin, when idle (``OMP_WAIT_POLICY=PASSIVE``, unless set).

    Takes effect in a process that has not imported torch yet, and in every child process started
    afterwards. Returns whether it took effect in this process.
    """
    name, value = WAIT_POLICY
    os.environ.setdefault(name, value)
    late = "torch" in sys.modules
    if late:
        logger.debug("%s set after torch was imported: it applies to child processes only", name)
    return not late


def _set_torch_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _set_torch_interop_threads(threads: int) -> None:
    """PyTorch's inter-op pool: settable once, before it has run anything; else left as is."""
    import torch

    if torch.get_num_interop_threads() == threads:
        return
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already started or already set in this process
        logger.debug("PyTorch's inter-op pool already runs; left at its size")


def _blas_limits(threads: int) -> Any:
    """A context limiting NumPy's BLAS pool (OpenBLAS/MKL) to ``threads``; a no-op without
    threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


@contextlib.contextmanager
def compute_threads(threads: int | None = None) -> Iterator[int]:
    """Compute on ``threads`` threads inside the block; the previous counts come back after it.

    Sets PyTorch's intra-op threads, NumPy's BLAS threads and the count
    :func:`onnxruntime_options` and :func:`current_threads` give. Yields the count.
    """
    global _current
    count = resolve_threads(threads)
    previous = _current
    import torch

    torch_before = torch.get_num_threads()
    _current = count
    try:
        _set_torch_threads(count)
        with _blas_limits(count):
            yield count
    finally:
        _current = previous
        if torch.get_num_threads() != torch_before:
            torch.set_num_threads(torch_before)


def use_threads(threads: int | None = None) -> int:
    """Compute on ``threads`` threads from now on in this process (the CLI's ``--threads``).

    Also sizes PyTorch's inter-op pool (once per process) and NumPy's BLAS. Returns the count.
    """
    global _current
    count = resolve_threads(threads)
    _current = count
    _set_torch_threads(count)
    _set_torch_interop_threads(count)
    _blas_limits(count)  # threadpool_limits applies at once; it is never restored here
    return count


def onnxruntime_options(ort: Any, threads: int | None = None) -> Any:
    """``ort.SessionOptions`` of a CPU session: ``threads`` intra-op threads (None: the count in
    effect; an explicit count is kept as given: it may be the one being measured), one inter-op
    thread, and no thread spinning while waiting for work.

    Example:
        >>> import onnxruntime
        >>> options = onnxruntime_options(onnxruntime, 1)
        >>> options.get_session_config_entry("session.intra_op.allow_spinning")
        '0'
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = current_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options

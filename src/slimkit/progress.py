"""Progress of the long verbs: the ``progress=`` argument of train, compress, measure, optimize.

``progress=`` takes:

- ``None`` (the default): a tqdm bar when running in a Jupyter notebook (and no slimkit verb
  around this one shows progress already), nothing elsewhere: the library logs and never prints.
- ``False``: nothing.
- ``True``: a tqdm bar per stage (a widget in a notebook, text on stderr elsewhere).
- a callable: called with a :class:`ProgressEvent` after each unit of work (an epoch, a
  calibration batch, a measurement step, a candidate, a trial).

Example:
    >>> events = []
    >>> slimkit.train(model, data, TrainConfig(epochs=2), progress=events.append)  # doctest: +SKIP
    >>> str(events[-1])  # doctest: +SKIP
    'train: 2/2 loss 0.4120 val 91.67%'
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from slimkit.errors import ConfigError


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long call: ``done`` of ``total`` units of ``stage`` finished.

    ``stage`` names the work (``train``, ``calibrate``, ``compress``, ``measure``, ``baseline``,
    ``candidates``, ``search``); ``total`` is None where it is not known; ``info`` is a short
    human line (``"loss 0.41 val 97.10%"``, ``"onnxruntime: latency at batch 64"``).
    """

    stage: str
    done: int
    total: int | None
    info: str = ""

    def __str__(self) -> str:
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return f"{self.stage}: {count}" + (f" {self.info}" if self.info else "")


ProgressFn = Callable[[ProgressEvent], None]
Progress = bool | ProgressFn | None

# the reporter of the outermost verb that shows progress: a verb inside it (the training inside
# compress, say) reports there instead of opening a bar of its own
_active: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar(
    "slimkit_progress", default=None
)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


@contextlib.contextmanager
def reporting(progress: Progress) -> Iterator[ProgressFn | None]:
    """The function behind a verb's ``progress=`` argument, for the length of the call.

    Yields None when nothing is to be shown. Bars opened for ``True`` (or in a notebook) are
    closed when the block ends.
    """
    outer = _active.get()
    if progress is None:
        if outer is not None:
            yield outer  # part of a call that already shows progress
            return
        progress = in_notebook()
    if progress is False:
        yield None
        return
    if progress is True:
        bars = TqdmBars()
        token = _active.set(bars)
        try:
            yield bars
        finally:
            _active.reset(token)
            bars.close()
        return
    if not callable(progress):
        raise ConfigError(
            "progress must be None, True, False or a function taking a ProgressEvent; "
            f"got {progress!r}"
        )
    token = _active.set(progress)
    try:
        yield progress
    finally:
        _active.reset(token)


class TqdmBars:
    """A tqdm bar per stage (``tqdm.auto``: a widget in notebooks), closed by :meth:`close`."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        bar = self.bars.get(event.stage)
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=event.total, desc=event.stage, leave=True, dynamic_ncols=True)
            self.bars[event.stage] = bar
        if bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        bar.set_postfix_str(event.info, refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Close the bars."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

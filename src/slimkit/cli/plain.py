"""Progress where the output is not a terminal: one plain, flushed line per stage, epoch or trial.

A rich progress bar or spinner draws nothing into a pipe or a log file until it stops, so a long
command written to a file looked dead for minutes. Where stdout is not a terminal, the commands'
bars become :class:`PlainProgress` (a line when a task's message changes, and when it finishes)
and ``console.status(...)`` becomes :class:`PlainStatus` (a line per message)::

    train lenet5: epoch 3/10 loss 0.4133 val 97.10% (12 s, ETA 28 s)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import TaskID


def duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``4 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 90:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0
    info: str = ""
    count: bool = True  # show "completed/total" in the line
    started: float = 0.0
    finished: bool = False


class PlainProgress:
    """Stands in for :class:`rich.progress.Progress` (the calls the commands make) off a terminal.

    A task prints a line when its ``info`` changes and once when it completes; updates of the
    count alone print nothing (a training step, a calibration batch). ``count=False`` in
    :meth:`add_task` leaves ``completed/total`` out of the line (when ``info`` says it better).
    """

    plain = True

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tasks: dict[TaskID, _Task] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start: lines are printed as they come."""

    def stop(self) -> None:
        """Nothing to stop."""

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: float = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        task_id = TaskID(len(self.tasks))
        self.tasks[task_id] = _Task(
            description,
            total,
            completed,
            str(fields.get("info", "")),
            bool(fields.get("count", True)),
            time.perf_counter(),
        )
        return task_id

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        info = fields.get("info")
        news = info is not None and str(info) != task.info
        if news:
            task.info = str(info)
        done = task.total is not None and task.completed >= task.total and not task.finished
        if done:
            task.finished = True
        if news or done:
            self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)

    def line(self, task: _Task) -> str:
        """``description: [done/total] info (elapsed, ETA left)``."""
        elapsed = time.perf_counter() - task.started
        parts = [f"{task.description}:"]
        if task.count and task.total is not None:
            parts.append(f"{task.completed:g}/{task.total:g}")
        if task.info:
            parts.append(task.info)
        timing = duration(elapsed)
        if task.total and 0 < task.completed < task.total:
            left = elapsed * (task.total - task.completed) / task.completed
            timing += f", ETA {duration(left)}"
        return " ".join(parts) + f" ({timing})"


class PlainStatus:
    """Stands in for a rich spinner (``console.status``) off a terminal: a line per message."""

    def __init__(self, console: Console, status: object) -> None:
        self.console = console
        self.last = ""
        self.update(status)

    def __enter__(self) -> PlainStatus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def update(self, status: object = None, **options: Any) -> None:
        text = self.console.render_str(str(status)).plain if status is not None else ""
        if text and text != self.last:
            self.last = text
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


class ProgressConsole(Console):
    """A rich console whose ``status`` spinner prints plain lines where it is not a terminal."""

    def status(self, status: Any, **options: Any) -> Any:
        if self.is_terminal:
            return super().status(status, **options)
        return PlainStatus(self, status)

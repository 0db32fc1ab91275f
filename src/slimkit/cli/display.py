"""Terminal output: rich tables of records and a training progress bar with ETA."""

from __future__ import annotations

from collections.abc import Sequence

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from slimkit.cli.app import console
from slimkit.cli.plain import PlainProgress
from slimkit.measure import MeasureRecord
from slimkit.report import records_table
from slimkit.train import Callback, TrainState


def make_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> Table:
    """A rich table; numeric-looking columns are right-aligned."""
    table = Table(title=title or None, show_lines=False, header_style="bold")
    for i, name in enumerate(header):
        numeric = rows and all(_looks_numeric(row[i]) for row in rows)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    return table


def _looks_numeric(cell: str) -> bool:
    text = str(cell).replace(",", "").replace("%", "").split(" ")[0]
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def print_records(records: Sequence[MeasureRecord], title: str = "") -> None:
    """Print measurement records as one table."""
    header, rows = records_table(records)
    console.print(make_table(header, rows, title))


def progress_bar() -> Progress | PlainProgress:
    """A progress bar with a description, count, elapsed time and ETA; off a terminal (a pipe, a
    log file), a plain line per message instead (:class:`~slimkit.cli.plain.PlainProgress`)."""
    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class TrainProgress(Callback):
    """Shows training as one bar over all optimizer steps, with the last epoch's loss and
    validation accuracy (off a terminal: a line per epoch)."""

    def __init__(self, progress: Progress | PlainProgress, description: str = "train") -> None:
        self.progress = progress
        self.description = description
        self.task: TaskID | None = None

    def on_train_start(self, state: TrainState) -> None:
        self.task = self.progress.add_task(
            self.description, total=state.total_steps, info="", count=False
        )

    def on_step_end(self, state: TrainState) -> None:
        if self.task is not None and state.step % 10 == 0:
            self.progress.update(self.task, completed=state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        last = state.history[-1]
        if self.task is not None:
            self.progress.update(
                self.task,
                completed=state.step,
                info=f"epoch {last.epoch}/{state.config.epochs} loss {last.train_loss:.4f} "
                f"val {100 * last.val_accuracy:.2f}%",
            )

    def on_train_end(self, state: TrainState) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=state.total_steps)

"""``slimkit report RUN``: re-render a run's report (Markdown, HTML, plots) from its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from slimkit.cli.app import app, console
from slimkit.cli.options import check_inputs_exist

if TYPE_CHECKING:
    from slimkit.report import Report


def print_report(report: Report) -> None:
    """Print the run status and a table of the baseline and the frontier candidates."""
    from slimkit.cli.display import make_table
    from slimkit.report import frontier_table, status_line
    from slimkit.report.columns import frontier_candidates, table_notes

    header, rows = frontier_table(report)
    style = "green" if report.complete else "bold red"
    console.print(f"[{style}]{escape(status_line(report))}[/]")
    safe_rows = [[escape(cell) for cell in row] for row in rows]
    title = (
        f"{report.name}: baseline and Pareto front ({report.runtime}, batch {report.batch_size})"
    )
    console.print(make_table(header, safe_rows, title=escape(title)))
    for note in table_notes(report, frontier_candidates(report)):
        console.print(escape(note), style="yellow")


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="A run folder (runs/NAME) holding report.json."),
) -> None:
    """Re-render a run's report.md, report.html and plots from its report.json."""
    check_inputs_exist(run, what="run folder", folder=True)
    from slimkit.report import load_report, write_report

    report = load_report(run)
    paths = write_report(report, run if run.suffix != ".json" else run.parent)
    print_report(report)
    for name in ("report.html", "report.md", "report.json"):
        console.print(f"{name.split('.')[1]}: {escape(str(paths[name]))}")
    plots = ", ".join(escape(str(p)) for n, p in paths.items() if n.endswith((".png", ".svg")))
    console.print(f"plots: {plots}")

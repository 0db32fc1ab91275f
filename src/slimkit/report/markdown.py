"""``report.md``: the run's status, its fronts and the candidate table, as GitHub Markdown."""

from __future__ import annotations

from collections.abc import Iterable

from slimkit.measure.environment import describe_cpu
from slimkit.report.candidates import Report
from slimkit.report.columns import candidate_table, fronts, status_line, table_notes
from slimkit.report.plots import PLOTS
from slimkit.report.table import markdown_table


def markdown_text(text: object) -> str:
    """``text`` safe inside a Markdown table cell or line: pipes, markup and newlines escaped."""
    out = str(text).replace("\\", "\\\\").replace("\r", " ").replace("\n", " ")
    for char in "|*_`[]<>#":
        out = out.replace(char, "\\" + char)
    return out


def environment_line(environment: dict[str, object]) -> str:
    """``AMD EPYC (2 cores; avx2) · Linux 6.1 · Python 3.11 · torch 2.6, onnxruntime 1.20``."""
    parts = []
    if all(k in environment for k in ("cpu", "cpu_count", "cpu_features")):
        parts.append(describe_cpu(dict(environment)))
    parts += [str(environment[k]) for k in ("system",) if environment.get(k)]
    if environment.get("python"):
        parts.append(f"Python {environment['python']}")
    packages = environment.get("packages")
    if isinstance(packages, dict):
        versions = [f"{name} {version}" for name, version in packages.items() if version]
        if versions:
            parts.append(", ".join(versions))
    return " · ".join(parts) or "unknown"


def _list(names: Iterable[str]) -> str:
    items = [markdown_text(n) for n in names]
    return ", ".join(items) if items else "(none measured yet)"


def render_markdown(report: Report, plot_files: Iterable[str] = ()) -> str:
    """The whole ``report.md``; ``plot_files`` are image file names beside it to show.

    Example:
        >>> print(render_markdown(report))  # doctest: +SKIP
        # slimkit report: digits
        ...
    """
    columns, rows = candidate_table(report)
    header = [c.header for c in columns]
    cells = [[markdown_text(cell.text) for cell in row] for row in rows]
    on_fronts = fronts(report)
    lines = [
        f"# slimkit report: {markdown_text(report.name)}",
        "",
        f"**{status_line(report)}**",
        "",
        f"Runtime **{markdown_text(report.runtime)}**, batch size {report.batch_size}, "
        f"{report.threads} thread(s)"
        + (f"; created {report.created_at}" if report.created_at else ""),
        "",
    ]
    if report.stages:
        lines += ["## Stages", ""]
        lines += [
            f"- {markdown_text(stage.get('name', '?'))}: {markdown_text(stage.get('status', '?'))}"
            for stage in report.stages
        ]
        lines.append("")
    lines += [
        "## Fronts",
        "",
        f"- accuracy vs latency: {_list(on_fronts['latency'])}",
        f"- accuracy vs size: {_list(on_fronts['size'])}",
        "",
    ]
    images = [name for name in plot_files if name.endswith(".png")]
    titles = {f"{stem}.png": f"accuracy vs {axis}" for axis, (stem, _) in PLOTS.items()}
    lines += [f"![{titles.get(name, name)}]({name})" for name in images]
    if images:
        lines.append("")
    lines += [
        f"## Candidates ({len(report.candidates)})",
        "",
        markdown_table(header, cells),
        "",
        "Drop is in accuracy points vs the baseline; speed-up and compression are baseline ÷ "
        "candidate (p50 latency, file bytes).",
        "",
    ]
    lines += [f"{markdown_text(note)}\n" for note in table_notes(report)]
    failed = [c for c in report.candidates if c.error]
    if failed:
        lines += ["## Failed candidates", ""]
        lines += [f"- {markdown_text(c.name)}: {markdown_text(c.error or '')}" for c in failed]
        lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {markdown_text(n)}" for n in report.notes] + [""]
    lines += ["## Machine", "", environment_line(report.environment), ""]
    return "\n".join(lines)

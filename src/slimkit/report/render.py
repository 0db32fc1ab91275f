"""Write a report to its run folder (JSON, Markdown, HTML, plots) and read it back.

``report.json`` is the source of truth: ``slimkit report RUN`` re-renders everything else from it,
so a report can be redrawn after slimkit's renderings improve, without re-running anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from slimkit.errors import ConfigError
from slimkit.io import write_json_atomic, write_text_atomic
from slimkit.report.candidates import REPORT_VERSION, Report
from slimkit.report.columns import candidate_table, frontier_candidates
from slimkit.report.html import render_html
from slimkit.report.markdown import render_markdown
from slimkit.report.plots import write_plots

REPORT_FILE = "report.json"
REQUIRED_KEYS = ("name", "recipe", "runtime", "batch_size", "threads", "environment")


def write_report(report: Report, run_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, the plots, ``report.md`` and ``report.html`` into ``run_dir``.

    Every file is written atomically: an interrupted write leaves the previous version in place.

    Returns:
        The written paths by file name (``"report.json"``, ``"report.html"``,
        ``"accuracy_latency.png"``, ...).

    Example:
        >>> paths = write_report(report, "runs/digits")  # doctest: +SKIP
        >>> paths["report.html"]
        PosixPath('runs/digits/report.html')
    """
    folder = Path(run_dir)
    paths = {REPORT_FILE: write_json_atomic(folder / REPORT_FILE, report.to_dict())}
    plot_paths, images = write_plots(report, folder)
    paths.update(plot_paths)
    paths["report.md"] = write_text_atomic(
        folder / "report.md", render_markdown(report, plot_paths)
    )
    paths["report.html"] = write_text_atomic(folder / "report.html", render_html(report, images))
    return paths


def load_report(run_dir: str | Path) -> Report:
    """Read ``run_dir/report.json`` (or a ``report.json`` path given directly).

    Raises:
        ConfigError: the folder has no ``report.json``, or it is not a slimkit report.
    """
    given = Path(run_dir)
    path = given if given.suffix == ".json" else given / REPORT_FILE
    if not path.is_file():
        where = "does not exist" if not given.exists() else f"has no {REPORT_FILE}"
        raise ConfigError(
            f"{given} {where}; pass a run folder made by `slimkit optimize RECIPE` (e.g. runs/NAME)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is not a valid slimkit report: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} is not a valid slimkit report: expected a JSON object, got "
            f"{type(data).__name__}"
        )
    version = data.get("report_version", REPORT_VERSION)
    if not isinstance(version, int) or version > REPORT_VERSION:
        raise ConfigError(
            f"{path} has report_version {version!r}; this slimkit reads up to {REPORT_VERSION} "
            "(upgrade slimkit to render it)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ConfigError(
            f"{path} is not a valid slimkit report: missing key(s) {', '.join(missing)}"
        )
    try:
        report = Report.from_dict(data)
        report.to_dict()  # derived columns and fronts must compute from what was read
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise ConfigError(f"{path} is not a valid slimkit report: {error}") from error
    return report


def frontier_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows (plain text) of the baseline and the candidates on either front."""
    columns, rows = candidate_table(report, frontier_candidates(report))
    keep = [i for i, c in enumerate(columns) if c.key not in ("source", "params")]
    header = [columns[i].header for i in keep]
    return header, [[row[i].text for i in keep] for row in rows]

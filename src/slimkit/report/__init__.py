"""Reports: measurement records as tables, and a run's candidates as JSON, Markdown, HTML, plots."""

from slimkit.report.candidates import REPORT_VERSION, Candidate, Report
from slimkit.report.columns import (
    candidate_table,
    frontier_candidates,
    stage_progress,
    status_line,
    technique_label,
)
from slimkit.report.html import render_html
from slimkit.report.markdown import render_markdown
from slimkit.report.plots import plot_axes, plot_points, render_plot, write_plots
from slimkit.report.render import frontier_table, load_report, write_report
from slimkit.report.table import (
    format_bytes,
    format_count,
    latency_settings,
    markdown_table,
    records_table,
)

__all__ = [
    "REPORT_VERSION",
    "Candidate",
    "Report",
    "candidate_table",
    "format_bytes",
    "format_count",
    "frontier_candidates",
    "frontier_table",
    "latency_settings",
    "load_report",
    "markdown_table",
    "plot_axes",
    "plot_points",
    "records_table",
    "render_html",
    "render_markdown",
    "render_plot",
    "stage_progress",
    "status_line",
    "technique_label",
    "write_plots",
    "write_report",
]

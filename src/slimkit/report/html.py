"""``report.html``: one self-contained page a person can open from disk and send to a colleague.

No network: the plots are embedded as base64 PNG data URIs, the CSS and the table sorter are
inline, and a Content-Security-Policy forbids the page from loading anything else. Every piece of
text from the report is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from slimkit.report.candidates import Candidate, Report
from slimkit.report.columns import (
    candidate_table,
    fronts,
    status_line,
    table_notes,
    technique_label,
)
from slimkit.report.markdown import environment_line
from slimkit.report.plots import PLOTS

MACHINE_KEYS = ("cpu", "cpu_count", "cpu_features", "machine", "system", "python")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1280px;
padding:1rem 1.5rem;color:#1d2329;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #dde}
.meta{color:#555}.status{padding:.5rem .8rem;border-radius:4px;font-weight:600}
.status.complete{background:#e6f4ea;color:#14532d}.status.incomplete{background:#fdecea;color:#8a1c1c}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;flex:1 1 560px}
.plots img{width:100%;height:auto;border:1px solid #e3e6ea}figcaption{color:#555;font-size:.85rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:.3rem .55rem;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}thead th{background:#f4f6f8;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
tr.front td:first-child{font-weight:600}tr.failed{color:#8a1c1c}tr.baseline{background:#fff8e1}
.wide{overflow-x:auto}
details{margin:.4rem 0;border:1px solid #e3e6ea;border-radius:4px;padding:.3rem .7rem}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;font-size:.85rem}
pre.error{background:#fdecea;color:#8a1c1c}
"""

# Click (or Enter on) a header: sort by that column ascending, again: descending. Cells sort by
# their data-sort value, numerically in data-type="number" columns; empty values always go last.
SCRIPT = """
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, index) {
      function sortBy() {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var numeric = th.getAttribute("data-type") === "number";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[index].getAttribute("data-sort") || "";
          var y = b.cells[index].getAttribute("data-sort") || "";
          if (x === "" || y === "") { return (x === "") - (y === ""); }
          var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(); }
      });
    });
  });
})();
"""


def escape(value: object) -> str:
    """``value`` as escaped HTML text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def _pre(data: Any) -> str:
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).strip()
    except yaml.YAMLError:
        text = json.dumps(data, indent=2, default=str)
    return f"<pre>{escape(text)}</pre>"


def _key_values(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>" for k, v in data.items()
    )
    return f"<table>{rows}</table>"


def _records_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain table of dicts (per-layer facts, latency settings); columns are the union of keys."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(row.get(k)))}</td>" for k in keys) + "</tr>"
        for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="wide">{table}</div>'


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def candidate_details(candidate: Candidate, index: int) -> str:
    """One collapsible ``<details>`` block: configs, parity, per-layer facts, latency, error."""
    facts = {"source": candidate.source, "techniques": technique_label(candidate.techniques)}
    if candidate.trial is not None:
        facts["trial"] = str(candidate.trial)
    if candidate.artifact:
        facts["artifact"] = candidate.artifact
    extra = {
        k: v
        for k, v in candidate.details.items()
        if k != "layers" and not isinstance(v, (dict, list))
    }
    parts = [_key_values({**facts, **extra})]
    if candidate.error:
        parts.append(f'<h4>Error</h4><pre class="error">{escape(candidate.error)}</pre>')
    if candidate.techniques:
        parts.append("<h4>Technique configs</h4>" + _pre(candidate.techniques))
    if candidate.model:
        parts.append("<h4>Model</h4>" + _pre(candidate.model))
    if candidate.training:
        parts.append("<h4>Training</h4>" + _pre(candidate.training))
    if candidate.parity:
        parts.append("<h4>Parity with PyTorch</h4>" + _key_values(candidate.parity))
    layers = candidate.details.get("layers")
    if isinstance(layers, list) and layers and all(isinstance(x, dict) for x in layers):
        parts.append("<h4>Per-layer sparsity / bit widths</h4>" + _records_table(layers))
    latency = (candidate.record or {}).get("latency")
    if isinstance(latency, list) and latency and all(isinstance(x, dict) for x in latency):
        parts.append("<h4>Latency settings</h4>" + _records_table(latency))
    label = escape(technique_label(candidate.techniques))
    summary = f'{escape(candidate.name)} <span class="meta">({label})</span>'
    return (
        f'<details id="candidate-{index}" class="candidate"><summary>{summary}</summary>'
        + "".join(parts)
        + "</details>"
    )


def _num(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _table(report: Report) -> str:
    columns, rows = candidate_table(report)
    head = "".join(
        f'<th scope="col" tabindex="0" data-key="{escape(c.key)}" '
        f'data-type="{"number" if c.numeric else "text"}"{_num(c.numeric)}>{escape(c.header)}</th>'
        for c in columns
    )
    on_fronts = fronts(report)
    front_names = set(on_fronts["latency"]) | set(on_fronts["size"])
    body = []
    for candidate, row in zip(report.candidates, rows, strict=True):
        classes = [
            "front" if candidate.name in front_names else "",
            "failed" if candidate.error else "",
            "baseline" if candidate.name == report.baseline else "",
        ]
        cells = "".join(
            f'<td data-sort="{escape("" if cell.sort is None else cell.sort)}"'
            f"{_num(column.numeric)}>{escape(cell.text)}</td>"
            for column, cell in zip(columns, row, strict=True)
        )
        body.append(f'<tr class="{" ".join(c for c in classes if c)}">{cells}</tr>')
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table_notes(report))
    return (
        '<div class="wide"><table id="candidates-table" class="sortable">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{notes}"
    )


def _plots(report: Report, images: Mapping[str, bytes]) -> str:
    figures = []
    for axis, png in images.items():
        stem = PLOTS[axis][0]
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure><img id="plot-{axis}" class="plot" alt="accuracy vs {axis}" '
            f'src="data:image/png;base64,{data}"><figcaption>Accuracy vs {axis}; the step line '
            f"is the Pareto front, the star the baseline. Also saved as {stem}.png and "
            f"{stem}.svg beside this page.</figcaption></figure>"
        )
    return '<div class="plots">' + "".join(figures) + "</div>" if figures else "<p>No plots.</p>"


def render_html(report: Report, images: Mapping[str, bytes]) -> str:
    """The whole ``report.html``; ``images`` maps a plot axis (``"latency"``...) to PNG bytes.

    Example:
        >>> from slimkit.report.plots import render_plot
        >>> png = render_plot(report, "latency")["png"]  # doctest: +SKIP
        >>> page = render_html(report, {"latency": png})  # doctest: +SKIP
    """
    on_fronts = fronts(report)
    status_class = "complete" if report.complete else "incomplete"
    stages = "".join(
        f"<li>{escape(s.get('name', '?'))}: {escape(s.get('status', '?'))}</li>"
        for s in report.stages
    )
    front_list = "".join(
        f"<li>accuracy vs {escape(axis)}: {escape(', '.join(names) or '(none measured yet)')}</li>"
        for axis, names in on_fronts.items()
    )
    details = "".join(candidate_details(c, i) for i, c in enumerate(report.candidates))
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    packages = report.environment.get("packages")
    versions = {k: v for k, v in packages.items() if v} if isinstance(packages, dict) else {}
    machine: dict[str, Any] = {
        k: report.environment[k] for k in MACHINE_KEYS if k in report.environment
    }
    machine_line = escape(environment_line(report.environment))
    created = f"; created {escape(report.created_at)}" if report.created_at else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>slimkit report: {escape(report.name)}</title><style>{CSS}</style></head>
<body>
<header><h1>slimkit report: {escape(report.name)}</h1>
<p class="meta">Runtime <b>{escape(report.runtime)}</b>, batch size {escape(report.batch_size)},
{escape(report.threads)} thread(s){created}. Measured on {machine_line}.</p>
</header>
<p id="run-status" class="status {status_class}">{escape(status_line(report))}</p>
{f'<ul id="stages">{stages}</ul>' if stages else ""}
<h2>Fronts</h2><ul id="fronts">{front_list}</ul>
{_plots(report, images)}
<h2>Candidates ({len(report.candidates)})</h2>
<p class="meta">Click a column header to sort. Drop is in accuracy points vs the baseline;
speed-up and compression are baseline ÷ candidate (p50 latency, file bytes).</p>
{_table(report)}
<h2>Candidate details</h2>{details}
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Machine and versions</h2>{_key_values(machine)}{_key_values(versions) if versions else ""}
<details><summary>Recipe</summary>{_pre(report.recipe)}</details>
<script>{SCRIPT}</script>
</body></html>
"""

"""The report's renderings: fronts, derived columns, JSON, Markdown, HTML, plots and the CLI."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimkit.cli import app
from slimkit.errors import ConfigError
from slimkit.pareto import dominates
from slimkit.report import (
    Candidate,
    Report,
    frontier_table,
    load_report,
    render_markdown,
    write_report,
)
from slimkit.report.columns import candidate_table, table_notes
from slimkit.report.plots import render_plot

MALICIOUS = '<script>alert("x")</script> & <img src=x onerror=alert(1)> $\\frac{'


class PageParser(HTMLParser):
    """Collects the candidate table's rows (cell texts), every tag's attributes and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self.headers: list[str] = []
        self._in_table = False
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table" and attributes.get("id") == "candidates-table":
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            (self.rows[-1] if self._in_body else self.headers).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def test_fronts_and_derived_columns_match_the_hand_computed_values(report: Report) -> None:
    assert report.front("latency") == ["baseline", "int8 PTQ", "trial 3"]
    assert report.front("size") == ["baseline", "pruned 50%", "trial 3"]
    # the oracle: nothing on a front is dominated by any measured candidate
    for axis, cost in (("latency", "latency_p50_ms"), ("size", "file_bytes")):
        points = {c.name: (c.accuracy, getattr(c, cost)) for c in report.measured()}
        for name in report.front(axis):
            assert not any(dominates(p, points[name], ("max", "min")) for p in points.values())
    int8 = report.derived(report.candidate("int8 PTQ"))  # type: ignore[arg-type]
    assert int8["drop_points"] == pytest.approx(0.5)
    assert int8["speedup"] == pytest.approx(2.0 / 0.8)
    assert int8["compression"] == pytest.approx(250_000 / 70_000)
    failed = report.derived(report.candidate("lowrank r4"))  # type: ignore[arg-type]
    assert failed == {"drop_points": None, "speedup": None, "compression": None}


def test_json_round_trip_keeps_every_candidate_and_metric(report: Report, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path)
    loaded = load_report(tmp_path)
    assert loaded.to_dict() == report.to_dict()
    on_disk = json.loads(paths["report.json"].read_text())
    assert [c["name"] for c in on_disk["candidates"]] == [c.name for c in report.candidates]
    assert on_disk["fronts"]["size"] == ["baseline", "pruned 50%", "trial 3"]
    assert load_report(paths["report.json"]).name == report.name  # the file itself works too


def test_html_has_one_row_per_candidate_with_the_derived_columns(
    report: Report, tmp_path: Path
) -> None:
    page = write_report(report, tmp_path)["report.html"].read_text()
    parser = parse(page)
    assert [row[0] for row in parser.rows] == [c.name for c in report.candidates]
    int8 = dict(zip(parser.headers, parser.rows[1], strict=True))
    assert int8["accuracy"] == "97.50%"
    assert int8["drop (pts)"] == "0.50"
    assert int8["speed-up"] == "2.50×"
    assert int8["compression"] == "3.57×"
    assert int8["front"] == "latency"
    assert dict(zip(parser.headers, parser.rows[3], strict=True))["front"] == "latency, size"
    assert dict(zip(parser.headers, parser.rows[4], strict=True))["accuracy"] == "failed"
    # per-candidate details: one <details> each, with configs, layers and the error
    candidates = [a for tag, a in parser.tags if tag == "details" and a.get("class") == "candidate"]
    assert len(candidates) == len(report.candidates)
    assert "calibration: mse" in page and "ExportError: the exporter" in page
    assert "Per-layer sparsity / bit widths" in page and "Test CPU (2 cores; avx2, fma)" in page


def test_html_loads_nothing_from_the_network(report: Report, tmp_path: Path) -> None:
    page = write_report(report, tmp_path)["report.html"].read_text()
    parser = parse(page)
    references = [
        (tag, value)
        for tag, attributes in parser.tags
        for key, value in attributes.items()
        if key in ("src", "href") and value
    ]
    images = [value for tag, value in references if tag == "img"]
    assert len(images) == 2 and all(v.startswith("data:image/png;base64,") for v in images)
    assert not [(t, v) for t, v in references if v.startswith(("http:", "https:", "//"))]
    assert not [t for t, a in parser.tags if t == "link" or (t == "script" and "src" in a)]
    assert "http://" not in page and "https://" not in page


def test_malicious_names_are_escaped_everywhere(
    report_factory: Callable[..., Report], tmp_path: Path
) -> None:
    evil = Candidate(
        MALICIOUS,
        techniques=[{"technique": "<b>x</b>"}],
        accuracy=0.5,
        latency_p50_ms=9.0,
        file_bytes=900_000,
        error=None,
        details={"layers": [{"name": "<i>layer</i>"}]},
    )
    report = report_factory(extra=[evil])
    paths = write_report(report, tmp_path)
    page = paths["report.html"].read_text()
    assert MALICIOUS not in page and "<b>x</b>" not in page and "<i>layer</i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in page
    parser = parse(page)
    assert parser.rows[-1][0] == MALICIOUS  # shown as the literal text
    assert sum(1 for tag, _ in parser.tags if tag == "script") == 1  # only the sorter
    markdown = paths["report.md"].read_text()
    assert "<script>" not in markdown and "\\<script\\>" in markdown


def test_an_interrupted_run_says_so(report_factory: Callable[..., Report], tmp_path: Path) -> None:
    paths = write_report(report_factory(complete=False), tmp_path)
    expected = "INCOMPLETE: interrupted run, 2 of 5 stages finished"
    assert expected in paths["report.html"].read_text()
    assert expected in paths["report.md"].read_text()
    complete = write_report(report_factory(complete=True), tmp_path / "complete")
    assert "INCOMPLETE" not in complete["report.html"].read_text()
    assert "Complete: 5 of 5 stages finished" in complete["report.md"].read_text()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_files_are_valid_png_and_svg(report: Report, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path)
    for stem in ("accuracy_latency", "accuracy_size"):
        width, height = _png_size(paths[f"{stem}.png"])
        assert width > 300 and height > 200
        root = ElementTree.parse(paths[f"{stem}.svg"]).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "accuracy_ram.png" not in paths and not (tmp_path / "accuracy_ram.png").exists()
    assert "![accuracy vs latency](accuracy_latency.png)" in paths["report.md"].read_text()


def test_microcontroller_candidates_get_a_ram_plot_and_arena_columns(
    report_factory: Callable[..., Report], tmp_path: Path
) -> None:
    report = report_factory()
    for i, candidate in enumerate(report.measured()):
        candidate.details.update(arena_bytes=(i + 1) * 20_000, flash_bytes=(i + 1) * 50_000)
    paths = write_report(report, tmp_path)
    assert _png_size(paths["accuracy_ram.png"])[0] > 300
    parser = parse(paths["report.html"].read_text())
    assert "arena (RAM)" in parser.headers and "flash" in parser.headers
    assert len(parser.tags) and sum(1 for t, _ in parser.tags if t == "img") == 3


def test_a_report_with_no_measured_candidate_still_renders(tmp_path: Path) -> None:
    report = Report("empty", {}, "onnxruntime", 1, 1, {}, stages=[{"name": "baseline"}])
    paths = write_report(report, tmp_path)
    assert "INCOMPLETE: interrupted run, 0 of 1 stages finished" in paths["report.md"].read_text()
    assert parse(paths["report.html"].read_text()).rows == []
    assert _png_size(paths["accuracy_size.png"])[0] > 0


def test_markdown_has_the_same_table_and_the_fronts(report: Report) -> None:
    text = render_markdown(report)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(report.candidates)  # header + one row each
    assert "- accuracy vs size: baseline, pruned 50%, trial 3" in text
    assert "| int8 PTQ | technique | 97.50% | 0.50 |" in text


def test_frontier_table_is_the_baseline_and_the_fronts(report: Report) -> None:
    header, rows = frontier_table(report)
    assert [row[0] for row in rows] == ["baseline", "int8 PTQ", "pruned 50%", "trial 3"]
    assert "speed-up" in header and len(rows[0]) == len(header)


def test_load_report_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_report(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"has no report\.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid slimkit report"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ConfigError, match="missing key"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"report_version": 99}))
    with pytest.raises(ConfigError, match="report_version 99"):
        load_report(tmp_path)


def test_cli_report_rerenders_from_the_json(
    report_factory: Callable[..., Report], tmp_path: Path
) -> None:
    write_report(report_factory(complete=False), tmp_path)
    (tmp_path / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file()
    assert "INCOMPLETE: interrupted run, 2 of 5 stages finished" in result.output
    assert "trial 3" in result.output and "lowrank r4" not in result.output
    assert str(tmp_path / "report.html") in result.output.replace("\n", "")


def test_far_worse_candidates_are_drawn_at_the_edge_not_stretching_the_axis(
    report_factory: Callable[..., Report],
) -> None:
    from slimkit.report.plots import _clip, plot_points, zoom_floor

    far = Candidate("trial 9", source="search", accuracy=0.52, latency_p50_ms=0.1, file_bytes=9000)
    report = report_factory(extra=[far])
    points = plot_points(report, "latency")
    floor = zoom_floor(points)
    assert floor == pytest.approx(98.0 - 10.0)  # ten points below the baseline's 98%
    shown = {p.name: p for p in _clip(points, floor)}
    edge = shown["trial 9 (52.0%)"]  # its value is in its label
    assert edge.clipped and edge.y == floor and edge.on_front  # the fastest: still on the front
    assert not any(p.clipped for n, p in shown.items() if n != "trial 9 (52.0%)")
    assert zoom_floor(plot_points(report_factory(), "latency")) is None  # nothing far: no zoom
    assert render_plot(report, "latency")["png"].startswith(b"\x89PNG")


def test_unstable_latencies_are_marked_in_every_table(
    report_factory: Callable[..., Report], tmp_path: Path
) -> None:
    def timed(name: str, stable: bool) -> Candidate:
        record = {"latency": [{"batch_size": 1, "threads": 2, "p50_ms": 1.0, "stable": stable}]}
        return Candidate(name, accuracy=0.97, latency_p50_ms=1.0, file_bytes=1000, record=record)

    report = report_factory(extra=[timed("shaky", False), timed("steady", True)])
    columns, rows = candidate_table(report)
    p50 = [c.key for c in columns].index("latency_p50_ms")
    texts = {row[0].text: row[p50].text for row in rows}
    assert texts["shaky"] == "1.000*" and texts["steady"] == "1.000"
    assert texts["int8 PTQ"] == "0.800"  # no record: nothing claimed
    notes = table_notes(report)
    assert len(notes) == 1 and "(shaky)" in notes[0] and "1 of 7" in notes[0]
    paths = write_report(report, tmp_path)
    markdown = paths["report.md"].read_text()
    assert "1.000\\*" in markdown and "(shaky)" in markdown  # * escaped: a mark, not emphasis
    assert "(shaky)" in paths["report.html"].read_text()
    assert table_notes(report_factory()) == []

"""The candidate table every rendering shares: its columns, each cell's text and sort key.

HTML, Markdown and the terminal all show the same numbers because they all come from
:func:`candidate_table`; the derived columns themselves come from :meth:`Report.derived`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slimkit.report.candidates import Candidate, Report
from slimkit.report.table import format_bytes, format_count

# stage statuses that count as finished (a stage is ``{"name": ..., "status": ...}``)
FINISHED_STAGE_STATUSES = ("done", "finished", "complete", "completed", "ok", "skipped")

# details keys shown as columns when any candidate carries them (microcontroller targets)
DETAIL_COLUMNS = {"arena_bytes": "arena (RAM)", "flash_bytes": "flash"}


@dataclass(frozen=True)
class Column:
    """One column: ``key`` names it in code, ``header`` on screen; ``numeric`` sorts by number."""

    key: str
    header: str
    numeric: bool = True


@dataclass(frozen=True)
class Cell:
    """What a cell shows and the value it sorts by (None: missing, sorted last)."""

    text: str
    sort: float | str | None = None


BASE_COLUMNS = (
    Column("name", "name", numeric=False),
    Column("source", "source", numeric=False),
    Column("accuracy", "accuracy"),
    Column("drop_points", "drop (pts)"),
    Column("latency_p50_ms", "p50 ms"),
    Column("latency_p90_ms", "p90 ms"),
    Column("file_bytes", "size"),
    Column("params", "params"),
    Column("macs", "MACs"),
    Column("speedup", "speed-up"),
    Column("compression", "compression"),
    Column("techniques", "techniques", numeric=False),
    Column("front", "front", numeric=False),
)


def technique_label(techniques: Sequence[dict[str, Any]]) -> str:
    """The technique names in order: ``"prune + int8_static"``, or ``"none"`` for the baseline."""
    if not techniques:
        return "none"
    return " + ".join(str(t.get("technique", "?")) for t in techniques)


def detail_keys(report: Report) -> list[str]:
    """The :data:`DETAIL_COLUMNS` keys that at least one candidate carries in ``details``."""
    return [
        k for k in DETAIL_COLUMNS if any(c.details.get(k) is not None for c in report.candidates)
    ]


def candidate_columns(report: Report) -> list[Column]:
    """The base columns plus arena/flash when candidates carry them."""
    extra = [Column(k, DETAIL_COLUMNS[k]) for k in detail_keys(report)]
    return [*BASE_COLUMNS[:9], *extra, *BASE_COLUMNS[9:]]


def fronts(report: Report) -> dict[str, list[str]]:
    """``{"latency": [names...], "size": [names...]}``: the accuracy fronts."""
    return {"latency": report.front("latency"), "size": report.front("size")}


def front_marks(name: str, on_fronts: dict[str, list[str]]) -> str:
    """``"latency, size"``, ``"latency"``, ... or ``""`` for a candidate on no front."""
    return ", ".join(axis for axis, names in on_fronts.items() if name in names)


UNSTABLE_MARK = "*"


def latency_stable(report: Report, candidate: Candidate) -> bool | None:
    """Whether the candidate's timing window at the report's setting settled (None: unknown).

    The harness stops when the medians of the window's two halves agree; a window that never
    did (a machine whose speed changed while it timed) is marked, since its p50 is less sure.
    """
    for stats in (candidate.record or {}).get("latency") or []:
        if (
            isinstance(stats, dict)
            and stats.get("batch_size") == report.batch_size
            and stats.get("threads") == report.threads
            and "stable" in stats
        ):
            return bool(stats["stable"])
    return None


def table_notes(report: Report, candidates: Sequence[Candidate] | None = None) -> list[str]:
    """Footnotes of the table: which marks it uses and what they mean."""
    chosen = report.candidates if candidates is None else candidates
    unstable = [c.name for c in chosen if latency_stable(report, c) is False]
    if not unstable:
        return []
    return [
        f"{UNSTABLE_MARK} p50 of {len(unstable)} of {len(chosen)} candidates "
        f"({', '.join(unstable)}) was timed in a window that never settled (its two halves' "
        "medians differ by more than the tolerance: the machine's speed changed while it timed); "
        "compare those latencies with care, or measure again"
    ]


def _number(value: float | None, fmt: str) -> Cell:
    return Cell("-", None) if value is None else Cell(format(value, fmt), float(value))


def _latency(value: float | None, stable: bool | None) -> Cell:
    cell = _number(value, ".3f")
    return (
        Cell(cell.text + UNSTABLE_MARK, cell.sort)
        if value is not None and stable is False
        else cell
    )


def _ratio(value: float | None) -> Cell:
    return Cell("-", None) if value is None else Cell(f"{value:.2f}×", float(value))


def _drop(value: float | None) -> Cell:
    if value is None:
        return Cell("-", None)
    value = 0.0 if abs(value) < 0.005 else value  # no "-0.00"
    return Cell(f"{value:.2f}", value)


def _bytes(value: Any) -> Cell:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return Cell("-", None)
    return Cell(format_bytes(int(value)), float(value))


def candidate_cells(
    report: Report, candidate: Candidate, on_fronts: dict[str, list[str]]
) -> dict[str, Cell]:
    """Every column's cell for ``candidate``, keyed by column key."""
    derived = report.derived(candidate)
    accuracy = candidate.accuracy
    marks = front_marks(candidate.name, on_fronts)
    label = technique_label(candidate.techniques)
    cells = {
        "name": Cell(candidate.name, candidate.name),
        "source": Cell(candidate.source, candidate.source),
        "accuracy": (
            Cell("failed" if candidate.error else "-", None)
            if accuracy is None
            else Cell(f"{100 * accuracy:.2f}%", 100 * accuracy)
        ),
        "drop_points": _drop(derived["drop_points"]),
        "latency_p50_ms": _latency(candidate.latency_p50_ms, latency_stable(report, candidate)),
        "latency_p90_ms": _number(candidate.latency_p90_ms, ".3f"),
        "file_bytes": _bytes(candidate.file_bytes),
        "params": Cell(format_count(candidate.params), candidate.params),
        "macs": Cell(format_count(candidate.macs), candidate.macs),
        "speedup": _ratio(derived["speedup"]),
        "compression": _ratio(derived["compression"]),
        "techniques": Cell(label, label),
        "front": Cell(marks or "-", marks or None),
    }
    for key in DETAIL_COLUMNS:
        cells[key] = _bytes(candidate.details.get(key))
    return cells


def candidate_table(
    report: Report, candidates: Sequence[Candidate] | None = None
) -> tuple[list[Column], list[list[Cell]]]:
    """Columns and one row of cells per candidate (all of the report's by default)."""
    columns = candidate_columns(report)
    on_fronts = fronts(report)
    chosen = report.candidates if candidates is None else candidates
    rows = []
    for candidate in chosen:
        cells = candidate_cells(report, candidate, on_fronts)
        rows.append([cells[column.key] for column in columns])
    return columns, rows


def frontier_candidates(report: Report) -> list[Candidate]:
    """The baseline then every candidate on either front, in report order, each once."""
    on_fronts = fronts(report)
    names = {report.baseline, *on_fronts["latency"], *on_fronts["size"]}
    return [c for c in report.candidates if c.name in names]


def stage_progress(report: Report) -> tuple[int, int]:
    """``(finished, total)`` stages; a stage is finished when its ``status`` says so."""
    finished = sum(
        1
        for stage in report.stages
        if str(stage.get("status", "")).lower() in FINISHED_STAGE_STATUSES
        or stage.get("done") is True
    )
    return finished, len(report.stages)


def status_line(report: Report) -> str:
    """``"Complete: 5 of 5 stages finished"`` or ``"INCOMPLETE: interrupted run, 2 of 5 ..."``."""
    finished, total = stage_progress(report)
    if report.complete:
        return f"Complete: {finished} of {total} stages finished"
    return f"INCOMPLETE: interrupted run, {finished} of {total} stages finished"

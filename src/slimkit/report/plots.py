"""Accuracy-vs-cost scatter plots of a report's candidates, with the Pareto front drawn.

One plot per axis: latency (p50 ms per batch), size (bytes of the exported file) and, when the
candidates carry ``details["arena_bytes"]`` (microcontroller targets), RAM. The front is the step
line of the best accuracy reachable at each cost; the baseline is a red star. Figures are drawn
with matplotlib's object API on the Agg canvas (no pyplot, no display, no global state).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.errors import MissingDependencyError
from slimkit.io import write_atomic
from slimkit.pareto import pareto_mask
from slimkit.report.candidates import Candidate, Report

# axis → (file stem, x-axis label)
PLOTS = {
    "latency": ("accuracy_latency", "latency p50 (ms per batch)"),
    "size": ("accuracy_size", "file size (KiB)"),
    "ram": ("accuracy_ram", "RAM: tensor arena (KiB)"),
}
FORMATS = ("png", "svg")
LOG_SCALE_RATIO = 20.0  # x spans more than this factor → log scale
LABEL_ALL_UP_TO = 15  # more points than this: label only the front and the baseline
ZOOM_BELOW_POINTS = 10.0  # the y axis shows this many points below the baseline's accuracy


@dataclass(frozen=True)
class Point:
    """One candidate on a plot: cost ``x`` (axis units), accuracy ``y`` (%), front membership."""

    name: str
    x: float
    y: float
    on_front: bool
    baseline: bool
    clipped: bool = False  # drawn at the bottom edge; ``y`` still holds its accuracy


def plot_axes(report: Report) -> list[str]:
    """The axes to plot: latency and size always, RAM when a candidate has ``arena_bytes``."""
    axes = ["latency", "size"]
    if any(_cost(c, "ram") is not None for c in report.measured()):
        axes.append("ram")
    return axes


def _cost(candidate: Candidate, axis: str) -> float | None:
    value: Any
    if axis == "latency":
        value = candidate.latency_p50_ms
    elif axis == "size":
        value = None if candidate.file_bytes is None else candidate.file_bytes / 1024
    else:
        arena = candidate.details.get("arena_bytes")
        value = arena / 1024 if isinstance(arena, (int, float)) else None
    return None if value is None else float(value)


def plot_points(report: Report, axis: str) -> list[Point]:
    """The measured candidates that have a cost on ``axis``, with their front membership."""
    if axis not in PLOTS:
        raise ValueError(f"axis must be one of {', '.join(PLOTS)}; got {axis!r}")
    rows = [(c, _cost(c, axis)) for c in report.measured()]
    kept = [(c, x) for c, x in rows if x is not None]
    accuracies = [100 * (c.accuracy or 0.0) for c, _ in kept]
    mask = pareto_mask([(a, x) for a, (_, x) in zip(accuracies, kept, strict=True)], ("max", "min"))
    return [
        Point(c.name, float(x), a, on, c.name == report.baseline)
        for (c, x), a, on in zip(kept, accuracies, mask, strict=True)
    ]


def zoom_floor(points: list[Point]) -> float | None:
    """The lowest accuracy the y axis shows, or None when every point fits.

    The useful range is near the baseline: a few far worse candidates (a search trial at 52%)
    would otherwise stretch the axis and squeeze every useful point into a thin band. They are
    drawn at the bottom edge instead, labelled with their accuracy.
    """
    if not points:
        return None
    reference = next((p.y for p in points if p.baseline), max(p.y for p in points))
    floor = reference - ZOOM_BELOW_POINTS
    return floor if min(p.y for p in points) < floor else None


def _clip(points: list[Point], floor: float | None) -> list[Point]:
    if floor is None:
        return points
    return [
        Point(f"{p.name} ({p.y:.1f}%)", p.x, floor, p.on_front, p.baseline, True)
        if p.y < floor
        else p
        for p in points
    ]


def _text(name: str, limit: int = 28) -> str:
    """A label matplotlib draws literally (``$`` would start mathtext), cut to ``limit``."""
    short = name if len(name) <= limit else name[: limit - 1] + "…"
    return short.replace("$", r"\$")


# label offsets tried in turn (points from the marker): right-up, right-down, left-up, ...
LABEL_OFFSETS = ((5, 4), (5, -11), (-5, 4), (-5, -11), (5, 14), (5, -21), (-5, 14), (-5, -21))


def _annotate(ax: Any, points: list[Point]) -> None:
    """Label each point at the first offset whose text box overlaps no label placed before.

    Boxes are estimated in points from the axes' share of the figure (labels are 7 pt text, about
    4.2 pt per character); the estimate only has to keep neighbouring labels apart.
    """
    width_in, height_in = ax.figure.get_size_inches()
    size = (width_in * 72 * 0.85, height_in * 72 * 0.8)  # the axes' approximate share
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[float, float, float, float]] = []
    for p in sorted(points, key=lambda p: (-p.y, p.x)):
        fx, fy = to_axes.transform((p.x, p.y))
        x, y = fx * size[0], fy * size[1]
        text = _text(p.name)
        width, height = 4.2 * len(text), 8.0
        choice = None
        for dx, dy in LABEL_OFFSETS:
            left = x + dx if dx > 0 else x + dx - width
            box = (left, y + dy, left + width, y + dy + height)
            inside = box[0] >= 0 and box[2] <= size[0] and box[1] >= 0 and box[3] <= size[1]
            if inside and not any(_overlap(box, other) for other in placed):
                choice = (dx, dy, box)
                break
        if choice is None:  # crowded: keep the default side, flipped near the right edge
            dx, dy = LABEL_OFFSETS[2] if fx > 0.75 else LABEL_OFFSETS[0]
            left = x + dx if dx > 0 else x + dx - width
            choice = (dx, dy, (left, y + dy, left + width, y + dy + height))
        dx, dy, box = choice
        placed.append(box)
        ax.annotate(
            text,
            (p.x, p.y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            fontsize=7,
            color="#333333",
        )


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def render_plot(report: Report, axis: str) -> dict[str, bytes]:
    """Draw the accuracy-vs-``axis`` plot; ``{"png": bytes, "svg": bytes}``."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as error:  # pragma: no cover - matplotlib is a dependency
        raise MissingDependencyError(
            "plots need matplotlib; install it with: pip install matplotlib"
        ) from error
    floor = zoom_floor(plot_points(report, axis))
    points = _clip(plot_points(report, axis), floor)
    xlabel = PLOTS[axis][1]
    figure = Figure(figsize=(7.5, 4.6), dpi=110, layout="constrained")
    ax = figure.subplots()
    others = [p for p in points if not p.on_front and not p.baseline and not p.clipped]
    front = sorted((p for p in points if p.on_front), key=lambda p: (p.x, p.y))
    base = [p for p in points if p.baseline]
    clipped = [p for p in points if p.clipped]
    if clipped:
        ax.scatter(
            [p.x for p in clipped],
            [p.y for p in clipped],
            s=40,
            marker="v",
            color=["#1f6fb2" if p.on_front else "#9aa3ad" for p in clipped],
            label=f"below {floor:.0f}% (value in label)",
            zorder=3,
        )
    if others:
        ax.scatter(
            [p.x for p in others],
            [p.y for p in others],
            s=28,
            color="#9aa3ad",
            label="candidate",
            zorder=2,
        )
    if front:
        ax.step(
            [p.x for p in front],
            [p.y for p in front],
            where="post",
            color="#1f6fb2",
            linewidth=1.5,
            zorder=1,
            label="Pareto front",
        )
        unclipped = [p for p in front if not p.clipped]
        ax.scatter(
            [p.x for p in unclipped], [p.y for p in unclipped], s=36, color="#1f6fb2", zorder=3
        )
    if base:
        ax.scatter(
            [p.x for p in base],
            [p.y for p in base],
            s=200,
            marker="*",
            color="#d62728",
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
            label="baseline"
            if report.baseline == "baseline"
            else f"baseline: {_text(report.baseline)}",
        )
    xs = [p.x for p in points]
    if xs and min(xs) > 0 and max(xs) / min(xs) > LOG_SCALE_RATIO:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.margins(x=0.08, y=0.08)
    if floor is not None:
        top = max(p.y for p in points)
        ax.set_ylim(floor - 0.04 * (top - floor), top + 0.08 * (top - floor))
    labelled = (
        points
        if len(points) <= LABEL_ALL_UP_TO
        else [p for p in points if p.on_front or p.baseline or p.clipped]
    )
    _annotate(ax, labelled)
    if not points:
        ax.text(
            0.5,
            0.5,
            "no measured candidates yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#666666",
        )
    ax.set_xlabel(xlabel + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{_text(report.name, 40)}: accuracy vs {axis} "
        f"({report.runtime}, batch {report.batch_size}, {report.threads} threads)",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    if points:
        ax.legend(loc="best", fontsize=8)
    out = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None
        figure.savefig(buffer, format=fmt, metadata=metadata)
        out[fmt] = buffer.getvalue()
    figure.clear()
    return out


def write_plots(report: Report, run_dir: str | Path) -> tuple[dict[str, Path], dict[str, bytes]]:
    """Write ``accuracy_<axis>.png`` and ``.svg`` for each of :func:`plot_axes` (atomically).

    Returns:
        The paths by file name, and the PNG bytes by axis (for embedding in the HTML).

    Example:
        >>> paths, pngs = write_plots(report, "runs/digits")  # doctest: +SKIP
        >>> sorted(paths)[:2]
        ['accuracy_latency.png', 'accuracy_latency.svg']
    """
    paths: dict[str, Path] = {}
    pngs: dict[str, bytes] = {}
    for axis in plot_axes(report):
        images = render_plot(report, axis)
        pngs[axis] = images["png"]
        for fmt, data in images.items():
            name = f"{PLOTS[axis][0]}.{fmt}"
            paths[name] = write_atomic(Path(run_dir) / name, _bytes_writer(data))
    return paths, pngs


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    def writer(tmp: Path) -> None:
        tmp.write_bytes(data)

    return writer

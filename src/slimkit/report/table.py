"""Records → rows of a table, shared by the terminal (rich), Markdown and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from slimkit.measure.record import MeasureRecord


def format_bytes(n: int | None) -> str:
    """``1234567`` → ``1.18 MiB``."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def format_count(n: int | None) -> str:
    """``266610`` → ``266,610``."""
    return "-" if n is None else f"{n:,}"


def latency_settings(records: Sequence[MeasureRecord]) -> list[tuple[int, int]]:
    """All (batch size, threads) settings present in ``records``, sorted."""
    return sorted({(s.batch_size, s.threads) for r in records for s in r.latency})


def records_table(records: Sequence[MeasureRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per record, one latency column per (batch, threads) setting.

    Latency columns are named ``b{batch} t{threads}`` and hold the p50 in ms per batch; ``max|Δ|``
    and ``agree`` are the parity with the PyTorch model (max abs logit difference, argmax
    agreement).
    """
    settings = latency_settings(records)
    header = ["model", "runtime", "acc", "size", "params", "MACs", "max|Δ|", "agree"]
    header += [f"b{b} t{t}" for b, t in settings]
    rows = []
    for record in records:
        parity = record.parity
        row = [
            record.name,
            record.runtime,
            f"{100 * record.accuracy:.2f}%",
            format_bytes(record.file_bytes),
            format_count(record.params),
            format_count(record.macs),
            f"{parity.max_abs_diff:.1e}" if parity else "-",
            f"{100 * parity.argmax_agreement:.2f}%" if parity else "-",
        ]
        for batch_size, threads in settings:
            stats = record.latency_for(batch_size, threads)
            row.append(f"{stats.p50_ms:.3f}" if stats else "-")
        rows.append(row)
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

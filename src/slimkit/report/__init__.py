"""Reports: measurement records as tables (terminal, Markdown) and files on disk."""

from slimkit.report.table import (
    format_bytes,
    format_count,
    latency_settings,
    markdown_table,
    records_table,
)

__all__ = ["format_bytes", "format_count", "latency_settings", "markdown_table", "records_table"]

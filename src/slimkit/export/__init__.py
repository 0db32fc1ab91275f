"""Exporters: ``export(model, path, format=...)`` writes a file one runtime loads.

Importing this package registers the built-in formats; a new format is a new file here with one
``@register_exporter`` line, plus its import below.
"""

from slimkit.export import onnx  # noqa: F401  (registration side effect)
from slimkit.export.registry import (
    ExporterInfo,
    ExportResult,
    export,
    exporter_info,
    list_formats,
    register_exporter,
)

__all__ = [
    "ExportResult",
    "ExporterInfo",
    "export",
    "exporter_info",
    "list_formats",
    "register_exporter",
]

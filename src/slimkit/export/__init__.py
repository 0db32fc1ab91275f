"""Exporters: ``export(model, path, format=...)`` writes a file one runtime loads.

Importing this package registers the built-in formats; a new format is a new file here with one
``@register_exporter`` line, plus its import below.
"""

from slimkit.export import (  # noqa: F401  (registration side effects)
    executorch,
    litert,
    onnx,
    tflite_micro,
)
from slimkit.export.edge import EdgeExportResult
from slimkit.export.onnxruntime_int8 import quantize_onnx_static, simulate_qdq
from slimkit.export.pt2e import is_quantized_graph, list_quantizers, quantize_pt2e
from slimkit.export.registry import (
    ExporterInfo,
    ExportResult,
    export,
    exporter_info,
    list_formats,
    register_exporter,
)
from slimkit.export.tflite_micro import McuExportResult

__all__ = [
    "EdgeExportResult",
    "ExportResult",
    "ExporterInfo",
    "McuExportResult",
    "export",
    "exporter_info",
    "is_quantized_graph",
    "list_formats",
    "list_quantizers",
    "quantize_onnx_static",
    "quantize_pt2e",
    "register_exporter",
    "simulate_qdq",
]

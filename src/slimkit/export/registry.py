"""The exporter registry: one function per file format, registered by name.

An exporter takes a finished, plain ``nn.Module`` (eval mode, no training wrappers) and writes one
file. Adding a format is one file in this folder and one ``@register_exporter`` line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.errors import ConfigError
from slimkit.logs import native_output_captured


@dataclass(frozen=True)
class ExportResult:
    """What an exporter wrote."""

    path: Path
    format: str
    file_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"path": str(self.path), "format": self.format, "file_bytes": self.file_bytes}


Exporter = Callable[..., ExportResult]


@dataclass(frozen=True)
class ExporterInfo:
    """A registered exporter: format name, file suffix and the export function."""

    name: str
    suffix: str
    function: Exporter


_EXPORTERS: dict[str, ExporterInfo] = {}


def register_exporter(name: str, suffix: str) -> Callable[[Exporter], Exporter]:
    """Register ``function(model, path, *, input_shape, **options) -> ExportResult`` as ``name``."""

    def decorator(function: Exporter) -> Exporter:
        _EXPORTERS[name] = ExporterInfo(name=name, suffix=suffix, function=function)
        return function

    return decorator


def list_formats() -> list[str]:
    """Names of the registered export formats."""
    return sorted(_EXPORTERS)


def exporter_info(format: str) -> ExporterInfo:
    """The registry entry for ``format``; unknown formats raise :class:`ConfigError`."""
    try:
        return _EXPORTERS[format]
    except KeyError:
        raise ConfigError(
            f"unknown export format {format!r}; choose one of: {', '.join(list_formats())}"
        ) from None


def export(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> ExportResult:
    """Export ``model`` to ``path`` in ``format``.

    Args:
        model: a plain model; it is exported in eval mode.
        path: the file to write (written atomically).
        format: a registered format (see :func:`list_formats`).
        input_shape: shape of one sample (C, H, W); defaults to the model's slimkit spec.
        **options: format-specific options (e.g. ``opset`` for ONNX).

    Example:
        >>> from slimkit.models import create_model
        >>> export(create_model("lenet5"), "lenet5.onnx")  # doctest: +SKIP
    """
    info = exporter_info(format)
    if input_shape is None:
        spec = getattr(model, "slimkit_spec", None)
        input_shape = tuple(spec.input_shape) if spec is not None else None
        input_shape = input_shape or getattr(model, "input_shape", None)
        if input_shape is None:
            raise ConfigError(
                "input_shape is needed to export a model not built by slimkit.create_model; "
                "pass input_shape=(C, H, W)"
            )
    with native_output_captured(f"{format} export"):  # converters' C++ logging, TF banners
        return info.function(model, Path(path), input_shape=tuple(input_shape), **options)

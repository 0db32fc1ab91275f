"""Export to LiteRT ``.tflite`` with litert-torch (fp32, or static int8 from a PT2E graph).

``litert_torch.convert(model, (example,))`` traces with ``torch.export`` and lowers to TFLite
operators; the file keeps the model's NCHW input. The batch size is fixed: litert-torch 0.10
cannot lower ``flatten`` with a dynamic batch (its JAX bridge needs concrete reshape sizes) and,
with ``reshape(-1, n)`` instead, converts a file whose inner tensors still have the example's batch
so that XNNPACK refuses to resize it. Export one file per batch size.

int8: a quantized PT2E graph (:func:`slimkit.export.pt2e.quantize_pt2e`, either quantizer) is
converted in litert-torch's static mode; its input and output become int8 tensors with the
graph's scales, and :class:`slimkit.runtime.LiteRTRunner` quantizes and dequantizes at the edges.

The delegation report comes from loading the written file in the LiteRT interpreter (XNNPACK is
applied at load), so it is exactly what the runtime will do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from slimkit.errors import MissingDependencyError
from slimkit.export.edge import (
    EdgeExportResult,
    check_batch_size,
    convert_or_raise,
    eval_mode,
    example_input,
    finish_export,
    slimkit_int8_as_pt2e,
)
from slimkit.export.edge import write_bytes as _write_bytes
from slimkit.export.pt2e import litert_quantizer, quantizer_label
from slimkit.export.registry import register_exporter
from slimkit.io import write_atomic


def _import_litert_torch() -> Any:
    try:
        import litert_torch
        from litert_torch.quantize import quant_config
    except ImportError as error:
        raise MissingDependencyError(
            'exporting to LiteRT needs litert-torch: pip install "slimkit[litert]"'
        ) from error
    return litert_torch, quant_config


@register_exporter("tflite", suffix=".tflite")
def export_litert(
    model: nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    metadata: dict[str, Any] | None = None,
) -> EdgeExportResult:
    """Write ``model`` as a LiteRT flatbuffer for one batch size.

    Args:
        model: a plain float model, a slimkit int8 ``QuantizedModel`` (its own scales), or a
            quantized PT2E graph from :func:`slimkit.export.pt2e.quantize_pt2e`
            (exported as static int8).
        path: the ``.tflite`` file to write.
        input_shape: one sample's shape (C, H, W).
        batch_size: the file's fixed batch size.
        metadata: accepted for a uniform interface; not written into the file (ignored).

    Returns:
        The file, its batch size, the quantizer label (None for fp32) and the delegation report
        of the file loaded in LiteRT with XNNPACK.

    Example:
        >>> export(model, "lenet5-b64.tflite", format="tflite", batch_size=64)  # doctest: +SKIP
    """
    batch_size = check_batch_size(batch_size)
    litert_torch, quant_config = _import_litert_torch()
    model = slimkit_int8_as_pt2e(model)
    quantizer = quantizer_label(model)
    options: dict[str, Any] = {}
    if quantizer is not None:
        # static mode turns the graph's quantize/dequantize pairs into int8 TFLite tensors;
        # the quantizer object only tells litert-torch "static", the scales are the graph's
        options["quant_config"] = quant_config.QuantConfig(pt2e_quantizer=litert_quantizer())
    example = example_input(input_shape, batch_size)
    with eval_mode(model):
        edge_model = convert_or_raise(
            "LiteRT", model, lambda: litert_torch.convert(model, (example,), **options)
        )
    content = convert_or_raise("LiteRT", model, edge_model.model_content)
    write_atomic(path, lambda tmp: _write_bytes(tmp, bytes(content)))
    from slimkit.runtime.litert import LiteRTRunner

    delegation = LiteRTRunner(path, threads=1).delegation()
    return finish_export(
        model,
        path,
        fmt="tflite",
        batch_size=batch_size,
        quantizer=quantizer,
        delegation=delegation,
    )

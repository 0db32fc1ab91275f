"""int8 ONNX with ONNX Runtime's own quantizer (``quantize_static``, QDQ format), labelled as such.

This is ONNX Runtime's post-training static quantization: min-max calibration on the inputs
given, int8 activations and per-channel int8 weights, QuantizeLinear/DequantizeLinear pairs that
ONNX Runtime fuses into integer kernels. It stands in until slimkit's own quantizer writes QDQ
models with its scales; records carry ``QUANTIZER`` so the two are never confused.

Example:
    >>> quantize_onnx_static("m.onnx", "m-int8.onnx", calibration_inputs)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, ExportError
from slimkit.export.edge import EdgeExportResult
from slimkit.io import write_atomic

logger = logging.getLogger(__name__)

QUANTIZER = "onnxruntime-quantize-static-qdq"


def quantize_onnx_static(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_data: np.ndarray,
    *,
    per_channel: bool = True,
    batch_size: int = 64,
) -> EdgeExportResult:
    """Quantize a float ``.onnx`` file to int8 QDQ with ONNX Runtime's ``quantize_static``.

    Args:
        onnx_path: the float model (from ``export(model, "m.onnx")``; single input).
        out_path: the int8 ``.onnx`` file to write.
        calibration_data: float inputs ``(N, C, H, W)`` for min-max calibration.
        per_channel: per-output-channel weight scales (else one scale per tensor).
        batch_size: calibration batch size.

    Returns:
        The written file (dynamic batch: ``batch_size`` is None) labelled ``QUANTIZER``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    data = np.ascontiguousarray(calibration_data, dtype=np.float32)
    if data.ndim < 2 or len(data) == 0:
        raise ConfigError(f"calibration_data must be a non-empty batch; got shape {data.shape}")
    source, target = Path(onnx_path), Path(out_path)
    import onnx

    try:
        input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    except Exception as error:
        raise ExportError(f"cannot read {source} as an ONNX model: {error}") from error

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(data), batch_size))

        def get_next(self) -> dict[str, Any] | None:
            start = next(self.batches, None)
            return None if start is None else {input_name: data[start : start + batch_size]}

    def write(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(source),
                str(tmp),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )

    try:
        write_atomic(target, write)
    except Exception as error:
        raise ExportError(f"onnxruntime quantize_static failed for {source}: {error}") from error
    size = target.stat().st_size
    logger.info("quantized %s to %s with %s (%d bytes)", source, target, QUANTIZER, size)
    return EdgeExportResult(
        path=target, format="onnx", file_bytes=size, batch_size=None, quantizer=QUANTIZER
    )


def simulate_qdq(
    path: str | os.PathLike[str], x: np.ndarray, *, batch_size: int = 256
) -> np.ndarray:
    """Run a QDQ ``.onnx`` file with every ONNX Runtime graph optimization off.

    Unfused, each QuantizeLinear/DequantizeLinear pair runs as written around float operators:
    the simulated int8 model of the file's own scales, the oracle its fused integer kernels are
    compared against.
    """
    import onnxruntime as ort

    from slimkit.threads import onnxruntime_options

    options = onnxruntime_options(ort, 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    data = np.ascontiguousarray(x, dtype=np.float32)
    outputs = [
        session.run(None, {name: data[start : start + batch_size]})[0]
        for start in range(0, len(data), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)

"""One model → the files each runtime loads, fp32 or int8, with the oracle to check them against.

:func:`prepare_for_runtime` is what ``slimkit bench`` and ``benchmarks/runtimes.py`` use to get
from a trained model to files in PyTorch, ONNX Runtime, LiteRT and ExecuTorch:

- pytorch: fp32 is the checkpoint; int8 is the simulated PT2E graph of
  ``executorch-xnnpack-pt2e`` (in memory, no file), its own oracle.
- onnxruntime: fp32 ``.onnx`` (any batch); int8 from ``quantize_static`` QDQ
  (``onnxruntime-quantize-static-qdq``), checked against the same file run unfused.
- litert: ``.tflite`` per batch size; int8 from the ``litert-pt2e`` PT2E graph, its oracle.
- executorch: ``.pte`` per batch size; int8 from the ``executorch-xnnpack-pt2e`` PT2E graph.

fp32 files are checked against the eager PyTorch model. int8 always uses the runtime's own
quantizer, labelled in ``Artifact.quantizer``, until slimkit's quantizer emits PT2E scales.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.errors import ConfigError, check_choice
from slimkit.export.edge import EdgeExportResult
from slimkit.export.onnxruntime_int8 import QUANTIZER as ONNXRUNTIME_QUANTIZER
from slimkit.export.onnxruntime_int8 import quantize_onnx_static, simulate_qdq
from slimkit.export.pt2e import quantize_pt2e
from slimkit.export.registry import export
from slimkit.runtime.delegation import DelegationReport

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
RUNTIME_QUANTIZERS = {
    "pytorch": "executorch-xnnpack-pt2e",
    "onnxruntime": ONNXRUNTIME_QUANTIZER,
    "litert": "litert-pt2e",
    "executorch": "executorch-xnnpack-pt2e",
}
FIXED_BATCH_FORMATS = {"litert": "tflite", "executorch": "pte"}


@dataclass(frozen=True)
class Artifact:
    """One thing a runtime loads: a file, or (PyTorch int8) an in-memory simulated model.

    ``batch_size`` is None when the artifact runs any batch size as one call.
    """

    runtime: str
    precision: str
    path: Path | None
    batch_size: int | None
    file_bytes: int | None
    quantizer: str | None = None
    delegation: DelegationReport | None = None

    def serves(self, batch_size: int) -> bool:
        """True if this artifact is the one to time at ``batch_size``."""
        return self.batch_size is None or self.batch_size == batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "path": str(self.path) if self.path else None,
            "batch_size": self.batch_size,
            "file_bytes": self.file_bytes,
            "quantizer": self.quantizer,
            "delegation": self.delegation.to_dict() if self.delegation else None,
        }


@dataclass
class Prepared:
    """The artifacts of one (model, runtime, precision) and the oracle to compare them with.

    Attributes:
        artifacts: one per file (per batch size for LiteRT and ExecuTorch).
        reference: logits of the oracle for float inputs ``(N, C, H, W)``.
        reference_name: what the oracle is (``pytorch-fp32``, ``simulated-int8 (...)``).
        in_memory: the model to run for an artifact without a file (PyTorch int8).
    """

    artifacts: list[Artifact]
    reference: Callable[[np.ndarray], np.ndarray]
    reference_name: str
    in_memory: nn.Module | None = None
    notes: list[str] = field(default_factory=list)


def _torch_logits(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            outputs = [
                model(torch.from_numpy(np.ascontiguousarray(x[start : start + 256]))).numpy()
                for start in range(0, len(x), 256)
            ]
        return np.concatenate(outputs).astype(np.float32)

    return run


def _artifact(runtime: str, precision: str, result: Any, batch_size: int | None) -> Artifact:
    edge = isinstance(result, EdgeExportResult)
    return Artifact(
        runtime=runtime,
        precision=precision,
        path=result.path,
        batch_size=result.batch_size if edge else batch_size,
        file_bytes=result.file_bytes,
        quantizer=result.quantizer if edge else None,
        delegation=result.delegation if edge else None,
    )


def prepare_for_runtime(
    model: nn.Module,
    runtime: str,
    folder: str | Path,
    *,
    stem: str,
    batch_sizes: Sequence[int] = (1, 64),
    precision: str = "fp32",
    calibration_data: np.ndarray | None = None,
    checkpoint: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    quantizer: str | None = None,
) -> Prepared:
    """Write what ``runtime`` loads for ``model`` at ``precision`` into ``folder``.

    Args:
        model: the trained float model (eval mode is used).
        runtime: pytorch, onnxruntime, litert or executorch.
        folder: where files go (``{stem}-{precision}[-b{N}].{suffix}``).
        stem: file name stem, e.g. ``lenet5``.
        batch_sizes: one file per batch size for fixed-batch formats.
        precision: ``fp32`` or ``int8`` (int8 uses the runtime's own quantizer, see module doc).
        calibration_data: float inputs for int8 calibration (needed for int8).
        checkpoint: the model's checkpoint (the PyTorch runtime's fp32 file).
        input_shape: one sample's shape; defaults to the model's slimkit spec.
        quantizer: a PT2E quantizer label for LiteRT/ExecuTorch/PyTorch int8 instead of the
            runtime's own (e.g. ``executorch-xnnpack-pt2e`` for LiteRT: the same scales in both).

    Returns:
        The artifacts and the oracle for parity.

    Example:
        >>> prepared = prepare_for_runtime(model, "litert", "out", stem="lenet5")  # doctest: +SKIP
        >>> [a.path.name for a in prepared.artifacts]  # doctest: +SKIP
        ['lenet5-fp32-b1.tflite', 'lenet5-fp32-b64.tflite']
    """
    check_choice("runtime", runtime, tuple(RUNTIME_QUANTIZERS))
    check_choice("precision", precision, PRECISIONS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape_options: dict[str, Any] = {"input_shape": input_shape} if input_shape else {}
    model.eval()
    if precision == "int8" and (calibration_data is None or len(calibration_data) == 0):
        raise ConfigError(f"int8 for {runtime} needs calibration_data (float inputs)")
    calibration = np.asarray(calibration_data if calibration_data is not None else [], np.float32)
    if quantizer is not None and runtime == "onnxruntime":
        raise ConfigError(
            f"onnxruntime int8 uses {ONNXRUNTIME_QUANTIZER}; got quantizer={quantizer!r}"
        )
    label = quantizer or RUNTIME_QUANTIZERS[runtime]
    base = f"{stem}-{precision}" if quantizer is None else f"{stem}-{precision}-{quantizer}"

    if runtime == "pytorch":
        if precision == "fp32":
            if checkpoint is None:
                from slimkit.train import save_checkpoint

                checkpoint = save_checkpoint(model, folder / f"{base}.safetensors")
            size = Path(checkpoint).stat().st_size
            artifact = Artifact(runtime, precision, Path(checkpoint), None, size)
            return Prepared([artifact], _torch_logits(model), "pytorch-fp32")
        graph = quantize_pt2e(model, calibration, quantizer=label)
        artifact = Artifact(runtime, precision, None, None, None, label)
        return Prepared(
            [artifact],
            _torch_logits(graph),
            f"simulated-int8 ({label})",
            in_memory=graph,
            notes=["PyTorch int8 is the simulated PT2E graph (quantize/dequantize + float ops)"],
        )

    if runtime == "onnxruntime":
        fp32 = export(model, folder / f"{stem}-fp32.onnx", format="onnx", **shape_options)
        if precision == "fp32":
            artifact = _artifact(runtime, precision, fp32, None)
            return Prepared([artifact], _torch_logits(model), "pytorch-fp32")
        result = quantize_onnx_static(fp32.path, folder / f"{base}.onnx", calibration)
        path = result.path
        return Prepared(
            [_artifact(runtime, precision, result, None)],
            lambda x: simulate_qdq(path, x),
            f"simulated-int8 ({ONNXRUNTIME_QUANTIZER}, QDQ unfused)",
        )

    fmt = FIXED_BATCH_FORMATS[runtime]
    source: nn.Module = model
    reference, reference_name = _torch_logits(model), "pytorch-fp32"
    if precision == "int8":
        source = quantize_pt2e(
            model,
            calibration,
            quantizer=label,
            **shape_options,
        )
        reference = _torch_logits(source)
        reference_name = f"simulated-int8 ({label})"
    artifacts = [
        _artifact(
            runtime,
            precision,
            export(
                source, folder / f"{base}-b{b}.{fmt}", format=fmt, batch_size=b, **shape_options
            ),
            b,
        )
        for b in batch_sizes
    ]
    return Prepared(artifacts, reference, reference_name)

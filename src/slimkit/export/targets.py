"""One model → the files each runtime loads, fp32 or int8, with the oracle to check them against.

:func:`prepare_for_runtime` is what ``slimkit bench`` and ``benchmarks/runtimes.py`` use to get
from a trained model to files in PyTorch, ONNX Runtime, LiteRT and ExecuTorch:

- pytorch: fp32 is the checkpoint; int8 is slimkit's simulated int8 model (in memory).
- onnxruntime: fp32 ``.onnx`` (any batch); int8 is slimkit's QDQ file.
- litert: ``.tflite`` per batch size; int8 from the PT2E graph carrying slimkit's scales.
- executorch: ``.pte`` per batch size; the same PT2E graph lowered to XNNPACK.

fp32 files are checked against the eager PyTorch model; slimkit's int8 files against slimkit's
integer reference executor (argmax agreement and the share of outputs within one quantization
step). int8 is slimkit's own quantization (``quantizer="slimkit"``, the default) in every
runtime: the same scales, zero points and int8 weights everywhere. A model slimkit's int8 cannot
carry to a runtime (an op with no int8 pattern there) falls back to that runtime's own quantizer,
with a note; ``quantizer="runtime"`` asks for the runtimes' own quantizers (the anchors:
ExecuTorch's ``XNNPACKQuantizer``, litert-torch's ``PT2EQuantizer``, ONNX Runtime's
``quantize_static`` QDQ, each checked against its own simulated model), labelled in
``Artifact.quantizer``.
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
SLIMKIT = "slimkit"
RUNTIME_OWN = "runtime"


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
    lsb: float | None = None  # the int8 output's quantization step (integer-oracle parity)


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
    quantizer: str = SLIMKIT,
    int8_config: Any = None,
    quantized: Any = None,
) -> Prepared:
    """Write what ``runtime`` loads for ``model`` at ``precision`` into ``folder``.

    Args:
        model: the trained float model (eval mode is used).
        runtime: pytorch, onnxruntime, litert or executorch.
        folder: where files go (``{stem}-{precision}[-b{N}].{suffix}``).
        stem: file name stem, e.g. ``lenet5``.
        batch_sizes: one file per batch size for fixed-batch formats.
        precision: ``fp32`` or ``int8``.
        calibration_data: float inputs for int8 calibration (needed for int8).
        checkpoint: the model's checkpoint (the PyTorch runtime's fp32 file).
        input_shape: one sample's shape; defaults to the model's slimkit spec.
        quantizer: int8 by ``slimkit`` (default: slimkit's static int8 in every runtime),
            ``runtime`` (each runtime's own quantizer), or a PT2E quantizer label for
            LiteRT/ExecuTorch/PyTorch (e.g. ``executorch-xnnpack-pt2e`` for LiteRT).
        int8_config: slimkit's :class:`~slimkit.techniques.quantize.StaticInt8Config` (default:
            min-max, per channel).
        quantized: slimkit's int8 model of ``model``, already calibrated
            (:func:`~slimkit.techniques.quantize.quantize_static`), to carry instead of
            calibrating here: several runtimes then get the very same scales and share one
            integer reference. Used for slimkit int8 only.

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
    notes: list[str] = []
    if precision == "int8" and quantizer == SLIMKIT:
        prepared = _prepare_slimkit_int8(
            model,
            runtime,
            folder,
            stem,
            batch_sizes,
            calibration,
            int8_config,
            shape_options,
            quantized,
        )
        if isinstance(prepared, Prepared):
            return prepared
        notes.append(prepared)
        quantizer = RUNTIME_OWN
    if quantizer not in (SLIMKIT, RUNTIME_OWN) and runtime == "onnxruntime":
        raise ConfigError(
            f"onnxruntime int8 uses slimkit's QDQ or {ONNXRUNTIME_QUANTIZER}; "
            f"got quantizer={quantizer!r}"
        )
    label = RUNTIME_QUANTIZERS[runtime] if quantizer in (SLIMKIT, RUNTIME_OWN) else quantizer
    base = f"{stem}-{precision}" if precision == "fp32" else f"{stem}-{precision}-{label}"

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
            notes=[
                *notes,
                "PyTorch int8 is the simulated PT2E graph (quantize/dequantize + float ops)",
            ],
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
            notes=notes,
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
    return Prepared(artifacts, reference, reference_name, notes=notes)


def _prepare_slimkit_int8(
    model: nn.Module,
    runtime: str,
    folder: Path,
    stem: str,
    batch_sizes: Sequence[int],
    calibration: np.ndarray,
    config: Any,
    shape_options: dict[str, Any],
    given: Any = None,
) -> Prepared | str:
    """slimkit's static int8 for ``runtime``, held against slimkit's integer reference; or a
    note saying why this model falls back to the runtime's own quantizer."""
    from slimkit.export.pt2e_slimkit import slimkit_pt2e
    from slimkit.techniques.quantize import quantize_static, run_reference

    try:
        quantized = (
            given
            if given is not None
            else quantize_static(model.eval(), torch.from_numpy(calibration), config)
        )
        source: nn.Module = quantized
        if runtime in FIXED_BATCH_FORMATS:
            source = slimkit_pt2e(quantized)  # checks the ops carry before any file is written
    except ConfigError as error:
        note = f"slimkit int8 cannot be carried to {runtime} ({error}); the runtime's own quantizer"
        logger.warning("%s", note)
        return note
    graph = quantized.graph
    lsb = float(graph.qparams[graph.output].scale[0])
    reference_name = "slimkit integer reference"

    def reference(x: np.ndarray) -> np.ndarray:
        return run_reference(graph, np.asarray(x, dtype=np.float32))

    if runtime == "pytorch":
        artifact = Artifact(runtime, "int8", None, None, None, SLIMKIT)
        return Prepared(
            [artifact],
            reference,
            reference_name,
            in_memory=quantized,
            notes=["PyTorch int8 is slimkit's simulated int8 model (fake-quantized float ops)"],
            lsb=lsb,
        )
    if runtime == "onnxruntime":
        result = export(quantized, folder / f"{stem}-int8.onnx", format="onnx", **shape_options)
        artifact = Artifact(runtime, "int8", result.path, None, result.file_bytes, SLIMKIT)
        return Prepared([artifact], reference, reference_name, lsb=lsb)
    fmt = FIXED_BATCH_FORMATS[runtime]
    artifacts = [
        _artifact(
            runtime,
            "int8",
            export(
                source,
                folder / f"{stem}-int8-b{b}.{fmt}",
                format=fmt,
                batch_size=b,
                **shape_options,
            ),
            b,
        )
        for b in batch_sizes
    ]
    return Prepared(artifacts, reference, reference_name, lsb=lsb)

"""Firmware export for TFLite Micro: the ``.tflite``, and a C source and header to paste in.

``export(model, "lenet5.tflite", format="tflite-micro", calibration_data=x)`` quantizes a float
model to int8 (slimkit's static int8, its scales carried through PT2E; a slimkit ``QuantizedModel``
or a PT2E graph is taken as it is), converts it with the
LiteRT exporter at batch size 1, checks its operators against TFLite Micro's (an unsupported one
is an error naming the layer, before anything is written), measures its arena in child processes
(:func:`slimkit.measure.mcu.mcu_memory`) and writes, beside the ``.tflite``:

- ``lenet5.c``: the model as a 16-byte aligned ``const uint8_t`` array (it stays in flash);
- ``lenet5.h``: its length, the arena size to declare (measured), the input and output type, shape,
  scale and zero point, and the operators to register in a ``tflite::MicroMutableOpResolver``
  (a count, an X-macro, and a C++ helper that calls the ``Add*`` methods).

Without calibration data a float model is exported as fp32 (TFLite Micro has float kernels; an
int8-only budget refuses it, see :func:`slimkit.measure.mcu.check_mcu_budget`).

Example:
    >>> result = export(model, "fw/lenet5.tflite", format="tflite-micro",
    ...                 calibration_data=x[:256])  # doctest: +SKIP
    >>> result.arena_bytes, result.header  # doctest: +SKIP
    (10504, PosixPath('fw/lenet5.h'))
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from slimkit.errors import ConfigError, check_choice
from slimkit.export.edge import EdgeExportResult, slimkit_int8_as_pt2e
from slimkit.export.litert import export_litert
from slimkit.export.pt2e import is_quantized_graph, quantize_pt2e, quantizer_label
from slimkit.export.registry import register_exporter
from slimkit.io import atomic_path, write_text_atomic
from slimkit.runtime.tflite_graph import TensorInfo, TFLiteGraph, read_tflite_graph
from slimkit.runtime.tflite_micro import check_operators, resolver_method

logger = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp32")
FP32_PARITY_ATOL = 1e-4
INT8_MIN_AGREEMENT = 0.999  # the issue's bound for TFLite Micro against LiteRT
BYTES_PER_LINE = 12


@dataclass(frozen=True)
class McuExportResult(EdgeExportResult):
    """An :class:`EdgeExportResult` with the firmware files and the measured memory.

    ``parity_reference`` names the runtime to check the file against on the same file (LiteRT:
    TFLite Micro's reference kernels should agree with it within ``parity_atol``, one output
    quantization step for int8, and in ``parity_min_agreement`` of the argmaxes: a one-step
    difference can flip a near tie).
    """

    c_source: Path | None = None
    header: Path | None = None
    arena_bytes: int = 0
    flash_bytes: int = 0
    memory: dict[str, Any] = field(default_factory=dict)
    parity_reference: str = "litert"
    parity_atol: float = FP32_PARITY_ATOL
    parity_min_agreement: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return super().to_dict() | {
            "c_source": str(self.c_source) if self.c_source else None,
            "header": str(self.header) if self.header else None,
            "arena_bytes": self.arena_bytes,
            "flash_bytes": self.flash_bytes,
            "memory": self.memory,
            "parity_reference": self.parity_reference,
            "parity_atol": self.parity_atol,
            "parity_min_agreement": self.parity_min_agreement,
        }

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"tflite-micro: arena {self.arena_bytes:,} bytes (measured), flash "
            f"{self.flash_bytes:,} bytes (model {self.memory.get('model_bytes', 0):,} + "
            f"interpreter estimate {self.memory.get('interpreter_code_bytes', 0):,}); "
            f"C files {self.c_source}, {self.header}"
        )


@register_exporter("tflite-micro", suffix=".tflite")
def export_tflite_micro(
    model: nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, ...],
    calibration_data: np.ndarray | None = None,
    precision: str | None = None,
    quantizer: str = "slimkit",
    metadata: dict[str, Any] | None = None,
) -> McuExportResult:
    """Write ``model`` for TFLite Micro: ``.tflite`` + C source + header, arena measured.

    Args:
        model: a plain float model, a slimkit int8 ``QuantizedModel`` or a quantized PT2E graph
            (both exported as int8 as they are).
        path: the ``.tflite`` file; the C files take its name with ``.c`` and ``.h``.
        input_shape: one sample's shape (C, H, W).
        calibration_data: float inputs ``(N, C, H, W)`` for int8 (a few hundred samples).
        precision: ``int8`` or ``fp32``; default int8 when the model is a PT2E graph or
            calibration data is given, else fp32.
        quantizer: how a float model is quantized (see :func:`slimkit.export.quantize_pt2e`):
            ``slimkit`` (default: slimkit's static int8, min-max, per channel) or a runtime's.
        metadata: accepted for a uniform interface; not written (ignored).

    Returns:
        The files, the measured arena and the flash estimate, and how to check parity.

    Raises:
        ExportError: an operator TFLite Micro does not support (naming the layer), or conversion.
        ConfigError: int8 asked for without calibration data.
    """
    model = slimkit_int8_as_pt2e(model)
    quantized = is_quantized_graph(model)
    if precision is None:
        precision = "int8" if quantized or calibration_data is not None else "fp32"
    check_choice("precision", precision, PRECISIONS)
    source = model
    if precision == "int8" and not quantized:
        if calibration_data is None or len(calibration_data) == 0:
            raise ConfigError(
                "tflite-micro int8 needs calibration_data (float inputs, a few hundred samples) "
                "or a quantized PT2E graph; pass precision='fp32' for a float model"
            )
        source = quantize_pt2e(
            model, calibration_data, quantizer=quantizer, input_shape=input_shape
        )
    elif precision == "fp32" and quantized:
        raise ConfigError(
            "precision='fp32' was asked for a quantized PT2E graph; pass the float model"
        )

    from slimkit.measure.mcu import mcu_memory  # measure builds on the runtimes; import late

    path = Path(path)
    stem = identifier(path.stem)
    with atomic_path(path) as tmp:
        export_litert(source, tmp, input_shape=input_shape, batch_size=1)
        graph = read_tflite_graph(tmp)
        operators = check_operators(graph)  # before any firmware file is written
        memory = mcu_memory(tmp) | {"path": str(path)}
        header_path = path.with_suffix(".h")
        header = write_text_atomic(
            header_path,
            header_text(graph, stem, memory["arena_bytes"], operators, model_name=path.name),
        )
        c_source = write_text_atomic(
            path.with_suffix(".c"),
            c_source_text(
                tmp.read_bytes(), stem, header_name=header_path.name, model_name=path.name
            ),
        )
    output = graph.tensors[graph.outputs[0]]
    atol = output.scales[0] if precision == "int8" and output.scales else FP32_PARITY_ATOL
    result = McuExportResult(
        path=path,
        format="tflite-micro",
        file_bytes=path.stat().st_size,
        batch_size=1,
        quantizer=quantizer_label(source),
        delegation=None,
        c_source=c_source,
        header=header,
        arena_bytes=int(memory["arena_bytes"]),
        flash_bytes=int(memory["flash_bytes"]),
        memory=memory,
        parity_atol=float(atol) * 1.0001,  # one output step, with float32 rounding room
        parity_min_agreement=INT8_MIN_AGREEMENT if precision == "int8" else 1.0,
    )
    logger.info("exported %s to %s: %s", type(model).__name__, path, result.summary())
    return result


def identifier(stem: str) -> str:
    """A C identifier from a file stem (``lenet5-int8`` → ``lenet5_int8``).

    Example:
        >>> identifier("3-layer.net")
        'm_3_layer_net'
    """
    name = re.sub(r"\W", "_", stem.lower())
    return f"m_{name}" if not name or name[0].isdigit() else name


def _c_float(value: float) -> str:
    return f"{value:.9e}f"


def _tensor_macros(prefix: str, tensor: TensorInfo) -> list[str]:
    shape = ", ".join(map(str, tensor.shape))
    lines = [
        f"/* {tensor.dtype.lower()} [{shape}] */",
        f"#define {prefix}_BYTES {tensor.nbytes}u",
        f"#define {prefix}_IS_INT8 {1 if tensor.dtype == 'INT8' else 0}",
    ]
    if tensor.scales:  # real = scale * (q - zero_point)
        lines += [
            f"#define {prefix}_SCALE {_c_float(tensor.scales[0])}",
            f"#define {prefix}_ZERO_POINT ({tensor.zero_points[0] if tensor.zero_points else 0})",
        ]
    return lines


def header_text(
    graph: TFLiteGraph, stem: str, arena_bytes: int, operators: list[str], *, model_name: str
) -> str:
    """The C header: model length, arena size, input/output quantization, operator list."""
    macro = stem.upper()
    methods = [resolver_method(op) for op in operators]
    x_macro = " ".join(f"X({method})" for method in methods)
    registrations = "\n".join(
        f"  if (static_cast<int>(resolver.{method}()) != 0) return -1;" for method in methods
    )
    return "\n".join(
        [
            f"/* TFLite Micro data of {model_name}, generated by slimkit. */",
            f"#ifndef SLIMKIT_{macro}_H_",
            f"#define SLIMKIT_{macro}_H_",
            "",
            "#include <stdint.h>",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            "/* The model flatbuffer, 16-byte aligned and const (it stays in flash). */",
            f"extern const uint8_t {stem}_model[];",
            f"extern const uint32_t {stem}_model_len;",
            f"#define {macro}_MODEL_BYTES {graph.model_bytes}u",
            "",
            "/* Tensor arena: the smallest with which this model ran in TFLite Micro's reference",
            "   kernels on the host (it failed with 16 bytes less). Declare it 16-byte aligned:",
            f"   alignas(16) static uint8_t tensor_arena[{macro}_ARENA_BYTES];",
            "   Optimized kernels (CMSIS-NN) may need more scratch memory: probe on the device. */",
            f"#define {macro}_ARENA_BYTES {arena_bytes}u",
            "",
            "/* Input and output (batch 1); for int8, real = scale * (q - zero_point). */",
            *_tensor_macros(f"{macro}_INPUT", graph.tensors[graph.inputs[0]]),
            *_tensor_macros(f"{macro}_OUTPUT", graph.tensors[graph.outputs[0]]),
            "",
            f"/* Operators: {', '.join(operators)}. */",
            f"#define {macro}_OPERATOR_COUNT {len(operators)}",
            f"#define {macro}_FOR_EACH_OPERATOR(X) {x_macro}",
            "",
            "#ifdef __cplusplus",
            '}  /* extern "C" */',
            "",
            f"/* tflite::MicroMutableOpResolver<{macro}_OPERATOR_COUNT> resolver;",
            f"   if ({stem}_register_operators(resolver) != 0) {{ ... }} */",
            "template <typename Resolver>",
            f"inline int {stem}_register_operators(Resolver& resolver) {{",
            registrations,
            "  return 0;",
            "}",
            "#endif",
            "",
            f"#endif  /* SLIMKIT_{macro}_H_ */",
            "",
        ]
    )


def c_source_text(data: bytes, stem: str, *, header_name: str, model_name: str) -> str:
    """The C source: the model bytes as a 16-byte aligned ``const uint8_t`` array."""
    rows = [
        "  " + ", ".join(f"0x{b:02x}" for b in data[start : start + BYTES_PER_LINE]) + ","
        for start in range(0, len(data), BYTES_PER_LINE)
    ]
    return "\n".join(
        [
            f"/* The TFLite Micro model {model_name} ({len(data)} bytes), generated by slimkit. */",
            f'#include "{header_name}"',
            "",
            "#if defined(__GNUC__) || defined(__clang__)",
            "#define SLIMKIT_ALIGNED_16 __attribute__((aligned(16)))",
            "#elif defined(_MSC_VER)",
            "#define SLIMKIT_ALIGNED_16 __declspec(align(16))",
            "#else",
            "#define SLIMKIT_ALIGNED_16",
            "#endif",
            "",
            f"SLIMKIT_ALIGNED_16 const uint8_t {stem}_model[] = {{",
            *rows,
            "};",
            f"const uint32_t {stem}_model_len = {len(data)}u;",
            "",
        ]
    )

"""TFLite Micro: the microcontroller interpreter (``tflite-micro``), run here on the host.

The ``tflite-micro`` package wraps the real TFLite Micro C++ interpreter with its reference
kernels (no CMSIS-NN or other optimized kernels) and a tensor arena of a size given up front, as
on a device. A file runs one sample at a time: TFLite Micro has a fixed batch of 1, so a batch of
``N`` samples is ``N`` invocations. Files with int8 inputs or outputs take and return float32 here:
the runner quantizes the input and dequantizes the output with the file's own scales, as the
firmware would. TFLite Micro is single-threaded; ``threads`` is recorded, not applied.

The runner loads a file with a generous arena (twice all its activations, plus 1 MiB), so that
it never runs short in the user's process: a too-small arena can crash this interpreter. The
smallest arena is measured by :func:`slimkit.measure.mcu.probe_arena`, in child processes only.

:func:`check_operators` compares a file's operators with the builtin operators this build of
TFLite Micro registers (:data:`TFLITE_MICRO_OPERATORS`) and names the PyTorch layer of the first
one it lacks.

Example:
    >>> runner = load_runtime("tflite-micro", "lenet5-int8.tflite")  # doctest: +SKIP
    >>> logits = runner.run(x)  # (N, 1, 28, 28) float32 → (N, 10) float32  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, ExportError, MissingDependencyError, RuntimeLoadError
from slimkit.runtime.base import Runner, first_line, register_runtime
from slimkit.runtime.tflite_graph import (
    INSTALL_HINT,
    TFLiteGraph,
    prepare_with_litert,
    read_tflite_graph,
)

logger = logging.getLogger(__name__)

# The builtin operators the tflite-micro 0.dev20261023 build registers (its Register_<OP>
# functions that name a TFLite BuiltinOperator; tests/runtime/test_tflite_micro.py checks this
# list against the installed build). Custom operators (signal processing, Ethos-U) are left out.
_OPERATOR_NAMES = """
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM
DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL
EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER
GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX
REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT
SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
"""
TFLITE_MICRO_OPERATORS = frozenset(_OPERATOR_NAMES.split())

# what to do instead of an operator TFLite Micro lacks (the default hint covers the rest)
OPERATOR_HINTS = {
    "GELU": "replace nn.GELU with nn.ReLU or nn.Hardswish (both run in TFLite Micro)",
    "BATCH_MATMUL": "use nn.Linear with a constant weight (FULLY_CONNECTED)",
    "GATHER": "avoid indexing with tensors; use slicing with constants",
}
DEFAULT_HINT = (
    "replace that layer with one built from supported operators, or keep it on the host and run "
    "the rest of the model on the device"
)
HOST_ARENA_MARGIN = 1 << 20  # the runner's margin over twice its activations

# MicroMutableOpResolver's Add* method names that do not follow CamelCase of the operator name
_RESOLVER_EXCEPTIONS = {
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def import_tflite_micro() -> Any:
    """The ``tflite_micro`` package, or MissingDependencyError with the pip hint."""
    try:
        import tflite_micro
    except ImportError as error:
        raise MissingDependencyError(
            f"TFLite Micro (tflite-micro) is not installed; install it with: {INSTALL_HINT}"
        ) from error
    return tflite_micro


def resolver_method(operator: str) -> str:
    """The ``tflite::MicroMutableOpResolver`` method that registers a builtin operator.

    Example:
        >>> resolver_method("DEPTHWISE_CONV_2D")
        'AddDepthwiseConv2D'
    """
    if operator in _RESOLVER_EXCEPTIONS:
        return _RESOLVER_EXCEPTIONS[operator]
    words = [w.upper() if w[:1].isdigit() else w.capitalize() for w in operator.split("_")]
    return "Add" + "".join(words)


def unsupported_operators(graph: TFLiteGraph) -> list[tuple[str, str]]:
    """``(operator, layer)`` for every operator of ``graph`` that TFLite Micro does not register."""
    return [(op.name, op.layer) for op in graph.operators if op.name not in TFLITE_MICRO_OPERATORS]


def check_operators(graph: TFLiteGraph) -> list[str]:
    """The graph's distinct operators, or ExportError naming the first unsupported one.

    Raises:
        ExportError: one line: the layer, the operator, how many others, and a hint.

    Example:
        >>> check_operators(read_tflite_graph("m.tflite"))  # doctest: +SKIP
        ['RESHAPE', 'CONV_2D', 'MAX_POOL_2D', 'FULLY_CONNECTED']
    """
    missing = unsupported_operators(graph)
    if graph.subgraphs != 1:
        raise ExportError(
            f"tflite-micro: {graph.path.name} has {graph.subgraphs} subgraphs; slimkit exports "
            "single-subgraph models (no control flow) for microcontrollers"
        )
    if missing:
        operator, layer = missing[0]
        others = sorted({name for name, _ in missing[1:]} - {operator})
        also = f" (also unsupported: {', '.join(others)})" if others else ""
        raise ExportError(
            f"tflite-micro: layer {layer} uses operator {operator}, which TFLite Micro does not "
            f"support{also}; hint: {OPERATOR_HINTS.get(operator, DEFAULT_HINT)}"
        )
    return graph.operator_names()


def host_arena_bytes(graph: TFLiteGraph) -> int:
    """A generous arena for running ``graph`` on the host: twice all its activations + 1 MiB.

    Any plan of the activations is at most their sum; the margin holds TFLite Micro's own
    structures and scratch buffers. It is never the measured minimum (see the module doc).
    """
    return 2 * sum(t.nbytes for t in graph.activations()) + HOST_ARENA_MARGIN


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


@register_runtime
class TFLiteMicroRunner(Runner):
    """Runs a ``.tflite`` file in the TFLite Micro interpreter, one sample at a time."""

    name = "tflite-micro"
    format = "tflite-micro"
    package = "tflite-micro"
    module = "tflite_micro"
    install_hint = INSTALL_HINT

    def _load(self) -> None:
        tflite_micro = import_tflite_micro()
        graph = read_tflite_graph(self.path)  # one line for a corrupt file, before any C++ runs
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise RuntimeLoadError(
                f"tflite-micro: {self.path} has {len(graph.inputs)} inputs and "
                f"{len(graph.outputs)} outputs; slimkit runs single-input, single-output models"
            )
        missing = unsupported_operators(graph)
        if missing:
            raise RuntimeLoadError(
                f"tflite-micro: cannot load {self.path.name}: layer {missing[0][1]} uses operator "
                f"{missing[0][0]}, which TFLite Micro does not support"
            )
        verify_model(self.path, graph)
        self.graph = graph
        self.arena_bytes = host_arena_bytes(graph)
        try:
            self.interpreter = tflite_micro.runtime.Interpreter.from_file(
                str(self.path), arena_size=self.arena_bytes
            )
            details_in = self.interpreter.get_input_details(0)
            details_out = self.interpreter.get_output_details(0)
        except Exception as error:
            raise RuntimeLoadError(
                f"tflite-micro: cannot load {self.path} ({first_line(error)}); is the file "
                "complete and really .tflite?"
            ) from error
        shape = tuple(int(d) for d in details_in["shape"])
        if not shape or shape[0] != 1:
            raise RuntimeLoadError(
                f"tflite-micro: {self.path.name} has input shape {shape}; TFLite Micro runs one "
                "sample at a time: export it with batch_size=1"
            )
        self._input_shape = shape[1:]
        self._input_dtype = np.dtype(details_in["dtype"])
        self._output_dtype = np.dtype(details_out["dtype"])
        self._input_q = _scale_zero(details_in, self.path, "input")
        self._output_q = _scale_zero(details_out, self.path, "output")

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape

    @property
    def batch_size(self) -> int | None:
        return 1

    def _invoke(self, sample: np.ndarray) -> np.ndarray:
        """One sample ``(1, C, H, W)`` float32 → ``(1, classes)`` float32."""
        if self._input_q is not None:
            sample = _quantize(sample, *self._input_q, self._input_dtype)
        self.interpreter.set_input(sample, 0)
        self.interpreter.invoke()
        out = np.array(self.interpreter.get_output(0))
        if self._output_q is not None:
            scale, zero_point = self._output_q
            return ((out.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return out.astype(np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        try:
            return np.concatenate([self._invoke(x[i : i + 1]) for i in range(len(x))], axis=0)
        except Exception as error:
            raise ConfigError(
                f"tflite-micro: running {self.path.name} on input {x.shape} {x.dtype} failed: "
                f"{first_line(error)}"
            ) from error

    @classmethod
    def version(cls) -> str:
        return str(import_tflite_micro().__version__)


def _scale_zero(details: dict[str, Any], path: Path, what: str) -> tuple[float, int] | None:
    """The (scale, zero point) of an integer input/output tensor; None for a float one."""
    if np.issubdtype(np.dtype(details["dtype"]), np.floating):
        return None
    params = details["quantization_parameters"]
    if len(params["scales"]) < 1 or len(params["zero_points"]) < 1:
        raise RuntimeLoadError(
            f"tflite-micro: {path.name} has an integer {what} without a scale and zero point; "
            "export it again (int8 files carry their quantization parameters)"
        )
    return float(params["scales"][0]), int(params["zero_points"][0])


def verify_model(path: Path, graph: TFLiteGraph) -> None:
    """Refuse, in one line, a file that LiteRT's interpreter does not accept, or whose stored
    tensor shapes are not the ones its operators compute.

    TFLite Micro trusts its model (a microcontroller has no room for a flatbuffer verifier), so
    a corrupt file can crash it, on load or on invoke (found by fuzzing: tensor indices out of
    range, buffers shorter than their tensors, an activation stored with 65,028 channels where
    its operator makes 4: SIGFPE). LiteRT verifies the flatbuffer and prepares every operator,
    computing each activation's shape; a file it refuses, or whose stored shapes disagree with
    those, never reaches TFLite Micro. Without LiteRT installed (it comes with TFLite Micro in
    ``slimkit[litert]``) the file is not verified.
    """
    computed = prepare_with_litert(path, "tflite-micro")
    if computed is None:  # pragma: no cover - the litert extra installs both
        logger.debug("tflite-micro: ai-edge-litert missing, %s is not verified", path)
        return
    for tensor in graph.tensors:
        shape = computed.get(tensor.index)
        if shape is not None and shape != tensor.shape:
            raise RuntimeLoadError(
                f"tflite-micro: {path} stores tensor {tensor.index} ({tensor.name[:60]!r}) with "
                f"shape {tensor.shape}, but its operator computes {shape}; is the file corrupt?"
            )

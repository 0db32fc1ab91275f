"""LiteRT (formerly TensorFlow Lite): the ``ai-edge-litert`` interpreter with the XNNPACK delegate.

The interpreter's built-in op resolver applies XNNPACK as its default CPU delegate when tensors
are allocated, with the interpreter's thread count; :meth:`LiteRTRunner.delegation` reads the
execution plan afterwards and reports which operators XNNPACK took and which stayed on LiteRT's
own kernels.

``.tflite`` files from litert-torch have a fixed batch size (its converter cannot lower a dynamic
batch through ``flatten``; see docs/runtimes.md), so export one file per batch size; other batch
sizes run in several calls. Files with int8 inputs or outputs (static int8 from PT2E) take and
return float32 here: the runner quantizes the input and dequantizes the output with the file's
own scales, as an application would.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, MissingDependencyError, RuntimeLoadError
from slimkit.runtime.base import (
    Runner,
    check_identifier,
    first_line,
    register_runtime,
    run_in_fixed_batches,
)
from slimkit.runtime.delegation import DelegationReport, count_names
from slimkit.runtime.tflite_graph import prepare_with_litert

logger = logging.getLogger(__name__)

TFLITE_IDENTIFIER = b"TFL3"
INSTALL_HINT = 'pip install "slimkit[litert]"'


def import_litert_interpreter() -> Any:
    """The ``ai_edge_litert.interpreter`` module, or MissingDependencyError with the pip hint."""
    try:
        from ai_edge_litert import interpreter
    except ImportError as error:
        raise MissingDependencyError(
            f"LiteRT (ai-edge-litert) is not installed; install it with: {INSTALL_HINT}"
        ) from error
    return interpreter


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """float32 → the integer dtype of ``detail`` with its (scale, zero point)."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


@register_runtime
class LiteRTRunner(Runner):
    """Runs a ``.tflite`` file in the LiteRT interpreter (XNNPACK delegate, fixed threads)."""

    name = "litert"
    format = "tflite"
    package = "ai-edge-litert"
    module = "ai_edge_litert"
    install_hint = INSTALL_HINT

    def _load(self) -> None:
        interpreter = import_litert_interpreter()
        check_identifier(self.path, self.name, TFLITE_IDENTIFIER, "tflite", "a .tflite file")
        prepare_with_litert(self.path, self.name)  # XNNPACK skips checks that crash it after
        try:
            self.interpreter = interpreter.Interpreter(
                model_path=str(self.path), num_threads=self.threads
            )
            self.interpreter.allocate_tensors()  # applies the XNNPACK delegate
        except Exception as error:  # the interpreter raises ValueError/RuntimeError
            raise RuntimeLoadError(
                f"litert: cannot load {self.path} as a LiteRT model ({first_line(error)}); "
                "is the file complete and really .tflite?"
            ) from error
        try:
            self._read_signature()
        except (UnicodeDecodeError, IndexError, KeyError, ValueError) as error:
            raise RuntimeLoadError(
                f"litert: {self.path} has a corrupt input or output ({type(error).__name__}: "
                f"{first_line(error)}); is the file complete and really .tflite?"
            ) from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("litert: loaded %s (%s)", self.path, self.delegation_summary())

    def _read_signature(self) -> None:
        """The input and output details: shapes, batch size, quantization."""
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeLoadError(
                f"litert: {self.path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "slimkit runs single-input, single-output models"
            )
        self._input, self._output = inputs[0], outputs[0]
        shape = [int(d) for d in self._input["shape"]]
        signature = [int(d) for d in self._input["shape_signature"]]
        self._input_shape = tuple(shape[1:])
        self._batch_size = None if signature[0] == -1 else shape[0]
        self._quantized_input = self._input["dtype"] != np.float32
        self._quantized_output = self._output["dtype"] != np.float32

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape

    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one batch of exactly the interpreter's current input shape."""
        value = _quantize(x, self._input) if self._quantized_input else x
        self.interpreter.set_tensor(self._input["index"], value)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        return _dequantize(out, self._output) if self._quantized_output else out.copy()

    def _resize(self, batch: int) -> None:
        if int(self.interpreter.get_input_details()[0]["shape"][0]) != batch:
            self.interpreter.resize_tensor_input(self._input["index"], [batch, *self._input_shape])
            self.interpreter.allocate_tensors()

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        try:
            if self._batch_size is not None:
                return run_in_fixed_batches(self._invoke, x, self._batch_size)
            self._resize(len(x))
            return self._invoke(x)
        except Exception as error:
            raise ConfigError(
                f"litert: running {self.path.name} on input {x.shape} {x.dtype} failed: "
                f"{first_line(error)}"
            ) from error

    def delegation(self) -> DelegationReport:
        """Operators XNNPACK runs and operators left to LiteRT's kernels, from the execution plan.

        After delegation the interpreter's node list holds the model's operators followed by one
        ``DELEGATE`` node per XNNPACK partition; an operator is inside a partition when it lies
        between that node's inputs and outputs.
        """
        wrapper = self.interpreter._interpreter  # the public API has no execution-plan view
        nodes = [
            (
                str(wrapper.NodeName(i)),
                [int(t) for t in wrapper.NodeInputs(i)],
                [int(t) for t in wrapper.NodeOutputs(i)],
            )
            for i in range(wrapper.NumNodes())
        ]
        producer = {
            t: i for i, (name, _, outs) in enumerate(nodes) if name != "DELEGATE" for t in outs
        }
        inside: set[int] = set()
        partitions = 0
        for name, inputs, outputs in nodes:
            if name != "DELEGATE":
                continue
            partitions += 1
            boundary, stack = set(inputs), list(outputs)
            while stack:  # walk back from the partition's outputs to its inputs
                tensor = stack.pop()
                node = producer.get(tensor)
                if tensor in boundary or node is None or node in inside:
                    continue
                inside.add(node)
                stack.extend(nodes[node][1])
        ops = [(i, name) for i, (name, _, _) in enumerate(nodes) if name != "DELEGATE"]
        return DelegationReport(
            backend="XNNPACK",
            delegated=count_names(name for i, name in ops if i in inside),
            outside=count_names(name for i, name in ops if i not in inside),
            partitions=partitions,
        )

    def delegation_summary(self) -> str:
        """:meth:`delegation` as one line (for logs)."""
        return self.delegation().summary()

    @classmethod
    def version(cls) -> str:
        import_litert_interpreter()
        from importlib.metadata import version

        return str(version("ai-edge-litert"))

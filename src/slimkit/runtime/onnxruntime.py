"""ONNX Runtime on the CPU execution provider, with a fixed intra-op thread count that never
spins while it waits for work (see :mod:`slimkit.threads`)."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, MissingDependencyError, RuntimeLoadError
from slimkit.runtime.base import Runner, first_line, register_runtime
from slimkit.threads import onnxruntime_options

logger = logging.getLogger(__name__)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            "ONNX Runtime is not installed; install it with: pip install onnxruntime"
        ) from error
    return onnxruntime


@register_runtime
class OnnxRuntimeRunner(Runner):
    """Runs an ``.onnx`` file in ONNX Runtime (CPU, all graph optimizations, sequential mode)."""

    name = "onnxruntime"
    format = "onnx"
    package = "onnxruntime"

    def _load(self) -> None:
        ort = _import_ort()
        options = onnxruntime_options(ort, self.threads)  # the count given; threads never spin
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            first = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise RuntimeLoadError(
                f"onnxruntime: cannot load {self.path} as an ONNX model ({first[:200]}); "
                "is the file complete and really .onnx?"
            ) from error
        try:
            self._read_signature()
        except UnicodeDecodeError as error:  # names or metadata that are not UTF-8
            raise RuntimeLoadError(
                f"onnxruntime: {self.path} holds names or metadata that are not UTF-8 "
                f"({first_line(error)}); is the file complete and really .onnx?"
            ) from None

    def _read_signature(self) -> None:
        """Input and output names, the input shape and the spec the file records."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RuntimeLoadError(
                f"onnxruntime: {self.path} has {len(inputs)} inputs; "
                "slimkit runs single-input models"
            )
        outputs = self.session.get_outputs()
        if len(outputs) < 1:
            raise RuntimeLoadError(f"onnxruntime: {self.path} has no output; is it a model?")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        shape = inputs[0].shape
        self._input_shape = (
            tuple(int(d) for d in shape[1:]) if all(isinstance(d, int) for d in shape[1:]) else None
        )
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if self._input_shape is None and "slimkit.input_shape" in meta:
            self._input_shape = self._recorded_shape(meta["slimkit.input_shape"])
        self._model_spec = self._recorded_spec(meta.get("slimkit.model_spec"))

    def _recorded_shape(self, text: str) -> tuple[int, ...]:
        """The ``slimkit.input_shape`` metadata: a JSON list of positive ints."""
        try:
            shape = json.loads(text)
        except (ValueError, RecursionError):
            shape = None
        if (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise RuntimeLoadError(
                f"onnxruntime: {self.path} has corrupt slimkit.input_shape metadata "
                f"{text[:80]!r}; export the model again"
            )
        return tuple(shape)

    def _recorded_spec(self, text: str | None) -> dict[str, Any] | None:
        """The ``slimkit.model_spec`` metadata, validated; None if the file has none."""
        if text is None:
            return None
        from slimkit.errors import ModelError
        from slimkit.models import ModelSpec

        try:
            return ModelSpec.from_dict(json.loads(text)).to_dict()
        except (ValueError, RecursionError, ModelError) as error:  # JSON or spec
            first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise RuntimeLoadError(
                f"onnxruntime: {self.path} has corrupt slimkit.model_spec metadata ({first}); "
                "export the model again"
            ) from None

    @property
    def model_spec(self) -> dict[str, Any] | None:
        return self._model_spec

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        try:
            (logits,) = self.session.run([self.output_name], {self.input_name: x})
        except Exception as error:  # ORT raises its own Fail/InvalidArgument types
            raise ConfigError(
                f"onnxruntime: running {self.path.name} on input {x.shape} {x.dtype} failed: "
                f"{str(error).splitlines()[0][:200]}"
            ) from error
        return np.asarray(logits, dtype=np.float32)

    @classmethod
    def version(cls) -> str:
        return str(_import_ort().__version__)

"""ONNX Runtime on the CPU execution provider, with a fixed intra-op thread count."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from slimkit.errors import ConfigError, MissingDependencyError, RuntimeLoadError
from slimkit.runtime.base import Runner, register_runtime

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
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
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
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RuntimeLoadError(
                f"onnxruntime: {self.path} has {len(inputs)} inputs; "
                "slimkit runs single-input models"
            )
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        shape = inputs[0].shape
        self._input_shape = (
            tuple(int(d) for d in shape[1:]) if all(isinstance(d, int) for d in shape[1:]) else None
        )
        if self._input_shape is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            if "slimkit.input_shape" in meta:
                self._input_shape = tuple(json.loads(meta["slimkit.input_shape"]))

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

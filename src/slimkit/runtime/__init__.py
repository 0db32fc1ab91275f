"""Runtimes behind one interface: ``load_runtime(name, path, threads=...)`` → :class:`Runner`.

Importing this package registers the built-in runtimes; a new runtime is a new file here with a
``@register_runtime`` class, plus its import below.
"""

from slimkit.runtime import (  # noqa: F401  (registration)
    executorch,
    litert,
    onnxruntime,
    pytorch,
    tflite_micro,
)
from slimkit.runtime.base import (
    Runner,
    RuntimeInfo,
    list_runtimes,
    load_runtime,
    predict_batches,
    register_runtime,
    run_in_fixed_batches,
    runtime_info,
)
from slimkit.runtime.delegation import DelegationReport
from slimkit.runtime.executorch import ExecuTorchRunner
from slimkit.runtime.litert import LiteRTRunner
from slimkit.runtime.onnxruntime import OnnxRuntimeRunner
from slimkit.runtime.pytorch import PyTorchRunner
from slimkit.runtime.tflite_micro import TFLiteMicroRunner

__all__ = [
    "DelegationReport",
    "ExecuTorchRunner",
    "LiteRTRunner",
    "OnnxRuntimeRunner",
    "PyTorchRunner",
    "Runner",
    "RuntimeInfo",
    "TFLiteMicroRunner",
    "list_runtimes",
    "load_runtime",
    "predict_batches",
    "register_runtime",
    "run_in_fixed_batches",
    "runtime_info",
]

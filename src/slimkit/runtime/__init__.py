"""Runtimes behind one interface: ``load_runtime(name, path, threads=...)`` → :class:`Runner`.

Importing this package registers the built-in runtimes; a new runtime is a new file here with a
``@register_runtime`` class, plus its import below.
"""

from slimkit.runtime import onnxruntime, pytorch  # noqa: F401  (registration side effects)
from slimkit.runtime.base import (
    Runner,
    RuntimeInfo,
    list_runtimes,
    load_runtime,
    predict_batches,
    register_runtime,
    runtime_info,
)
from slimkit.runtime.onnxruntime import OnnxRuntimeRunner
from slimkit.runtime.pytorch import PyTorchRunner

__all__ = [
    "OnnxRuntimeRunner",
    "PyTorchRunner",
    "Runner",
    "RuntimeInfo",
    "list_runtimes",
    "load_runtime",
    "predict_batches",
    "register_runtime",
    "runtime_info",
]

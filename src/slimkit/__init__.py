"""slimkit: make PyTorch models smaller, faster and better, measured on real deployment runtimes.

The public verbs, one per stage of the flow::

    data = slimkit.load_dataset("digits")
    model = slimkit.create_model("lenet5", input_shape=data.input_shape)
    slimkit.train(model, data, slimkit.TrainConfig(epochs=10))
    slimkit.export(model, "model.onnx")
    record = slimkit.measure("model.onnx", data, runtime="onnxruntime", reference=model)
    report = slimkit.optimize("recipes/digits.yaml")    # the whole flow from a recipe

``progress=True`` on train, compress, measure and optimize shows tqdm bars; a function gets a
:class:`ProgressEvent` per epoch, batch, step or trial (see :mod:`slimkit.progress`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers; at run time each is imported on first use
    from slimkit.data import DataConfig, Dataset, load_dataset, parse_data_spec
    from slimkit.errors import SlimkitError
    from slimkit.export import ExportResult, export, list_formats
    from slimkit.measure import (  # type: ignore[no-redef]
        LatencyConfig,
        MeasureRecord,
        compare_logits,
        count_costs,
        environment,
        measure,
    )
    from slimkit.models import ModelSpec, create_model, list_models, register_model
    from slimkit.pipeline import Recipe, optimize  # type: ignore[no-redef]
    from slimkit.progress import ProgressEvent
    from slimkit.runtime import Runner, list_runtimes, load_runtime, register_runtime
    from slimkit.techniques import compress
    from slimkit.train import (
        Callback,
        TrainConfig,
        TrainResult,
        load_checkpoint,
        save_checkpoint,
        train,
    )

# name -> module: torch, ONNX and the runtimes load when a verb is first used, not on
# ``import slimkit`` (the command line's --help must not wait for them)
_LAZY = {
    **dict.fromkeys(("DataConfig", "Dataset", "load_dataset", "parse_data_spec"), "data"),
    "SlimkitError": "errors",  # (measure: see _Package below)
    **dict.fromkeys(("ExportResult", "export", "list_formats"), "export"),
    **dict.fromkeys(
        (
            "LatencyConfig",
            "MeasureRecord",
            "compare_logits",
            "count_costs",
            "environment",
        ),
        "measure",
    ),
    **dict.fromkeys(("ModelSpec", "create_model", "list_models", "register_model"), "models"),
    **dict.fromkeys(("Recipe", "optimize"), "pipeline"),
    "ProgressEvent": "progress",
    "compress": "techniques",
    **dict.fromkeys(("Runner", "list_runtimes", "load_runtime", "register_runtime"), "runtime"),
    **dict.fromkeys(
        (
            "Callback",
            "TrainConfig",
            "TrainResult",
            "load_checkpoint",
            "save_checkpoint",
            "train",
        ),
        "train",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slimkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"slimkit.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _verb(name: str) -> Any:
    """A property that is the verb ``slimkit.NAME.NAME``, whatever the import system records."""

    def get(self: types.ModuleType) -> Any:
        return getattr(importlib.import_module(f"slimkit.{name}"), name)

    def ignore(self: types.ModuleType, value: Any) -> None:  # the subpackage, set on import
        pass

    return property(get, ignore)


class _Package(types.ModuleType):
    """``slimkit.measure``, ``slimkit.train`` and ``slimkit.export`` are the verbs, though
    ``slimkit/measure/``, ``slimkit/train/`` and ``slimkit/export/`` are also subpackages.

    Importing a submodule sets the parent's attribute to it; with the verbs loaded lazily that
    would leave ``slimkit.measure`` the package (after ``import slimkit.measure``, or any module
    that imports it). These properties keep the verbs in their place.
    """

    measure = _verb("measure")
    train = _verb("train")
    export = _verb("export")


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "Callback",
    "DataConfig",
    "Dataset",
    "ExportResult",
    "LatencyConfig",
    "MeasureRecord",
    "ModelSpec",
    "ProgressEvent",
    "Recipe",
    "Runner",
    "SlimkitError",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "compare_logits",
    "compress",
    "count_costs",
    "create_model",
    "environment",
    "export",
    "list_formats",
    "list_models",
    "list_runtimes",
    "load_checkpoint",
    "load_dataset",
    "load_runtime",
    "measure",
    "optimize",
    "parse_data_spec",
    "register_model",
    "register_runtime",
    "save_checkpoint",
    "train",
]

"""slimkit: make PyTorch models smaller, faster and better, measured on real deployment runtimes.

The public verbs, one per stage of the flow::

    data = slimkit.load_dataset("digits")
    model = slimkit.create_model("lenet5", input_shape=data.input_shape)
    slimkit.train(model, data, slimkit.TrainConfig(epochs=10))
    slimkit.export(model, "model.onnx")
    record = slimkit.measure("model.onnx", data, runtime="onnxruntime", reference=model)
    report = slimkit.optimize("recipes/digits.yaml")    # the whole flow from a recipe
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
    from slimkit.runtime import Runner, list_runtimes, load_runtime, register_runtime
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


class _Package(types.ModuleType):
    """``slimkit.measure`` is the verb, though ``slimkit/measure/`` is also a subpackage.

    Importing a submodule sets the parent's attribute to it; with the verbs loaded lazily that
    would leave ``slimkit.measure`` the package. This property keeps the verb in its place.
    """

    @property
    def measure(self) -> Any:
        return importlib.import_module("slimkit.measure").measure

    @measure.setter
    def measure(self, value: Any) -> None:  # the import system records the subpackage here
        pass


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
    "Recipe",
    "Runner",
    "SlimkitError",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "compare_logits",
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

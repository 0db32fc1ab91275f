"""slimkit: make PyTorch models smaller, faster and better, measured on real deployment runtimes.

The public verbs, one per stage of the flow::

    data = slimkit.load_dataset("digits")
    model = slimkit.create_model("lenet5", input_shape=data.input_shape)
    slimkit.train(model, data, slimkit.TrainConfig(epochs=10))
    slimkit.export(model, "model.onnx")
    record = slimkit.measure("model.onnx", data, runtime="onnxruntime", reference=model)
    report = slimkit.optimize("recipes/digits.yaml")    # the whole flow from a recipe
"""

from slimkit.data import DataConfig, Dataset, load_dataset, parse_data_spec
from slimkit.errors import SlimkitError
from slimkit.export import ExportResult, export, list_formats
from slimkit.measure import (
    LatencyConfig,
    MeasureRecord,
    compare_logits,
    count_costs,
    environment,
    measure,
)
from slimkit.models import ModelSpec, create_model, list_models, register_model
from slimkit.pipeline import Recipe, optimize
from slimkit.runtime import Runner, list_runtimes, load_runtime, register_runtime
from slimkit.train import (
    Callback,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    save_checkpoint,
    train,
)

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

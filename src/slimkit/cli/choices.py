"""Names and defaults the command line shows in ``--help``, importable without torch.

``slimkit --help``, ``slimkit CMD --help`` and a mistyped argument must answer before torch, ONNX
or the runtimes load, so the option declarations cannot import the registries and config classes
these values come from. Each value here mirrors one in the library (named beside it), and
``tests/cli/test_cli_startup.py`` checks that every one equals its source, so the library stays
the one definition and a drift fails a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

# slimkit.data.DATA_SOURCES; the default data and the input shape of its samples
DATA_SOURCES = ("digits", "mnist", "fashion-mnist", "idx", "folder", "cifar10", "cifar100", "npz")
DEFAULT_DATA = "digits"
DEFAULT_DATA_SHAPE = "1x8x8"  # load_dataset("digits").input_shape
DATA_HELP = (
    "Data spec: digits (8x8, built in), mnist:PATH, fashion-mnist:PATH, idx:PATH, folder:PATH "
    "(one subfolder of images per class), cifar10:PATH, cifar100:PATH (binary) or npz:PATH"
)

# slimkit.models.list_models() and DEFAULT_MODEL
MODELS = (
    "lenet300_100",
    "lenet5",
    "mlp",
    "mobilenet_v1",
    "mobilenet_v1_small",
    "mobilenet_v2",
    "mobilenet_v2_small",
    "sequence_transformer",
    "shufflenet_small",
    "vit_small",
)
DEFAULT_MODEL = "lenet5"

# slimkit.runtime.list_runtimes(); those whose format an exporter writes; RUNTIME_QUANTIZERS keys
RUNTIMES = ("executorch", "litert", "onnxruntime", "pytorch", "tflite-micro")
EXPORT_RUNTIMES = ("executorch", "litert", "onnxruntime", "tflite-micro")
BENCH_RUNTIMES = ("pytorch", "onnxruntime", "litert", "executorch")
PRECISIONS = ("fp32", "int8")  # slimkit.export.targets.PRECISIONS

# slimkit.techniques.list_techniques() and slimkit.techniques.quantize.observers.list_observers()
TECHNIQUES = (
    "channel_pruning",
    "distillation",
    "dynamic_int8",
    "head_pruning",
    "low_rank",
    "magnitude_pruning",
    "qat_int8",
    "static_int8",
    "weight_clustering",
    "weight_only_int8",
)
CALIBRATIONS = ("entropy", "minmax", "moving_average", "mse", "percentile")
GRANULARITIES = ("global", "layer")  # slimkit.techniques.prune.masks.GRANULARITIES

# slimkit.train.config: OPTIMIZERS, SCHEDULES, DEVICES and TrainConfig's defaults
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
DEVICES = ("cpu", "cuda", "auto")
TRAIN_DEFAULTS = {
    "epochs": 30,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 3e-3,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "label_smoothing": 0.0,
}
# slimkit.techniques.distill.DistillationConfig's defaults
DISTILL_DEFAULTS = {
    "temperature": 4.0,
    "alpha": 0.9,
    "epochs": 10,
    "lr": 3e-3,
    "batch_size": 64,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "schedule": "cosine",
}

SAMPLERS = ("nsga2", "tpe", "random")  # slimkit.search.run.SAMPLERS
STORAGE_WAIT_S = 300.0  # slimkit.search.study.DEFAULT_WAIT_S


QUANTIZE_MODES = ("static", "qat", "dynamic", "weight-only")  # slimkit quantize --mode (its own)
QUANTIZERS = ("slimkit", "runtime")  # int8 by slimkit or by each runtime (slimkit bench)


def one_of(values: Sequence[str], metavar: str | None = None) -> dict[str, Any]:
    """``typer.Option(..., **one_of(NAMES))``: the option shows ``[a|b|c]`` (or ``metavar``, for
    a long list the help text then names) in ``--help`` and refuses any other value as a usage
    error, before a library loads (repeatable options too)."""

    def check(value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and item not in values:
                raise typer.BadParameter(f"{item!r} is not one of {', '.join(values)}")
        return value

    return {"callback": check, "metavar": metavar or "[" + "|".join(values) + "]"}

"""One candidate, end to end: build → train (or distil) → compress → export → measure.

:func:`evaluate_plan` is what every search trial runs, and what ``slimkit optimize`` runs for each
fixed entry of a recipe: the same code, so a trial and a hand-written candidate are measured the
same way. Accuracy for the search is the *validation* accuracy measured in the target runtime; the
test accuracy is measured too and is what reports show, so the search never sees the test split.

Latency is timed while holding a machine-wide file lock (:func:`machine_lock`): parallel workers on
one machine train side by side but never time side by side, so they do not skew each other's
timings. (Training of other workers still loads the CPU during a timing; the lock keeps timings
from overlapping, not the machine idle. On 2 cores, ``--workers 1`` gives the cleanest numbers.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.export.registry import exporter_info
from slimkit.measure import LatencyConfig, count_costs, measure
from slimkit.models import ModelSpec, build_model
from slimkit.report.candidates import Candidate
from slimkit.runtime import load_runtime, predict_batches
from slimkit.search.space import DISTILLATION, TrialPlan
from slimkit.techniques import compress, config_from_dict
from slimkit.techniques.registry import technique_info
from slimkit.train import Callback, TrainConfig, train
from slimkit.train.loop import TrainState

logger = logging.getLogger(__name__)

# runtime → export format of the file it loads
RUNTIME_FORMATS = {
    "onnxruntime": "onnx",
    "litert": "tflite",
    "executorch": "pte",
    "tflite-micro": "tflite-micro",
}

EpochHook = Callable[[int, float], None]


class TrialStopped(Exception):
    """Raised from an epoch hook to end a trial early (the search's stopping rules)."""


@dataclass(frozen=True)
class Target:
    """Where candidates are measured: runtime, batch size, threads and the timing budget."""

    runtime: str = "onnxruntime"
    batch_size: int = 64
    threads: int = 1
    latency_budget_s: float = 1.0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIME_FORMATS:
            raise ConfigError(
                f"target runtime {self.runtime!r} is not searchable; choose from: "
                f"{', '.join(RUNTIME_FORMATS)}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1; got {self.batch_size!r}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"threads must be an int >= 1; got {self.threads!r}")
        if self.runtime == "tflite-micro" and self.batch_size != 1:
            raise ConfigError("TFLite Micro runs one sample at a time: set target batch_size: 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def machine_lock(name: str = "slimkit-latency.lock") -> Iterator[None]:
    """Hold an exclusive, machine-wide file lock (released when the process dies, even by kill)."""
    path = Path(tempfile.gettempdir()) / name
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _EpochReporter(Callback):
    def __init__(self, hook: EpochHook | None) -> None:
        self.hook = hook

    def on_epoch_end(self, state: TrainState) -> None:
        if self.hook is not None and state.history:
            self.hook(len(state.history), float(state.history[-1].val_accuracy))


def _technique_config(entry: Mapping[str, Any], seed: int) -> Any:
    body = dict(entry)
    fields = {f.name for f in dataclasses.fields(technique_info(body["technique"]).config_class)}
    if "seed" in fields:
        body.setdefault("seed", seed)
    return config_from_dict(body)


def _distillation_config(
    plan: TrialPlan, train_config: TrainConfig, teacher: str | nn.Module | None
) -> Any:
    if teacher is None:
        raise ConfigError(
            "this plan distils, but no teacher was given: set 'teacher' (a checkpoint) in the "
            "recipe or search, or take distillation out of the space"
        )
    # the training options both configs have (epochs, lr, batch size, optimizer, augment, ...)
    student = {f.name for f in dataclasses.fields(technique_info(DISTILLATION).config_class)}
    shared = {
        f.name: getattr(train_config, f.name)
        for f in dataclasses.fields(train_config)
        if f.name in student and f.name != "device"
    }
    body = {"technique": DISTILLATION, **shared, **(plan.distillation or {}), "teacher": teacher}
    return config_from_dict(body)


def layer_details(model: nn.Module, *, bits: int) -> list[dict[str, Any]]:
    """Per-layer facts for the report: parameters, sparsity (zero fraction), channels, bits."""
    rows = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue
        w = weight.detach()
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "shape": list(w.shape),
                "params": int(w.numel()),
                "sparsity": float((w == 0).float().mean()),
                "channels": int(w.shape[0]),
                "bits": bits,
            }
        )
    return rows


def _has_float_layers(model: nn.Module) -> bool:
    """True when ``model`` runs float convolutions or linear layers as modules (an int8 graph
    runs none; dynamic int8 of a CNN keeps its convolutions)."""
    return any(isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) for m in model.modules())


def _is_float_module(model: nn.Module) -> bool:
    try:
        return all(p.dtype.is_floating_point for p in model.parameters())
    except Exception:  # a wrapper without plain parameters
        return False


def _build_and_train(
    plan: TrialPlan,
    data: Dataset,
    seed: int,
    teacher: str | nn.Module | None,
    on_epoch: EpochHook | None,
    tell: Callable[[str], None],
) -> nn.Module:
    """The plan's model, built and trained (or distilled) with its training config."""
    train_config = TrainConfig.from_dict({**plan.train, "seed": seed})
    torch.manual_seed(seed)
    # a zoo name, or a user's "module:function" (from the places allow_user_code allows)
    model = build_model(
        ModelSpec(plan.model, data.input_shape, data.num_classes, dict(plan.model_kwargs))
    )
    reporter = _EpochReporter(on_epoch)
    if plan.distillation is not None:
        tell(f"distilling {plan.model} ({train_config.epochs} epochs)")
        config = _distillation_config(plan, train_config, teacher)
        return compress(model, [config], data=data, callbacks=[reporter])
    tell(f"training {plan.model} ({train_config.epochs} epochs)")
    train(model, data, train_config, callbacks=[reporter])
    return model


def _candidate(
    plan: TrialPlan,
    name: str,
    source: str,
    record: Any,
    stats: Any,
    cost: Any,
    path: Path,
    *,
    layers: list[dict[str, Any]],
    details: dict[str, Any],
) -> Candidate:
    """The report's record of one measured plan."""
    techniques = (
        [{"technique": DISTILLATION, **(plan.distillation or {})}]
        if plan.distillation is not None
        else []
    ) + [dict(t) for t in plan.techniques]
    return Candidate(
        name=name,
        source=source,
        techniques=techniques,
        model={"name": plan.model, "kwargs": dict(plan.model_kwargs)},
        training=dict(plan.train),
        accuracy=record.accuracy,
        latency_p50_ms=stats.p50_ms,
        latency_p90_ms=stats.p90_ms,
        file_bytes=record.file_bytes,
        params=cost.params,
        macs=cost.macs,
        artifact=str(path.resolve()),
        parity=record.parity.to_dict() if record.parity else None,
        details={"val_accuracy": details.pop("val_accuracy"), "layers": layers, **details},
        record=record.to_dict(),
    )


def evaluate_plan(
    plan: TrialPlan,
    data: Dataset,
    target: Target,
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    source: str = "search",
    teacher: str | nn.Module | None = None,
    seed: int = 0,
    on_epoch: EpochHook | None = None,
    say: Callable[[str], None] | None = None,
    trained: nn.Module | None = None,
) -> tuple[Candidate, dict[str, Any]]:
    """Build, train, compress, export and measure one plan.

    Args:
        plan: the model, training and techniques.
        data: train/val/test splits.
        target: runtime, batch size and threads of the latency measurement.
        out_dir: where the exported file is written.
        name: the candidate's label and file stem.
        source: ``search``, ``technique`` or ``baseline`` (recorded on the candidate).
        teacher: a checkpoint path or model, for plans that distil.
        seed: seed of initialisation and training.
        on_epoch: ``hook(epoch, val_accuracy)`` after each training epoch; may raise
            :class:`TrialStopped`.
        say: progress messages.
        trained: an already-trained model to start from instead of building and training one
            (``optimize`` reuses its baseline for technique-only candidates).

    Returns:
        ``(candidate, metrics)``; metrics holds the objective keys (see ``objectives.METRICS``)
        plus ``test_accuracy`` and ``latency_p90``.
    """
    tell = say or (lambda message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = (
        trained
        if trained is not None
        else _build_and_train(
            plan, data, seed, teacher, on_epoch, lambda message: tell(f"{name}: {message}")
        )
    )
    float_model = model
    for entry in plan.techniques:
        tell(f"{name}: {entry['technique']}")
        model = compress(model, [_technique_config(entry, seed)], data=data)
        if _is_float_module(model) and _has_float_layers(model):
            float_model = model  # the per-layer report of an int8 graph shows its float layers
    quantized = model is not float_model
    fmt = RUNTIME_FORMATS[target.runtime]
    tell(f"{name}: exporting for {target.runtime}")
    suffix = exporter_info(fmt).suffix
    options: dict[str, Any] = {}
    if fmt in ("tflite", "pte"):
        options["batch_size"] = target.batch_size  # edge files have a fixed batch
    if fmt == "tflite-micro" and not quantized:
        # microcontrollers run int8: a float candidate gets slimkit's static int8 (min-max,
        # per channel), its scales carried into the .tflite
        options["calibration_data"] = data.train.head(256).numpy()
        quantized = True
    exported = export(
        model, out / f"{name}{suffix}", format=fmt, input_shape=data.input_shape, **options
    )
    path = exported.path
    tell(f"{name}: measuring in {target.runtime}")
    with machine_lock():
        record = measure(
            path,
            data,
            runtime=target.runtime,
            batch_sizes=(target.batch_size,),
            threads=(target.threads,),
            reference=model,
            latency=LatencyConfig(time_budget_s=target.latency_budget_s),
            name=name,
            check_reference=False,  # the file was exported from it just now
        )
    runner = load_runtime(target.runtime, path, threads=target.threads)
    val_logits = predict_batches(runner.run, data.val)
    val_accuracy = float(np.mean(val_logits.argmax(axis=1) == data.val.y.numpy()))
    cost = count_costs(model, data.input_shape)  # int8 layers count as the float ones they were
    stats = record.latency_for(target.batch_size, target.threads)
    assert stats is not None
    metrics: dict[str, Any] = {
        "accuracy": val_accuracy,
        "test_accuracy": record.accuracy,
        "latency": stats.p50_ms,
        "latency_p90": stats.p90_ms,
        "size": record.file_bytes,
        "macs": cost.macs,
        "params": cost.params,
        "arena": None,
        "flash": None,
        "seconds": time.perf_counter() - started,
    }
    mcu: dict[str, Any] = {}
    if target.runtime == "tflite-micro":  # measured by the exporter, in child processes
        mcu = {
            "arena": getattr(exported, "arena_bytes", None),
            "flash": getattr(exported, "flash_bytes", None),
        }
    metrics.update(mcu)
    candidate = _candidate(
        plan,
        name,
        source,
        record,
        stats,
        cost,
        path,
        layers=layer_details(float_model, bits=8 if quantized else 32),
        details={"val_accuracy": val_accuracy, "seconds": metrics["seconds"]}
        | {f"{k}_bytes": v for k, v in mcu.items()},
    )
    return candidate, metrics

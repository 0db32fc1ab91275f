"""The ``measure`` verb: a model file in a runtime → one :class:`MeasureRecord`.

Accuracy is measured on the held-out test split through the runtime itself; parity compares the
runtime's logits with the PyTorch reference model on the same test inputs; latency is timed on
real test inputs for every (batch size, threads) setting, each thread count in its own session.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.data.dataset import data_record
from slimkit.errors import ConfigError
from slimkit.measure.counters import count_costs
from slimkit.measure.environment import environment
from slimkit.measure.latency import LatencyConfig, LatencyStats, measure_latency
from slimkit.measure.parity import compare_logits
from slimkit.measure.record import MeasureRecord
from slimkit.progress import Progress, ProgressEvent, ProgressFn, reporting
from slimkit.runtime import PyTorchRunner, Runner, load_runtime, predict_batches, runtime_info
from slimkit.threads import current_threads

logger = logging.getLogger(__name__)


CHECK_SAMPLES = 256  # samples of the same-model check (see check_same_model)


def _batch_of(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` samples of ``x``, tiled if ``x`` has fewer."""
    if len(x) >= batch_size:
        return np.ascontiguousarray(x[:batch_size])
    reps = -(-batch_size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch_size])


def accuracy_of(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float(np.mean(logits.argmax(axis=1) == labels))


# Relative L2 distance of the logits above which a file and a reference are not the same model.
# Measured on digits: the same LeNet-5 in fp32 0.0, in slimkit int8 (static, dynamic, weight-only)
# 0.003-0.010; two LeNet-5s of different seeds 0.63, a LeNet-5 and an MLP 0.57.
MAX_REFERENCE_DISTANCE = 0.3


def check_same_model(
    runner: Runner, reference: nn.Module, x: np.ndarray, logits: np.ndarray
) -> None:
    """Raise ConfigError unless ``reference`` is the model ``runner``'s file was made from.

    Checked in order: the spec the file records (if any) against the reference's; the input
    shape and the number of outputs; then the logits on ``x``, which may differ as much as int8
    rounding makes them (:data:`MAX_REFERENCE_DISTANCE`), not as two different models do.
    """
    spec = getattr(reference, "slimkit_spec", None)
    file = runner.path.name
    mismatch = "are not the same model; give the reference the file was exported from"
    recorded = runner.model_spec
    if recorded is not None and spec is not None and recorded != spec.to_dict():
        raise ConfigError(
            f"{file} was exported from {_spec_line(recorded)} but the reference is "
            f"{_spec_line(spec.to_dict())}: they {mismatch}"
        )
    takes = tuple(runner.input_shape or x.shape[1:])  # the file ran on x
    if spec is not None and tuple(spec.input_shape) != takes:
        raise ConfigError(
            f"{file} takes inputs of shape {takes} but the reference takes "
            f"{tuple(spec.input_shape)}: they {mismatch}"
        )
    sample = np.ascontiguousarray(x[: min(len(x), 256)])
    with torch.no_grad():
        reference_logits = reference.eval()(torch.from_numpy(sample)).numpy()
    got = logits[: len(sample)]
    if reference_logits.shape != got.shape:
        raise ConfigError(
            f"{file} gives outputs of shape {got.shape[1:]} but the reference gives "
            f"{reference_logits.shape[1:]}: they {mismatch}"
        )
    scale = max(float(np.linalg.norm(reference_logits)), 1e-12)
    distance = float(np.linalg.norm(reference_logits - got)) / scale
    if distance > MAX_REFERENCE_DISTANCE:
        raise ConfigError(
            f"{file} and the reference compute different outputs (relative distance "
            f"{distance:.2f} on {len(sample)} test samples; int8 rounding gives about 0.01): "
            f"they {mismatch}"
        )


def _spec_line(spec: dict[str, Any]) -> str:
    """``mlp(hidden=[32]) on (1, 8, 8) → 10`` for messages."""
    kwargs = ", ".join(f"{k}={v!r}" for k, v in spec.get("kwargs", {}).items())
    return f"{spec['name']}({kwargs}) on {tuple(spec['input_shape'])} -> {spec['num_classes']}"


def measure(
    model_or_path: nn.Module | str | os.PathLike[str],
    data: Dataset,
    *,
    runtime: str = "onnxruntime",
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    reference: nn.Module | None = None,
    latency: LatencyConfig | None = None,
    name: str | None = None,
    progress: Progress = None,
    check_reference: bool = True,
) -> MeasureRecord:
    """Measure a model file (or a live model, for ``runtime="pytorch"``) on ``data``'s test split.

    Args:
        model_or_path: the exported file for ``runtime``, or an ``nn.Module`` for ``pytorch``.
        data: the data set; accuracy and parity use its test split, latency its test inputs.
        runtime: a registered runtime name (see :func:`slimkit.runtime.list_runtimes`).
        batch_sizes: batch sizes to time.
        threads: CPU thread counts to time (one runtime session per count).
        reference: the PyTorch model the file was exported from, for parity and MAC counting.
        latency: warm-up, repeats and budget of the latency harness.
        name: a label for the record (defaults to the file name or model spec name).
        progress: a :class:`~slimkit.progress.ProgressEvent` (stage ``measure``, steps done of
            all, ``info`` the step starting: accuracy, parity, each latency setting) to a
            function, a tqdm bar (``True``), nothing (``False``); ``None``: a bar in a notebook
            only (see :mod:`slimkit.progress`).
        check_reference: refuse a ``reference`` that is not the model the file was made from
            (:func:`check_same_model`); ``False`` where the caller made the file from it and
            wants its parity reported however far off (the search, ``optimize``).

    Returns:
        One record with accuracy, latency per setting, bytes on disk, parameters, MACs, parity
        and the environment.

    Example:
        >>> record = measure("lenet5.onnx", data, reference=model)  # doctest: +SKIP
        >>> record.latency_for(64, 1).p50_ms  # doctest: +SKIP
    """
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"batch_sizes must be ints >= 1; got {list(batch_sizes)!r}")
    if not threads or any(not isinstance(t, int) or t < 1 for t in threads):
        raise ConfigError(f"threads must be ints >= 1; got {list(threads)!r}")
    with reporting(progress) as report:
        steps = _Steps(report, 1 + (reference is not None) + len(threads) * len(batch_sizes))
        record = _measure(
            model_or_path,
            data,
            runtime=runtime,
            batch_sizes=batch_sizes,
            threads=threads,
            reference=reference,
            latency=latency,
            name=name,
            say=steps.start,
            check_reference=check_reference,
        )
        steps.finish()
    return record


class _Steps:
    """``start(message)`` before each step of :func:`measure`: one event per step, numbered."""

    def __init__(self, report: ProgressFn | None, total: int) -> None:
        self.report, self.total, self.done = report, total, 0

    def start(self, message: str) -> None:
        if self.report is not None:
            self.report(ProgressEvent("measure", min(self.done, self.total), self.total, message))
        self.done += 1

    def finish(self) -> None:
        if self.report is not None:
            self.report(ProgressEvent("measure", self.total, self.total, "done"))


def _measure(
    model_or_path: nn.Module | str | os.PathLike[str],
    data: Dataset,
    *,
    runtime: str,
    batch_sizes: Sequence[int],
    threads: Sequence[int],
    reference: nn.Module | None,
    latency: LatencyConfig | None,
    name: str | None,
    say: Callable[[str], None],
    check_reference: bool,
) -> MeasureRecord:
    """The body of :func:`measure`, its arguments checked; ``say`` before each step."""
    info = runtime_info(runtime)
    artifact: Path | None = None

    def load(thread_count: int) -> Runner:
        if isinstance(model_or_path, nn.Module):
            if runtime != "pytorch":
                raise ConfigError(
                    f"a live model can only be measured in the 'pytorch' runtime; export it for "
                    f"{runtime!r} first (slimkit.export) and pass the file"
                )
            return PyTorchRunner.from_model(model_or_path, threads=thread_count)
        return load_runtime(runtime, model_or_path, threads=thread_count)

    if not isinstance(model_or_path, nn.Module):
        artifact = Path(model_or_path)
    x_head = data.test.head(max(CHECK_SAMPLES, *batch_sizes)).numpy()  # checks and timing
    y_test = data.test.y.numpy()

    say(f"{runtime}: accuracy on {len(data.test)} test samples")
    runner = load(threads[0])
    logits = predict_batches(runner.run, data.test)
    accuracy = accuracy_of(logits, y_test)

    parity = None
    spec_model = (
        reference
        if reference is not None
        else (model_or_path if isinstance(model_or_path, nn.Module) else None)
    )
    if spec_model is None and isinstance(runner, PyTorchRunner):
        spec_model = runner.model
    if reference is not None:
        say(f"{runtime}: parity against the PyTorch model")
        if check_reference:
            check_same_model(runner, reference, x_head, logits)
        reference_runner = PyTorchRunner.from_model(reference, threads=current_threads())
        parity = compare_logits(predict_batches(reference_runner.run, data.test), logits)

    timings: list[LatencyStats] = []
    for thread_count in threads:
        runner = load(thread_count)
        for batch_size in batch_sizes:
            say(f"{runtime}: latency at batch {batch_size}, {thread_count} thread(s)")
            stats = measure_latency(
                runner.run, _batch_of(x_head, batch_size), threads=thread_count, config=latency
            )
            logger.info(
                "%s batch %d threads %d: p50 %.3f ms (%d repeats, stable=%s)",
                runtime,
                batch_size,
                thread_count,
                stats.p50_ms,
                stats.repeats,
                stats.stable,
            )
            timings.append(stats)

    params = macs = None
    spec = getattr(spec_model, "slimkit_spec", None) if spec_model is not None else None
    if spec_model is not None:
        cost = count_costs(spec_model, data.input_shape)
        params, macs = cost.params, cost.macs
    label = name or (
        artifact.name if artifact else (spec.name if spec else type(model_or_path).__name__)
    )
    return MeasureRecord(
        name=label,
        runtime=runtime,
        runtime_version=info.runner.version(),
        artifact=str(artifact) if artifact else "",
        file_bytes=artifact.stat().st_size if artifact else None,
        accuracy=accuracy,
        test_samples=len(data.test),
        latency=tuple(timings),
        environment=environment(),
        params=params,
        macs=macs,
        parity=parity,
        model_spec=spec.to_dict() if spec is not None else None,
        data=data_record(data),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )

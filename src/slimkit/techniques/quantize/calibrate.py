"""Calibration: observe activations on calibration data and fix every tensor's scale.

Tensors produced by ``input``, ``conv``, ``linear``, ``add``, average pooling, ``matmul`` and the
float islands get their own parameters from an observer (constants from their min and max); max
pooling, flatten, a standalone ReLU and the data movements keep their input's (they only move or
clamp integers), and a concatenation's inputs and output share one range, the union of theirs.
Exact tensors (token ids) have none. Weights (an embedding's table too) are symmetric int8, per
channel or per tensor. Empirical bias correction (Nagel et al. 2019, §4.2) then removes the mean
output shift that weight rounding causes in each layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.ir import QGraph, QOp, shared_qparams_groups
from slimkit.techniques.quantize.model import OWN_QPARAMS, apply_op, quantized_weight, run_float
from slimkit.techniques.quantize.observers import Observer, create_observer
from slimkit.techniques.quantize.scheme import activation_qparams, weight_qparams

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def check_calibration_data(data: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Validate calibration inputs: a non-empty float tensor (N, *input_shape) without NaN."""
    if not isinstance(data, torch.Tensor):
        raise ConfigError(
            f"calibration_data must be a tensor of shape (N, {input_shape}); "
            f"got {type(data).__name__}"
        )
    if data.dim() != len(input_shape) + 1 or tuple(data.shape[1:]) != tuple(input_shape):
        raise ConfigError(
            f"calibration_data must have shape (N, {', '.join(map(str, input_shape))}); "
            f"got {tuple(data.shape)}"
        )
    if data.shape[0] == 0:
        raise ConfigError(
            "calibration_data is empty; give at least one sample (a few hundred is typical)"
        )
    if not torch.is_floating_point(data):
        raise ConfigError(f"calibration_data must be float; got {data.dtype}")
    if not torch.isfinite(data).all():
        raise ConfigError("calibration_data contains NaN or infinite values")
    return data.float()


def _batches(data: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [data[i : i + batch_size] for i in range(0, len(data), batch_size)]


def calibrate(
    graph: QGraph,
    calibration_data: torch.Tensor,
    *,
    method: str = "minmax",
    method_options: dict[str, float] | None = None,
    activation_dtype: str = "uint8",
    per_channel: bool = True,
    batch_size: int = 128,
    progress: ProgressFn | None = None,
) -> QGraph:
    """Fill ``graph.qparams`` (activations) and each op's ``weight_qparams``, in place.

    Args:
        graph: the float IR.
        calibration_data: float inputs (N, C, H, W).
        method: observer name (``minmax``, ``moving_average``, ``percentile``, ``mse``,
            ``entropy``).
        method_options: observer options (e.g. ``{"percentile": 99.99}``).
        activation_dtype: ``int8`` or ``uint8``.
        per_channel: per-output-channel weight scales.
        batch_size: calibration batch size.
        progress: ``progress(done, total)`` after each batch.
    """
    observers: dict[str, Observer] = {
        op.output: create_observer(
            "minmax" if op.kind == "constant" else method,
            **({} if op.kind == "constant" else method_options or {}),
        )
        for op in graph.ops
        if op.kind in OWN_QPARAMS and op.quantized
    }
    # the network's input and output are observed with min-max whatever the method: clipping the
    # input throws away what the data holds, and clipping the logits ties the top classes
    if graph.ops[0].quantized:
        observers[graph.ops[0].output] = create_observer("minmax")
    observers[graph.output] = create_observer("minmax")

    def visit(op: QOp, y: torch.Tensor) -> None:
        if op.output in observers:
            observers[op.output].observe(y.detach().numpy())

    batches = _batches(calibration_data, batch_size)
    with torch.no_grad():
        for done, batch in enumerate(batches, 1):
            run_float(graph, batch, visit)
            if progress is not None:
                progress(done, len(batches))
    # one range per group of tensors that share their parameters (a single observed tensor and
    # the pass-through ops after it; or all the inputs of a concatenation)
    groups = shared_qparams_groups(graph)
    ranges: dict[str, tuple[float, float]] = {}
    for op in graph.ops:
        if op.output in observers:
            low, high = observers[op.output].compute_range()
            root = groups[op.output]
            if root in ranges:
                low, high = min(low, ranges[root][0]), max(high, ranges[root][1])
            ranges[root] = (low, high)
    shared = {
        root: activation_qparams(low, high, activation_dtype)
        for root, (low, high) in ranges.items()
    }
    for op in graph.ops:
        if op.quantized:
            graph.qparams[op.output] = shared[groups[op.output]]
        if op.weight is not None:
            op.weight_qparams = weight_qparams(op.weight.numpy(), per_channel=per_channel)
    graph.activation_dtype = activation_dtype
    logger.info(
        "calibrated %d tensors with %s on %d samples", len(observers), method, len(calibration_data)
    )
    return graph


def correct_bias(graph: QGraph, calibration_data: torch.Tensor, *, batch_size: int = 256) -> QGraph:
    """Empirical bias correction: ``b += E[W x] - E[Q(W) x]`` per output channel, in place.

    The expectation is over the calibration data and, for convolutions, over positions; inputs are
    the float model's activations, so each layer's correction is independent of the others.
    """
    layers = [
        op for op in graph.ops if op.kind in ("conv", "linear") and op.weight_qparams is not None
    ]
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    values: dict[str, torch.Tensor] = {}

    def keep(op: QOp, y: torch.Tensor) -> None:
        values[op.output] = y

    with torch.no_grad():
        for batch in _batches(calibration_data, batch_size):
            values.clear()
            run_float(graph, batch, keep)
            for op in layers:
                x = values[op.inputs[0]]
                exact = apply_op(op, [x], op.weight, None)
                rounded = apply_op(op, [x], quantized_weight(op), None)
                # conv (N, C, ...), linear (..., C) → mean over all but the channel axis
                shift = exact - rounded
                axis = 1 if op.kind == "conv" else shift.dim() - 1
                dims = [d for d in range(shift.dim()) if d != axis]
                total = shift.sum(dim=dims)
                sums[op.output] = sums[op.output] + total if op.output in sums else total
                counts[op.output] = counts.get(op.output, 0) + shift.numel() // shift.shape[axis]
    for op in layers:
        delta = sums[op.output] / counts[op.output]
        op.bias = (op.bias if op.bias is not None else torch.zeros_like(delta)) + delta
    return graph

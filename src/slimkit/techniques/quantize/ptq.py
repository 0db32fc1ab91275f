"""Post-training static int8 quantization: fold, (equalize), calibrate, (correct biases).

Example:
    >>> from slimkit.techniques import compress
    >>> qmodel = compress(model, [StaticInt8Config(calibration="mse")], data=data)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.errors import ConfigError, check_choice
from slimkit.progress import ProgressEvent
from slimkit.techniques.quantize.calibrate import calibrate, check_calibration_data, correct_bias
from slimkit.techniques.quantize.equalize import equalize
from slimkit.techniques.quantize.graph import build_graph, trace
from slimkit.techniques.quantize.model import QuantizedModel
from slimkit.techniques.quantize.observers import list_observers
from slimkit.techniques.registry import CompressContext, register_technique

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticInt8Config:
    """Post-training static int8 quantization.

    Args:
        calibration: activation range observer: ``minmax``, ``moving_average``, ``percentile``,
            ``mse`` or ``entropy``.
        percentile: the percentile of the ``percentile`` observer.
        per_channel: one weight scale per output channel (else one per tensor).
        activation_dtype: ``uint8`` (default) or ``int8``. ONNX Runtime's x86 kernels take uint8
            activations with int8 weights; it converts int8 activations to uint8 when it loads
            the model, but not for a tensor read by several nodes, which then stays in float.
        cross_layer_equalization: equalize weight ranges of consecutive layers first.
        bias_correction: remove the mean output shift that weight rounding causes.
        calibration_samples: how many calibration inputs to use (the first ones given).
        batch_size: calibration batch size.
    """

    calibration: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    activation_dtype: str = "uint8"
    cross_layer_equalization: bool = False
    bias_correction: bool = False
    calibration_samples: int = 512
    batch_size: int = 128

    def __post_init__(self) -> None:
        check_choice("calibration", self.calibration, list_observers())
        check_choice("activation_dtype", self.activation_dtype, ("int8", "uint8"))
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"percentile must be in (50, 100]; got {self.percentile!r}")
        for name in ("calibration_samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1; got {value!r}")


def calibration_inputs(context: CompressContext, samples: int) -> torch.Tensor:
    """The calibration inputs: those given, else the first training samples of the data."""
    if context.calibration_data is not None:
        return context.calibration_data[:samples]
    if context.data is not None:
        return context.data.train.head(samples)
    else:
        raise ConfigError(
            "static quantization needs calibration inputs: pass calibration_data=... (a float "
            "tensor of shape (N, C, H, W)) or data=... to compress"
        )


def quantize_static(
    model: nn.Module,
    calibration_data: torch.Tensor,
    config: StaticInt8Config | None = None,
    *,
    progress: CompressContext | None = None,
) -> QuantizedModel:
    """Quantize a float model to int8 with static activation scales.

    Args:
        model: a float model in eval mode (it is not modified).
        calibration_data: float inputs (N, C, H, W) representative of deployment.
        config: calibration method and options.

    Returns:
        A :class:`QuantizedModel` (simulated in PyTorch; exports to ONNX QDQ).
    """
    config = config or StaticInt8Config()
    if model.training:
        raise ConfigError(
            f"{type(model).__name__} is in training mode; call model.eval() before post-training "
            "quantization (batch norms are folded with their running statistics)"
        )
    spec = getattr(model, "slimkit_spec", None)
    gm = trace(model)
    input_shape = tuple(calibration_data.shape[1:])
    if spec is not None and tuple(spec.input_shape) != input_shape:
        raise ConfigError(
            f"calibration_data has samples of shape {input_shape}; "
            f"the model takes {tuple(spec.input_shape)}"
        )
    calibration_data = check_calibration_data(calibration_data, input_shape)
    graph = build_graph(gm, input_shape)
    if config.cross_layer_equalization:
        equalize(graph)
    report = None
    if progress is not None and progress.progress is not None:
        callback = progress.progress

        def report(done: int, total: int) -> None:
            callback(ProgressEvent("calibrate", done, total))

    calibrate(
        graph,
        calibration_data,
        method=config.calibration,
        method_options={"percentile": config.percentile}
        if config.calibration == "percentile"
        else None,
        activation_dtype=config.activation_dtype,
        per_channel=config.per_channel,
        batch_size=config.batch_size,
        progress=report,
    )
    if config.bias_correction:
        correct_bias(graph, calibration_data)
    return QuantizedModel(graph, config, spec)


@register_technique("static_int8", StaticInt8Config)
def _apply_static(
    model: nn.Module, config: StaticInt8Config, context: CompressContext
) -> nn.Module:
    data = calibration_inputs(context, config.calibration_samples)
    return quantize_static(model.eval(), data, config, progress=context)

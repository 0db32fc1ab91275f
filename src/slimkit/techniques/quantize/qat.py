"""Quantization-aware training: fake-quant with a straight-through estimator, optional learned
step sizes (LSQ), and batch-norm freezing.

The float model becomes a :class:`QATModel` that runs the quantized graph with fake-quant
rounding in the forward pass and straight-through gradients in the backward pass (Jacob et al.
2018, §3). Activation ranges start from a calibration pass and then follow an exponential moving
average of the batch extremes; with ``learn_scales=True`` every scale is a parameter trained by
gradient descent instead (LSQ: Esser et al. 2020, "Learned Step Size Quantization", ICLR), with the
gradient scale ``1 / sqrt(N · Q_max)``. A convolution with batch norm is trained with the norm's
scale folded into the quantized weight (as PyTorch's ``ConvBn`` QAT modules do); after
``freeze_bn_after_steps`` optimizer steps the batch-norm statistics stop updating. Training runs
through slimkit's own loop; :func:`convert` returns the :class:`QuantizedModel` to export.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError, check_choice
from slimkit.techniques.quantize.calibrate import calibrate, check_calibration_data
from slimkit.techniques.quantize.graph import QGraph, QOp, build_graph, fold_batch_norm, trace
from slimkit.techniques.quantize.model import (
    OWN_QPARAMS,
    QuantizedModel,
    apply_op,
    quantized_weight,
)
from slimkit.techniques.quantize.observers import list_observers
from slimkit.techniques.quantize.scheme import (
    QParams,
    activation_qparams,
    weight_qparams,
    weight_range,
)
from slimkit.techniques.registry import CompressContext, register_technique
from slimkit.train import Callback, TrainConfig, TrainState, train


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return (torch.round(x) - x).detach() + x


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``factor`` (LSQ's gradient scale)."""
    return (x - x * factor).detach() + x * factor


def fake_quantize_ste(
    x: torch.Tensor, scale: torch.Tensor, zero_point: float, qmin: float, qmax: float
) -> torch.Tensor:
    """``S (clamp(round(x / S) + Z, qmin, qmax) - Z)`` with straight-through rounding.

    Gradient w.r.t. ``x``: 1 inside the representable range, 0 outside. Gradient w.r.t. ``scale``
    (when it requires grad): LSQ's ``q - x/S`` inside, ``qmin - Z`` / ``qmax - Z`` outside.
    """
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


class ActivationFakeQuant(nn.Module):
    """Fake-quant of one activation tensor (per tensor, asymmetric, fixed integer zero point)."""

    def __init__(self, params: QParams, *, learn_scale: bool, momentum: float = 0.01) -> None:
        super().__init__()
        self.qmin, self.qmax = params.qmin, params.qmax
        self.learn_scale = learn_scale
        self.momentum = momentum
        scale = float(params.scale[0])
        zero = int(params.zero_point[0])
        self.low: torch.Tensor
        self.high: torch.Tensor
        self.zero_point: torch.Tensor
        self.register_buffer("low", torch.tensor(scale * (self.qmin - zero)))
        self.register_buffer("high", torch.tensor(scale * (self.qmax - zero)))
        self.register_buffer("zero_point", torch.tensor(float(zero)))
        self.scale = nn.Parameter(torch.tensor(scale), requires_grad=learn_scale)
        self.floor: int | None = None  # fused ReLU: integer floor (the zero point)
        self.ceiling_value: float | None = None  # fused ReLU6: real ceiling 6.0

    def qparams(self) -> QParams:
        """Current scale and zero point."""
        if self.learn_scale:
            scale = float(self.scale.detach().abs().clamp_min(1e-8))
            zero = int(self.zero_point)
            return QParams(
                torch.tensor([scale], dtype=torch.float64).numpy(),
                torch.tensor([zero]).numpy(),
                _dtype(self.qmin),
                None,
                self.qmin,
                self.qmax,
            )
        return activation_qparams(float(self.low), float(self.high), _dtype(self.qmin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.learn_scale:
            scale = scale_gradient(
                self.scale.abs().clamp_min(1e-8), 1.0 / math.sqrt(x.numel() * self.qmax)
            )
            zero = float(self.zero_point)
        else:
            if self.training:
                with torch.no_grad():
                    m = self.momentum
                    if self.floor is None:
                        self.low.mul_(1 - m).add_(m * x.min().clamp_max(0))
                    else:
                        # a fused ReLU: nothing below 0 comes out, so the range starts at 0 and
                        # the zero point is the lowest level (int8 kernels fuse the ReLU then)
                        self.low.zero_()
                    self.high.mul_(1 - m).add_(m * x.max().clamp_min(0))
            params = self.qparams()
            scale, zero = torch.tensor(float(params.scale[0])), float(params.zero_point[0])
        low = self.qmin if self.floor is None else max(self.qmin, int(zero))
        high = self.qmax
        if self.ceiling_value is not None:
            high = min(self.qmax, int(zero + round(self.ceiling_value / float(scale))))
        return fake_quantize_ste(x, scale, zero, low, high)


def _dtype(qmin: int) -> str:
    return "uint8" if qmin == 0 else "int8"


class QATLayer(nn.Module):
    """A conv or linear op with fake-quantized weights (and a batch norm folded on the fly)."""

    def __init__(self, op: QOp, *, per_channel: bool, learn_scale: bool) -> None:
        super().__init__()
        assert op.weight is not None
        self.op = op
        self.weight = nn.Parameter(op.weight.clone())
        self.bias = nn.Parameter(op.bias.clone()) if op.bias is not None else None
        self.batch_norm: nn.Module | None = op.attrs.get("batch_norm")
        self.per_channel = per_channel
        self.learn_scale = learn_scale
        initial = weight_qparams(self._folded_weight().detach().numpy(), per_channel=per_channel)
        self.weight_scale = nn.Parameter(
            torch.tensor(initial.scale, dtype=torch.float32), requires_grad=learn_scale
        )

    def _bn_factor(self) -> torch.Tensor | None:
        bn = self.batch_norm
        if bn is None:
            return None
        assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) and bn.running_var is not None
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        return gamma / torch.sqrt(bn.running_var + bn.eps)

    def _folded_weight(self) -> torch.Tensor:
        factor = self._bn_factor()
        if factor is None:
            return self.weight
        return self.weight * factor.reshape([-1] + [1] * (self.weight.dim() - 1))

    def quantized_weight(self) -> torch.Tensor:
        """The folded weight after fake quantization."""
        weight = self._folded_weight()
        qmin, qmax = weight_range()
        if self.learn_scale:
            scale = scale_gradient(
                self.weight_scale.abs().clamp_min(1e-12), 1.0 / math.sqrt(weight[0].numel() * qmax)
            )
        else:
            flat = weight.detach().reshape(weight.shape[0], -1).abs()
            max_abs = flat.amax(dim=1) if self.per_channel else flat.max().expand(weight.shape[0])
            scale = max_abs.clamp_min(1e-12) / qmax
            with torch.no_grad():
                self.weight_scale.copy_(
                    scale if self.per_channel else scale[:1].expand_as(self.weight_scale)
                )
        shape = [-1] + [1] * (weight.dim() - 1)
        return fake_quantize_ste(weight, scale.reshape(shape), 0.0, qmin, qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.quantized_weight()
        factor = self._bn_factor()
        if factor is None:
            return apply_op(self.op, [x], weight, self.bias)
        # PyTorch's ConvBn QAT: quantize the folded weight, undo the BN scale, apply the real BN
        y = apply_op(self.op, [x], weight, None)
        shape = [1, -1] + [1] * (y.dim() - 2)
        y = y / factor.reshape(shape)
        if self.bias is not None:
            y = y + self.bias.reshape(shape)
        assert self.batch_norm is not None
        return self.batch_norm(y)

    def freeze_batch_norm(self) -> None:
        """Stop updating the batch-norm statistics; use the running ones from now on."""
        if self.batch_norm is not None:
            self.batch_norm.eval()
            for p in self.batch_norm.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> QATLayer:
        frozen = self.batch_norm is not None and not self.batch_norm.training and self.training
        super().train(mode)
        if frozen and self.batch_norm is not None:
            self.batch_norm.eval()
        return self

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias with the batch norm folded in (running statistics)."""
        if self.batch_norm is None:
            return (
                self.weight.detach().clone(),
                None if self.bias is None else self.bias.detach().clone(),
            )
        layer: nn.Module
        if self.op.kind == "conv":
            a = self.op.attrs
            layer = nn.Conv2d(
                self.weight.shape[1] * a["groups"],
                self.weight.shape[0],
                (int(self.weight.shape[2]), int(self.weight.shape[3])),
                groups=a["groups"],
                bias=self.bias is not None,
            )
        else:
            layer = nn.Linear(
                self.weight.shape[1], self.weight.shape[0], bias=self.bias is not None
            )
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            if self.bias is not None and layer.bias is not None:
                layer.bias.copy_(self.bias)
        folded = fold_batch_norm(layer, self.batch_norm)  # type: ignore[arg-type]
        assert isinstance(folded, (nn.Conv2d, nn.Linear)) and folded.bias is not None
        return folded.weight.detach().clone(), folded.bias.detach().clone()


class QATModel(nn.Module):
    """The quantized graph with trainable weights and fake-quant activations."""

    def __init__(
        self, graph: QGraph, *, per_channel: bool, learn_scales: bool, spec: object = None
    ) -> None:
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict()
        self.quantizers = nn.ModuleDict()
        for op in graph.ops:
            key = op.output
            if op.kind in ("conv", "linear"):
                self.layers[key] = QATLayer(op, per_channel=per_channel, learn_scale=learn_scales)
            if op.kind in OWN_QPARAMS and op.quantized:
                fq = ActivationFakeQuant(graph.qparams[op.output], learn_scale=learn_scales)
                if op.activation in ("relu", "relu6"):
                    fq.floor = 0
                if op.activation == "relu6":
                    fq.ceiling_value = 6.0
                self.quantizers[key] = fq
        if spec is not None:
            self.slimkit_spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W) → (N, classes), fake-quantized at every quantized tensor
        values: dict[str, torch.Tensor] = {}
        for op in self.graph.ops:
            if op.kind == "input":
                y = x
            elif op.output in self.layers:
                y = self.layers[op.output](values[op.inputs[0]])
            else:
                weight = quantized_weight(op) if op.kind == "embedding" else None
                y = apply_op(op, [values[name] for name in op.inputs], weight, None)
                if op.kind == "relu":
                    y = F.relu6(y) if op.activation == "relu6" else F.relu(y)
            if op.output in self.quantizers:
                y = self.quantizers[op.output](y)
            values[op.output] = y
        return values[self.graph.output]

    def freeze_batch_norms(self) -> None:
        """Freeze every batch norm (see :meth:`QATLayer.freeze_batch_norm`)."""
        for layer in self.layers.values():
            layer.freeze_batch_norm()  # type: ignore[operator]


def prepare_qat(
    model: nn.Module,
    calibration_data: torch.Tensor,
    *,
    calibration: str = "moving_average",
    per_channel: bool = True,
    activation_dtype: str = "uint8",
    learn_scales: bool = False,
) -> QATModel:
    """Build a :class:`QATModel` from a float model, with ranges initialised by calibration."""
    was_training = model.training
    model.eval()
    spec = getattr(model, "slimkit_spec", None)
    input_shape = tuple(calibration_data.shape[1:])
    calibration_data = check_calibration_data(calibration_data, input_shape)
    graph = build_graph(trace(model), input_shape, fold_bn=False)
    model.train(was_training)
    concat = next((op for op in graph.ops if op.kind == "concat" and op.quantized), None)
    if concat is not None:
        raise ConfigError(
            f"layer {concat.layer or concat.name!r} (concat): quantization-aware training does not "
            "support concatenation, whose inputs must share one scale; use static_int8"
        )
    # calibrate on a BN-folded copy so the initial ranges are those of the deployed model
    folded = copy.deepcopy(graph)
    for op in folded.ops:
        bn = op.attrs.pop("batch_norm", None)
        if bn is not None:
            layer = QATLayer(op, per_channel=per_channel, learn_scale=False)
            layer.batch_norm = bn
            op.weight, op.bias = layer.folded()
    calibrate(
        folded,
        calibration_data,
        method=calibration,
        activation_dtype=activation_dtype,
        per_channel=per_channel,
    )
    graph.qparams = folded.qparams
    for op, calibrated in zip(graph.ops, folded.ops, strict=True):
        if op.kind == "embedding":  # a table: int8 weights, not trained
            op.weight_qparams = calibrated.weight_qparams
    graph.activation_dtype = activation_dtype
    qat = QATModel(graph, per_channel=per_channel, learn_scales=learn_scales, spec=spec)
    return qat


def convert(qat: QATModel, config: object = None) -> QuantizedModel:
    """Turn a trained :class:`QATModel` into the integer :class:`QuantizedModel` it simulates."""
    graph = copy.deepcopy(qat.graph)
    for op in graph.ops:
        if op.output in qat.layers:
            layer = qat.layers[op.output]
            assert isinstance(layer, QATLayer)
            op.weight, op.bias = layer.folded()
            op.attrs.pop("batch_norm", None)
            qmin, qmax = weight_range()
            if layer.learn_scale:
                scale = layer.weight_scale.detach().abs().clamp_min(1e-12).double().numpy()
                op.weight_qparams = QParams(
                    scale,
                    scale.astype("int64") * 0,
                    "int8",
                    0 if layer.per_channel else None,
                    qmin,
                    qmax,
                )
            else:
                op.weight_qparams = weight_qparams(op.weight.numpy(), per_channel=layer.per_channel)
        if op.output in qat.quantizers:
            fq = qat.quantizers[op.output]
            assert isinstance(fq, ActivationFakeQuant)
            graph.qparams[op.output] = fq.qparams()
        elif op.quantized and op.kind != "input":
            graph.qparams[op.output] = graph.qparams[op.inputs[0]]
    spec = getattr(qat, "slimkit_spec", None)
    return QuantizedModel(graph, config, spec)


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training from a float model.

    Args:
        epochs: training epochs with fake quantization.
        lr: learning rate (small: the model starts trained).
        batch_size: samples per step.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        learn_scales: learn every step size by gradient descent (LSQ) instead of tracking ranges.
        freeze_bn_after_steps: stop updating batch-norm statistics after this many steps
            (``None``: never, ``0``: from the start).
        calibration: observer that initialises the ranges.
        per_channel: per-output-channel weight scales.
        activation_dtype: ``int8`` or ``uint8``.
        calibration_samples: inputs used to initialise the ranges.
        seed: training seed.
    """

    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 64
    optimizer: str = "adam"
    learn_scales: bool = False
    freeze_bn_after_steps: int | None = None
    calibration: str = "moving_average"
    per_channel: bool = True
    activation_dtype: str = "uint8"
    calibration_samples: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        TrainConfig(
            epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer
        )
        check_choice("calibration", self.calibration, list_observers())
        check_choice("activation_dtype", self.activation_dtype, ("int8", "uint8"))
        steps = self.freeze_bn_after_steps
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 0
        ):
            raise ConfigError(f"freeze_bn_after_steps must be None or an int >= 0; got {steps!r}")


def _freeze_callback(qat: QATModel, after: int | None) -> Callback:
    class FreezeBatchNorm(Callback):
        def on_train_start(self, state: TrainState) -> None:
            if after == 0:
                qat.freeze_batch_norms()

        def on_step_end(self, state: TrainState) -> None:
            if after is not None and state.step == after:
                qat.freeze_batch_norms()

    return FreezeBatchNorm()


def quantization_aware_training(
    model: nn.Module,
    data: Dataset,
    config: QATConfig | None = None,
    *,
    callbacks: tuple[Callback, ...] = (),
) -> QuantizedModel:
    """Fine-tune ``model`` with fake quantization on ``data`` and return the int8 model."""
    config = config or QATConfig()
    if not isinstance(data, Dataset):
        raise ConfigError(f"QAT needs a slimkit Dataset; got {type(data).__name__}")
    qat = prepare_qat(
        model,
        data.train.head(config.calibration_samples),
        calibration=config.calibration,
        per_channel=config.per_channel,
        activation_dtype=config.activation_dtype,
        learn_scales=config.learn_scales,
    )
    train_config = TrainConfig(
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        seed=config.seed,
    )
    train(
        qat,
        data,
        train_config,
        callbacks=[*callbacks, _freeze_callback(qat, config.freeze_bn_after_steps)],
    )
    return convert(qat.eval(), config)


@register_technique("qat_int8", QATConfig)
def _apply_qat(model: nn.Module, config: QATConfig, context: CompressContext) -> nn.Module:
    data = context.require_data("quantization-aware training")
    return quantization_aware_training(model, data, config, callbacks=tuple(context.callbacks))

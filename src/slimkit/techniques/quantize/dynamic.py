"""Dynamic and weight-only int8 for linear layers (the usual choice for MLPs and transformers).

- **Dynamic**: weights are int8 (per output channel, symmetric); each batch's input to a linear
  layer is quantized to uint8 at run time with the batch's own min and max, multiplied in integers
  (int32 accumulators) and dequantized by ``S_x · S_w``. No calibration data is needed.
- **Weight-only**: weights are stored as int8 and dequantized to float before a float matrix
  product: the file is ~4x smaller, the arithmetic stays float.

Other layers (convolutions, ...) stay float. The modules here simulate exactly what ONNX Runtime's
``DynamicQuantizeLinear → MatMulInteger`` (and ``DequantizeLinear → Gemm``) compute.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.scheme import quantize, weight_qparams
from slimkit.techniques.registry import CompressContext, register_technique

MODES = ("dynamic", "weight_only")


class Int8Linear(nn.Module):
    """A linear layer with an int8 weight; ``mode`` is ``dynamic`` or ``weight_only``."""

    weight_int8: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, linear: nn.Linear, *, mode: str, per_channel: bool = True) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode = mode
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        params = weight_qparams(weight.numpy(), per_channel=per_channel)
        q = quantize(weight.numpy(), params)
        self.register_buffer("weight_int8", torch.from_numpy(q.astype(np.int8)))
        scale = np.broadcast_to(params.scale, (self.out_features,)).astype(np.float32).copy()
        self.register_buffer("weight_scale", torch.from_numpy(scale))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def dequantized_weight(self) -> torch.Tensor:
        """``S_w · q_w`` as float32 (out, in)."""
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, in) → (N, out)
        if self.mode == "weight_only":
            return F.linear(x, self.dequantized_weight(), self.bias)
        # DynamicQuantizeLinear: uint8, range widened to hold 0, zero point rounded half to even
        low = torch.clamp(x.min(), max=0.0)
        high = torch.clamp(x.max(), min=0.0)
        scale = torch.clamp((high - low) / 255.0, min=1e-12)
        zero = torch.clamp(torch.round(-low / scale), 0, 255)
        q = torch.clamp(torch.round(x / scale) + zero, 0, 255)
        acc = (q - zero).double() @ self.weight_int8.double().T  # exact int32 accumulation
        y = acc.float() * (scale * self.weight_scale)
        return y if self.bias is None else y + self.bias


def quantize_linear_layers(model: nn.Module, *, mode: str, per_channel: bool = True) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by an :class:`Int8Linear`."""
    copied = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(copied.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, Int8Linear(child, mode=mode, per_channel=per_channel))
                replaced += 1
        del name
    if replaced == 0:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear layer; {mode} int8 quantizes linear layers "
            "only (use static_int8 for convolutions)"
        )
    return copied


@dataclass(frozen=True)
class DynamicInt8Config:
    """Dynamic int8 for linear layers: int8 weights, activations quantized per batch at run time.

    Args:
        per_channel: per-output-channel weight scales.
    """

    per_channel: bool = True


@dataclass(frozen=True)
class WeightOnlyInt8Config:
    """Weight-only int8 for linear layers: int8 storage, float compute.

    Args:
        per_channel: per-output-channel weight scales.
    """

    per_channel: bool = True


@register_technique("dynamic_int8", DynamicInt8Config)
def _apply_dynamic(
    model: nn.Module, config: DynamicInt8Config, context: CompressContext
) -> nn.Module:
    return quantize_linear_layers(model, mode="dynamic", per_channel=config.per_channel)


@register_technique("weight_only_int8", WeightOnlyInt8Config)
def _apply_weight_only(
    model: nn.Module, config: WeightOnlyInt8Config, context: CompressContext
) -> nn.Module:
    return quantize_linear_layers(model, mode="weight_only", per_channel=config.per_channel)

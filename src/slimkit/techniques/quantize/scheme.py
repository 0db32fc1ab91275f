"""The affine quantization scheme of Jacob et al. 2018, and its integer-only arithmetic.

A real value ``r`` is represented by an integer ``q`` as ``r = S (q - Z)`` with a float scale
``S > 0`` and an integer zero point ``Z`` that represents 0.0 exactly. Weights are symmetric int8
(``Z = 0``, range [-127, 127], or [-63, 63] where ONNX Runtime's kernels would saturate: see
:func:`weight_range`), per tensor or per output channel; activations are int8 or uint8,
asymmetric. Biases are int32 with scale ``S_w · S_x`` and zero point 0.

Requantization multiplies an int32 accumulator by ``M = S_x S_w / S_y`` in fixed point:
``M = M0 · 2^-31 · 2^-n`` with ``M0`` an int32 in [2^30, 2^31); the 64-bit product ``acc · M0`` is
shifted right by ``31 + n`` with a single rounding (TFLite's single-rounding reference). Everything
here is exact integer arithmetic on NumPy int64 arrays.

Reference: B. Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from slimkit.errors import ConfigError

DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-(2**31), 2**31 - 1)}
# symmetric int8 weights use the restricted range, as ONNX Runtime and TFLite do; "reduced" is
# ONNX Runtime's reduce_range (7 bits), which its kernels on x86 without VNNI need
WEIGHT_RANGES = {"full": (-127, 127), "reduced": (-63, 63)}
WEIGHT_RANGE_ENV = "SLIMKIT_INT8_WEIGHTS"  # auto (the default), full or reduced


def weight_range() -> tuple[int, int]:
    """The int8 weight range: [-127, 127], or [-63, 63] on a CPU where ONNX Runtime's int8
    kernels saturate (x86-64 without VNNI, :func:`slimkit.cpu.int8_saturates`).

    ``SLIMKIT_INT8_WEIGHTS=full`` or ``reduced`` forces one (for a file built here to run on
    another CPU). The range is recorded in every quantized tensor's parameters (``qmin``,
    ``qmax``), so the integer reference and every export use the same one.
    """
    choice = os.environ.get(WEIGHT_RANGE_ENV, "auto").strip().lower() or "auto"
    if choice == "auto":
        from slimkit.cpu import int8_saturates

        choice = "reduced" if int8_saturates() else "full"
    if choice not in WEIGHT_RANGES:
        given = os.environ[WEIGHT_RANGE_ENV]
        raise ConfigError(f"{WEIGHT_RANGE_ENV} must be auto, full or reduced; got {given!r}")
    return WEIGHT_RANGES[choice]


@dataclass(frozen=True)
class QParams:
    """Scale(s) and zero point(s) of one quantized tensor.

    ``scale`` and ``zero_point`` are 1-element arrays for per-tensor quantization, or one entry per
    channel along ``axis`` for per-channel quantization.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str = "int8"
    axis: int | None = None
    qmin: int = -128
    qmax: int = 127

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per channel."""
        return self.axis is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "scale": [float(s) for s in self.scale],
            "zero_point": [int(z) for z in self.zero_point],
            "dtype": self.dtype,
            "axis": self.axis,
            "qmin": self.qmin,
            "qmax": self.qmax,
        }


def activation_qparams(low: float, high: float, dtype: str = "int8") -> QParams:
    """Asymmetric per-tensor parameters covering [low, high] (the range is widened to hold 0).

    Example:
        >>> p = activation_qparams(0.0, 2.55, "uint8")
        >>> float(p.scale[0]), int(p.zero_point[0])
        (0.01, 0)
    """
    if dtype not in ("int8", "uint8"):
        raise ConfigError(f"activation dtype must be int8 or uint8; got {dtype!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(
            f"activation range must be finite; got [{low}, {high}] (NaN in the data?)"
        )
    qmin, qmax = DTYPE_RANGES[dtype]
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-12:
        high = low + 1e-8  # an all-zero tensor: any scale represents it exactly
    scale = (high - low) / (qmax - qmin)
    zero_point = int(np.clip(round(qmin - low / scale), qmin, qmax))
    return QParams(
        np.array([scale], dtype=np.float64),
        np.array([zero_point], dtype=np.int64),
        dtype,
        None,
        qmin,
        qmax,
    )


def weight_qparams(
    weight: np.ndarray, *, per_channel: bool = True, max_abs: np.ndarray | None = None
) -> QParams:
    """Symmetric int8 parameters for a weight (axis 0 = output channels when per channel).

    Args:
        weight: the float weight, output channels first.
        per_channel: one scale per output channel (else one for the tensor).
        max_abs: optional clipping magnitude(s) to use instead of the weight's own max |w|.
    """
    qmin, qmax = weight_range()
    if max_abs is None:
        flat = (
            np.abs(weight.reshape(weight.shape[0], -1))
            if per_channel
            else np.abs(weight).reshape(1, -1)
        )
        max_abs = flat.max(axis=1)
    max_abs = np.maximum(np.asarray(max_abs, dtype=np.float64), 1e-12)
    scale = max_abs / qmax
    return QParams(
        scale.astype(np.float64),
        np.zeros_like(scale, dtype=np.int64),
        "int8",
        0 if per_channel else None,
        qmin,
        qmax,
    )


def _broadcast(params: QParams, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    if params.axis is None:
        return params.scale.reshape(()), params.zero_point.reshape(())
    shape = [1] * ndim
    shape[params.axis] = -1
    return params.scale.reshape(shape), params.zero_point.reshape(shape)


def quantize(x: np.ndarray, params: QParams) -> np.ndarray:
    """``q = clamp(round_half_even(x / S) + Z)`` as int64 (half to even, as ONNX rounds).

    float32 input is divided in float32, exactly as ONNX ``QuantizeLinear`` does.
    """
    x = np.asarray(x)
    scale, zero = _broadcast(params, x.ndim)
    if x.dtype == np.float32:
        # as ONNX QuantizeLinear: divide in float32, so ties round the way the runtimes round them
        q = np.rint(x / scale.astype(np.float32)).astype(np.float64) + zero
    else:
        q = np.rint(x.astype(np.float64) / scale) + zero
    return np.clip(q, params.qmin, params.qmax).astype(np.int64)


def dequantize(q: np.ndarray, params: QParams) -> np.ndarray:
    """``r = S (q - Z)`` as float64."""
    scale, zero = _broadcast(params, q.ndim)
    return (q.astype(np.float64) - zero) * scale


def quantize_multiplier(multiplier: float) -> tuple[int, int]:
    """Decompose a real multiplier ``0 < M < 1`` as ``M0 · 2^-shift`` with M0 in [2^30, 2^31).

    Returns:
        ``(M0, shift)`` with ``M ≈ M0 / 2^31 · 2^-(shift)``; ``shift`` may be negative when M ≥ 1
        (a left shift), as TFLite allows.

    Example:
        >>> quantize_multiplier(0.5)
        (1073741824, 0)
    """
    if not multiplier > 0 or not math.isfinite(multiplier):
        raise ConfigError(
            f"requantization multiplier must be a positive finite number; got {multiplier}"
        )
    mantissa, exponent = math.frexp(
        multiplier
    )  # multiplier = mantissa * 2^exponent, mantissa in [0.5, 1)
    m0 = round(mantissa * (1 << 31))
    if m0 == 1 << 31:  # rounding reached 1.0: renormalize
        m0 //= 2
        exponent += 1
    return int(m0), int(-exponent)


def rounding_shift_right(x: np.ndarray, shift: int) -> np.ndarray:
    """``x / 2^shift`` rounded to nearest, ties away from zero, on int64 values."""
    x = x.astype(np.int64)
    if shift <= 0:
        return x * (1 << -shift)
    half = np.int64(1 << (shift - 1))
    magnitude = (np.abs(x) + half) >> shift
    return np.where(x < 0, -magnitude, magnitude)


def multiply_by_quantized_multiplier(acc: np.ndarray, m0: int, shift: int) -> np.ndarray:
    """``round(acc · M0 · 2^-(31 + shift))`` with one rounding, in 64-bit integers.

    This is TFLite's single-rounding ``MultiplyByQuantizedMultiplier``: the int32 accumulator times
    the int32 ``M0`` is exact in 64 bits, and one rounding shift gives the result. (gemmlowp's
    older two-step form rounds twice and is off by one in up to a quarter of the outputs when the
    shift is small.)
    """
    acc = np.asarray(acc, dtype=np.int64)
    if acc.size and int(np.abs(acc).max()) >= 1 << 32:
        raise ConfigError("requantization input exceeds 32 bits; the accumulator overflowed")
    return rounding_shift_right(acc * np.int64(m0), 31 + shift)


def requantize(
    acc: np.ndarray,
    multipliers: np.ndarray,
    zero_point: int,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> np.ndarray:
    """int32 accumulators → output integers: ``clamp(Z + round(acc · M))`` per channel or tensor.

    Args:
        acc: int32 accumulators (int64 array holding int32 values).
        multipliers: real multipliers ``S_x S_w / S_y``, one or one per channel along ``axis``.
        zero_point: the output zero point.
        qmin, qmax: the output range (a fused ReLU raises qmin to the zero point).
        axis: the channel axis of ``acc`` for per-channel multipliers.
    """
    out = np.empty_like(acc, dtype=np.int64)
    if axis is None or multipliers.size == 1:
        m0, shift = quantize_multiplier(float(multipliers.reshape(-1)[0]))
        out = multiply_by_quantized_multiplier(acc, m0, shift)
    else:
        moved = np.moveaxis(acc, axis, 0)
        result = np.empty_like(moved, dtype=np.int64)
        for channel, multiplier in enumerate(multipliers):
            m0, shift = quantize_multiplier(float(multiplier))
            result[channel] = multiply_by_quantized_multiplier(moved[channel], m0, shift)
        out = np.moveaxis(result, 0, axis)
    return np.clip(out + zero_point, qmin, qmax)

"""The fixed-point arithmetic of Jacob et al. 2018 against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.scheme import (
    WEIGHT_RANGE_ENV,
    activation_qparams,
    dequantize,
    multiply_by_quantized_multiplier,
    quantize,
    quantize_multiplier,
    requantize,
    rounding_shift_right,
    weight_qparams,
    weight_range,
)


def _round_half_away(x: Fraction) -> int:
    floor = x.numerator // x.denominator
    frac = x - floor
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0):
        return floor + 1
    return floor


@pytest.mark.parametrize(
    "multiplier", [1e-6, 0.0003, 0.01, 0.123456, 0.5, 0.75, 0.999999, 1.0, 3.7]
)
def test_multiplier_decomposition(multiplier: float) -> None:
    m0, shift = quantize_multiplier(multiplier)
    assert 2**30 <= m0 < 2**31
    approx = Fraction(m0, 2**31) * Fraction(2) ** (-shift)
    assert abs(float(approx) - multiplier) <= multiplier * 2**-30


def test_rounding_shift_is_round_half_away_from_zero() -> None:
    x = np.arange(-1000, 1001, dtype=np.int64)
    for shift in (1, 3, 7):
        expected = [_round_half_away(Fraction(int(v), 2**shift)) for v in x]
        assert rounding_shift_right(x, shift).tolist() == expected


def test_fixed_point_multiply_is_the_exact_rounding_of_the_fixed_point_product() -> None:
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**31) + 1, 2**31 - 1, size=2000)
    acc[:5] = [0, 1, -1, 2**31 - 1, -(2**31) + 1]
    for multiplier in (1e-5, 0.0007, 0.031, 0.3308, 0.4999, 0.75):
        m0, shift = quantize_multiplier(multiplier)
        got = multiply_by_quantized_multiplier(acc, m0, shift)
        expected = [_round_half_away(Fraction(int(a) * m0, 2 ** (31 + shift))) for a in acc]
        assert got.tolist() == expected


def test_small_accumulators_round_once() -> None:
    # gemmlowp's two-step rounding gives 34 here (101·0.3308 = 33.41); one rounding gives 33
    m0, shift = quantize_multiplier(0.3308)
    assert multiply_by_quantized_multiplier(np.array([101]), m0, shift).tolist() == [33]


def test_accumulator_overflow_is_detected() -> None:
    with pytest.raises(ConfigError, match="overflow"):
        multiply_by_quantized_multiplier(np.array([2**40]), *quantize_multiplier(0.5))


def test_requantize_saturates_and_applies_the_zero_point() -> None:
    acc = np.array([-(10**9), -100, 0, 100, 10**9], dtype=np.int64)
    out = requantize(acc, np.array([0.01]), zero_point=5, qmin=-128, qmax=127)
    assert out.tolist() == [-128, 4, 5, 6, 127]


def test_per_channel_requantize_uses_each_channel_multiplier() -> None:
    acc = np.full((1, 2, 2), 1000, dtype=np.int64)
    out = requantize(acc, np.array([0.01, 0.05]), 0, -128, 127, axis=1)
    assert out[0, 0].tolist() == [10, 10] and out[0, 1].tolist() == [50, 50]


@pytest.mark.parametrize(
    ("low", "high", "dtype"), [(-1.0, 3.0, "int8"), (0.0, 6.0, "uint8"), (0.5, 2.0, "int8")]
)
def test_zero_is_exactly_representable(low: float, high: float, dtype: str) -> None:
    params = activation_qparams(low, high, dtype)
    assert dequantize(quantize(np.array([0.0]), params), params)[0] == 0.0
    assert params.qmin <= int(params.zero_point[0]) <= params.qmax


def test_round_trip_error_is_at_most_half_a_step() -> None:
    x = np.random.default_rng(1).uniform(-2, 5, size=10_000)
    params = activation_qparams(-2.0, 5.0)
    error = np.abs(dequantize(quantize(x, params), params) - x)
    assert error.max() <= params.scale[0] / 2 + 1e-12


def test_weights_are_symmetric_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    w = np.array([[0.5, -1.0], [0.01, 0.02]])
    monkeypatch.setenv(WEIGHT_RANGE_ENV, "full")
    params = weight_qparams(w, per_channel=True)
    q = quantize(w, params)
    assert params.zero_point.tolist() == [0, 0]
    assert q.tolist() == [[64, -127], [64, 127]]
    assert weight_qparams(w, per_channel=False).scale.tolist() == [1.0 / 127]
    monkeypatch.setenv(WEIGHT_RANGE_ENV, "reduced")  # ONNX Runtime's reduce_range: 7 bits
    params = weight_qparams(w, per_channel=True)
    assert (params.qmin, params.qmax) == (-63, 63)
    assert quantize(w, params).tolist() == [[32, -63], [32, 63]]


@pytest.mark.parametrize(
    ("machine", "flags", "saturates"),
    [
        ("x86_64", ("avx2", "fma"), True),  # AVX2 only: vpmaddubsw adds into int16
        ("x86_64", ("avx2", "avx512f", "avx512bw"), True),  # AVX-512 without VNNI
        ("x86_64", ("avx2", "avx512f", "avx512_vnni"), False),
        ("x86_64", ("avx2", "avx_vnni"), False),
        ("aarch64", ("asimd", "asimddp"), False),
        ("x86_64", (), False),  # flags unknown: nothing to decide on
    ],
)
def test_weight_range_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, machine: str, flags: tuple[str, ...], saturates: bool
) -> None:
    import platform

    from slimkit import cpu

    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "cpu_info", lambda: ("a CPU", flags))
    assert cpu.int8_saturates() is saturates
    monkeypatch.delenv(WEIGHT_RANGE_ENV, raising=False)
    assert weight_range() == ((-63, 63) if saturates else (-127, 127))
    monkeypatch.setenv(WEIGHT_RANGE_ENV, "full")
    assert weight_range() == (-127, 127)
    monkeypatch.setenv(WEIGHT_RANGE_ENV, "6bit")
    with pytest.raises(ConfigError, match="must be auto, full or reduced; got '6bit'"):
        weight_range()


def test_nan_range_is_an_error() -> None:
    with pytest.raises(ConfigError, match="finite"):
        activation_qparams(float("nan"), 1.0)

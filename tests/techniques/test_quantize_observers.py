"""Each observer on data whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.techniques.quantize import create_observer, list_observers


def _observe(name: str, data: np.ndarray, **options: float) -> tuple[float, float]:
    observer = create_observer(name, **options)
    for chunk in np.array_split(data, 10):
        observer.observe(chunk)
    return observer.compute_range()


def test_all_five_methods_are_registered() -> None:
    assert set(list_observers()) >= {"minmax", "moving_average", "percentile", "mse", "entropy"}


def test_minmax_gives_the_extremes() -> None:
    data = np.random.default_rng(0).uniform(-3, 7, 10_000)
    assert _observe("minmax", data) == (pytest.approx(data.min()), pytest.approx(data.max()))


def test_moving_average_follows_the_batches() -> None:
    observer = create_observer("moving_average", momentum=0.5)
    observer.observe(np.array([-1.0, 1.0]))
    observer.observe(np.array([-3.0, 5.0]))
    assert observer.compute_range() == (pytest.approx(-2.0), pytest.approx(3.0))


def test_percentile_of_a_normal_distribution() -> None:
    data = np.random.default_rng(0).standard_normal(400_000)
    low, high = _observe("percentile", data, percentile=99.0)
    # the 99th percentile of N(0, 1) is 2.326
    assert high == pytest.approx(2.326, abs=0.03) and low == pytest.approx(-2.326, abs=0.03)


def test_mse_range_beats_minmax_and_a_grid_of_clippings() -> None:
    from slimkit.techniques.quantize.observers import _quantization_mse

    data = np.random.default_rng(0).laplace(size=200_000)  # heavy tails: clipping pays
    low, high = _observe("mse", data)
    best = _quantization_mse(data, low, high, 256)
    assert high < data.max() and low > data.min()
    assert best < 0.9 * _quantization_mse(data, data.min(), data.max(), 256)
    for alpha in np.linspace(0.05, 1.0, 20):
        assert best <= _quantization_mse(data, alpha * data.min(), alpha * data.max(), 256) * 1.001


def test_entropy_clips_a_long_tail() -> None:
    data = np.random.default_rng(0).lognormal(size=200_000)  # max ≈ 80, 99.9% below 22
    low, high = _observe("entropy", data)
    assert low == 0.0
    assert 5.0 < high < 0.5 * data.max()


def test_entropy_ignores_exact_zeros() -> None:
    rng = np.random.default_rng(0)
    dense = rng.lognormal(size=50_000)
    sparse = np.concatenate([dense, np.zeros(500_000)])  # ReLU's dead half, ten times over
    assert _observe("entropy", sparse)[1] == pytest.approx(_observe("entropy", dense)[1], rel=0.05)


def test_entropy_keeps_a_bounded_uniform_range() -> None:
    data = np.random.default_rng(0).uniform(0, 1, 100_000)
    _, high = _observe("entropy", data)
    assert high > 0.9


def test_nan_activations_are_a_clear_error() -> None:
    observer = create_observer("minmax")
    with pytest.raises(ConfigError, match="NaN"):
        observer.observe(np.array([1.0, np.nan]))


def test_no_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        create_observer("mse").compute_range()


def test_unknown_method_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="calibration must be one of"):
        create_observer("kl-magic")

"""Calibration observers: from activations seen on calibration data to a quantization range.

Each observer watches one tensor during calibration (``observe``) and then proposes ``[low, high]``
(``compute_range``). Registered by name, so configs, YAML and the search name them as strings:

- ``minmax``: the extreme values seen.
- ``moving_average``: exponential moving average of per-batch min and max (as in QAT).
- ``percentile``: the ``percentile``-th and ``(100 - percentile)``-th percentiles (clips outliers).
- ``mse``: the clipping range minimising the mean squared quantization error on the samples.
- ``entropy``: the clipping threshold minimising the KL divergence between the float histogram and
  its quantized version (TensorRT's calibration, Migacz 2017), for non-negative or symmetric data.

Histogram-based observers keep a bounded uniform sample of the values (plus the exact extremes),
so memory stays small whatever the calibration set.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np

from slimkit.errors import ConfigError

_OBSERVERS: dict[str, Callable[..., Observer]] = {}
MAX_SAMPLES = 1 << 20


def register_observer(name: str) -> Callable[[type[Observer]], type[Observer]]:
    """Class decorator registering an observer under ``name``."""

    def decorator(cls: type[Observer]) -> type[Observer]:
        _OBSERVERS[name] = cls
        cls.name = name
        return cls

    return decorator


def list_observers() -> list[str]:
    """Names of the registered observers."""
    return sorted(_OBSERVERS)


def create_observer(name: str, **options: float) -> Observer:
    """A new observer by name; unknown names raise :class:`ConfigError` listing the choices."""
    if name not in _OBSERVERS:
        raise ConfigError(f"calibration must be one of {', '.join(list_observers())}; got {name!r}")
    return _OBSERVERS[name](**options)


class Observer(abc.ABC):
    """Watches a tensor's values and proposes a quantization range."""

    name = "observer"

    def __init__(self, dtype: str = "int8") -> None:
        self.dtype = dtype
        self.low = np.inf
        self.high = -np.inf
        self.count = 0

    def observe(self, x: np.ndarray) -> None:
        """Record one batch of values."""
        values = np.asarray(x, dtype=np.float32).reshape(-1)
        if values.size == 0:
            return
        if not np.isfinite(values).all():
            raise ConfigError(
                f"calibration saw NaN or infinite activations ({int((~np.isfinite(values)).sum())} "
                "values); check the calibration data and the model"
            )
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.count += 1
        self._observe(values)

    def _observe(self, values: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Subclasses that need more than the extremes record it here."""

    def compute_range(self) -> tuple[float, float]:
        """The proposed ``(low, high)``."""
        if self.count == 0:
            raise ConfigError("an observer saw no data: the calibration set is empty")
        return self._range()

    @abc.abstractmethod
    def _range(self) -> tuple[float, float]: ...


@register_observer("minmax")
class MinMaxObserver(Observer):
    """The extreme values seen."""

    def _range(self) -> tuple[float, float]:
        return self.low, self.high


@register_observer("moving_average")
class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch extremes (``momentum`` weights the new batch)."""

    def __init__(self, dtype: str = "int8", momentum: float = 0.01) -> None:
        super().__init__(dtype)
        self.momentum = momentum
        self.average: tuple[float, float] | None = None

    def _observe(self, values: np.ndarray) -> None:
        low, high = float(values.min()), float(values.max())
        if self.average is None:
            self.average = (low, high)
        else:
            m = self.momentum
            self.average = (
                (1 - m) * self.average[0] + m * low,
                (1 - m) * self.average[1] + m * high,
            )

    def _range(self) -> tuple[float, float]:
        assert self.average is not None
        return self.average


class _SampleObserver(Observer):
    """Keeps a uniform random sample of at most ``MAX_SAMPLES`` values (reservoir by batches)."""

    def __init__(self, dtype: str = "int8", seed: int = 0) -> None:
        super().__init__(dtype)
        self._chunks: list[np.ndarray] = []
        self._kept = 0
        self._seen = 0
        self._rng = np.random.default_rng(seed)

    def _observe(self, values: np.ndarray) -> None:
        self._seen += values.size
        self._chunks.append(values.copy())
        self._kept += values.size
        if self._kept > 2 * MAX_SAMPLES:
            merged = np.concatenate(self._chunks)
            self._chunks = [self._rng.choice(merged, MAX_SAMPLES, replace=False)]
            self._kept = MAX_SAMPLES

    @property
    def samples(self) -> np.ndarray:
        """The kept values."""
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)


@register_observer("percentile")
class PercentileObserver(_SampleObserver):
    """Clips to the ``percentile`` (and ``100 - percentile``) of the values."""

    def __init__(self, dtype: str = "int8", percentile: float = 99.99, seed: int = 0) -> None:
        super().__init__(dtype, seed)
        if not 50 < percentile <= 100:
            raise ConfigError(f"percentile must be in (50, 100]; got {percentile!r}")
        self.percentile = percentile

    def _range(self) -> tuple[float, float]:
        low, high = np.percentile(self.samples, [100 - self.percentile, self.percentile])
        return float(low), float(high)


def _quantization_mse(values: np.ndarray, low: float, high: float, levels: int) -> float:
    """Mean squared error of quantize-dequantize of ``values`` with range [low, high]."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-12) / (levels - 1)
    zero = np.round(-low / scale)
    q = np.clip(np.round(values / scale) + zero, 0, levels - 1)
    return float(np.mean(((q - zero) * scale - values) ** 2))


@register_observer("mse")
class MSEObserver(_SampleObserver):
    """Searches clipping ranges ``α·[low, high]`` for the lowest quantization MSE."""

    def __init__(self, dtype: str = "int8", steps: int = 100, seed: int = 0) -> None:
        super().__init__(dtype, seed)
        self.steps = steps

    def _range(self) -> tuple[float, float]:
        values = self.samples.astype(np.float64)
        best = (np.inf, self.low, self.high)
        for alpha in np.linspace(1.0 / self.steps, 1.0, self.steps):
            low, high = alpha * self.low, alpha * self.high
            error = _quantization_mse(values, low, high, 256)
            if error < best[0]:
                best = (error, low, high)
        return best[1], best[2]


@register_observer("entropy")
class EntropyObserver(_SampleObserver):
    """KL-divergence calibration (TensorRT): the threshold whose 128-level quantized histogram
    diverges least from the float histogram of |x| (2048 bins).

    For data with negative values the threshold is applied symmetrically; for non-negative data
    (after ReLU) the range is [0, threshold].
    """

    def __init__(
        self, dtype: str = "int8", bins: int = 2048, levels: int = 128, seed: int = 0
    ) -> None:
        super().__init__(dtype, seed)
        self.bins = bins
        self.levels = levels

    def _range(self) -> tuple[float, float]:
        values = np.abs(self.samples.astype(np.float64))
        top = float(values.max())
        if top == 0:
            return 0.0, 0.0
        hist, edges = np.histogram(values, bins=self.bins, range=(0, top))
        # exact zeros (ReLU's dead half) are represented exactly at any threshold: they carry no
        # information about where to clip, and their mass would drown the tail in the divergence
        hist[0] -= int(np.count_nonzero(values == 0))
        if self.low >= 0:  # one-sided data gets all 256 levels of the asymmetric range
            return 0.0, float(edges[kl_threshold_bin(hist.astype(np.float64), 2 * self.levels)])
        threshold = float(edges[kl_threshold_bin(hist.astype(np.float64), self.levels)])
        return -threshold, threshold


def kl_threshold_bin(hist: np.ndarray, levels: int = 128) -> int:
    """The bin index ``i`` (an edge) minimising KL(P || Q) for the clipped histogram ``hist[:i]``.

    P is the histogram clipped at ``i`` (outliers added to the last bin); Q is P merged into
    ``levels`` buckets and expanded back over the non-zero bins of each bucket.
    """
    bins = hist.size
    best_bin, best_kl = bins, np.inf
    total = hist.sum()
    for i in range(levels, bins + 1):
        reference = hist[:i].copy()
        reference[i - 1] += hist[i:].sum()
        # merge the first i bins into `levels` buckets, then spread each bucket's mass evenly
        # over its non-empty bins
        starts = np.linspace(0, i, levels + 1).astype(int)[:-1]
        lengths = np.diff(np.append(starts, i))
        nonzero = hist[:i] > 0
        bucket_mass = np.add.reduceat(hist[:i], starts)
        bucket_nonzero = np.add.reduceat(nonzero.astype(np.float64), starts)
        per_bin = np.repeat(bucket_mass / np.maximum(bucket_nonzero, 1), lengths)
        expanded = np.where(nonzero, per_bin, 0.0)
        p = reference / max(total, 1e-12)
        q = expanded / max(expanded.sum(), 1e-12)
        mask = p > 0
        if (q[mask] == 0).any():
            continue
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best_kl:
            best_kl, best_bin = kl, i
    return best_bin

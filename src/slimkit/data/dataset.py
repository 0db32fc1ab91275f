"""Data sets as in-memory tensors: the config, its spec string, the splits and the loader.

A data set is named by a spec string (``"digits"``, ``"mnist:PATH"``, ``"fashion-mnist:PATH"``,
``"idx:PATH"``) or a :class:`DataConfig`; :func:`load_dataset` turns either into a
:class:`Dataset` with deterministic train / validation / test splits for a seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any

import numpy as np
import torch

from slimkit.data.digits import load_digits_arrays
from slimkit.data.idx import MNIST_FILES, load_mnist_folder
from slimkit.errors import ConfigError, DataError, check_fraction

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2  # held out as the test split by sources without an official one
MAX_SEED = 2**32 - 1  # scikit-learn's limit on random_state


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set.

    Attributes:
        x: Images, float32 ``(N, C, H, W)`` with pixel values scaled to [0, 1].
        y: Class labels, int64 ``(N,)``.

    Example:
        >>> split = Split(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
        >>> len(split)
        4
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise DataError(
                f"Split needs x of shape (N, C, H, W) and y of shape (N,); got x "
                f"{tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)


# (train_x, train_y, test_x, test_y); the test pair is None when there is no official test split
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class _Source:
    """A registered source: how to read it, whether it needs a folder, how many classes."""

    read: Callable[[str | None], _Arrays]  # path -> arrays
    needs_path: bool
    num_classes: int | None = None  # None: max label + 1


def _read_digits(path: str | None) -> _Arrays:
    images, labels = load_digits_arrays()
    return images, labels, None, None


def _read_folder(path: str | None, *, official: str | None) -> _Arrays:
    if path is None:  # DataConfig already refuses this; kept for direct callers
        raise ConfigError("an MNIST-format source needs a folder; got path None")
    return load_mnist_folder(path, official=official)


# One line per source; keys are the spec names.
_SOURCES: dict[str, _Source] = {
    "digits": _Source(_read_digits, needs_path=False, num_classes=10),
    "mnist": _Source(partial(_read_folder, official="mnist"), needs_path=True, num_classes=10),
    "fashion-mnist": _Source(
        partial(_read_folder, official="fashion-mnist"), needs_path=True, num_classes=10
    ),
    "idx": _Source(partial(_read_folder, official=None), needs_path=True),
}

DATA_SOURCES: tuple[str, ...] = tuple(_SOURCES)


@dataclass(frozen=True)
class DataConfig:
    """Which data set to load and how to split it.

    Attributes:
        source: One of :data:`DATA_SOURCES`.
        path: The folder of the IDX files for ``mnist``, ``fashion-mnist`` and ``idx``; ``None``
            for ``digits``.
        seed: Seed of the deterministic train / validation (/ test) split.
        val_fraction: Fraction of the training data held out for validation, in (0, 1).
        max_train_samples: Optional cap on the training samples (a subset chosen by ``seed``).

    Example:
        >>> DataConfig("mnist", "/data/mnist", seed=1).to_spec()
        'mnist:/data/mnist'
    """

    source: str
    path: str | None = None
    seed: int = 0
    val_fraction: float = 0.1
    max_train_samples: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or self.source not in _SOURCES:
            raise ConfigError(
                f"data source must be one of {', '.join(DATA_SOURCES)}; got {self.source!r}"
            )
        if self.path is not None and not isinstance(self.path, str):
            raise ConfigError(f"data path must be a string (use str(path)); got {self.path!r}")
        needs_path = _SOURCES[self.source].needs_path
        if needs_path and not self.path:
            raise ConfigError(
                f"data source {self.source!r} needs a path; got {self.path!r}; give "
                f"{self.source}:PATH, the folder with the four IDX files ({', '.join(MNIST_FILES)})"
            )
        if not needs_path and self.path is not None:
            raise ConfigError(
                f"data source {self.source!r} takes no path; got {self.path!r}; "
                f"give just {self.source!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"data seed must be an integer; got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"data seed must be in [0, 2**32 - 1]; got {self.seed!r}")
        check_fraction("val_fraction", self.val_fraction, low_open=True, high_open=True)
        cap = self.max_train_samples
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"max_train_samples must be None or an integer >= 1; got {cap!r}")

    def to_spec(self) -> str:
        """Return the spec string of the source and path (``"digits"``, ``"mnist:/abs/path"``)."""
        return self.source if self.path is None else f"{self.source}:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-safe dict; :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataConfig:
        """Build a config from :meth:`to_dict` output.

        Raises:
            ConfigError: A key is unknown or ``source`` is missing.

        Example:
            >>> DataConfig.from_dict({"source": "digits", "seed": 3}).seed
            3
        """
        known = [field.name for field in fields(cls)]
        unknown = sorted(str(key) for key in d if key not in known)
        if unknown:
            raise ConfigError(
                f"data config has unknown keys {', '.join(unknown)}; "
                f"the known keys are {', '.join(known)}"
            )
        if "source" not in d:
            raise ConfigError(f"data config needs a 'source' key; got keys {list(d)}")
        return cls(**d)


def parse_data_spec(
    spec: str, *, seed: int = 0, val_fraction: float = 0.1, max_train_samples: int | None = None
) -> DataConfig:
    """Parse ``"digits"``, ``"mnist:PATH"``, ``"fashion-mnist:PATH"`` or ``"idx:PATH"``.

    A path is made absolute (``~`` expanded), so a config records where its data came from.

    Raises:
        ConfigError: The source is unknown, or a path is missing or not expected.

    Example:
        >>> parse_data_spec("digits", seed=2)
        DataConfig(source='digits', path=None, seed=2, val_fraction=0.1, max_train_samples=None)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"data spec must be a non-empty string such as 'digits' or 'mnist:PATH'; got {spec!r}"
        )
    source, _, path = spec.strip().partition(":")
    source = source.strip().lower()
    if source not in _SOURCES:
        raise ConfigError(
            f"data spec {spec!r} names unknown source {source!r}; "
            f"use one of {', '.join(DATA_SOURCES)}"
        )
    path = path.strip()
    return DataConfig(
        source=source,
        path=os.path.abspath(os.path.expanduser(path)) if path else None,
        seed=seed,
        val_fraction=val_fraction,
        max_train_samples=max_train_samples,
    )


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set in memory, split into train, validation and test.

    Attributes:
        name: The source name.
        config: The config it was loaded from.
        train: Training split.
        val: Validation split (held out of the training data).
        test: Test split (the official one when the source has it).
        num_classes: Number of classes.
        input_shape: ``(C, H, W)`` of one image.

    Example:
        >>> data = load_dataset("digits")
        >>> data.input_shape, data.num_classes
        ((1, 8, 8), 10)
    """

    name: str
    config: DataConfig
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]


def _split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Split ``range(len(labels))`` into (kept, held out), stratified by label where possible."""
    from sklearn.model_selection import train_test_split  # slow import; only loading needs it

    indices = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(
            indices, test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError as error:  # a class too rare to stratify, or too few samples
        logger.warning("split of %d samples is not stratified: %s", len(labels), error)
        try:
            kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed)
        except ValueError:
            raise DataError(
                f"cannot hold out {fraction} of {len(labels)} samples and keep any; "
                "use a larger data set or another val_fraction"
            ) from None
    return np.sort(kept), np.sort(held_out)


def _to_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))


def load_dataset(
    data: str | DataConfig = "digits",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_train_samples: int | None = None,
) -> Dataset:
    """Load a data set into memory with deterministic splits.

    Sources without an official test split (``digits``) hold out a stratified 20 % test set
    first. Validation is ``val_fraction`` of the remaining training data, stratified by label.

    Args:
        data: A spec string (see :func:`parse_data_spec`) or a :class:`DataConfig`. For a
            config, the keyword arguments are ignored: the config wins.
        seed: Seed of the splits and of the ``max_train_samples`` subset.
        val_fraction: Fraction of the training data held out for validation, in (0, 1).
        max_train_samples: Optional cap on the training samples.

    Raises:
        ConfigError: The spec or a parameter is invalid.
        DataError: The data is missing, corrupt, or fails its checksum.

    Example:
        >>> data = load_dataset("digits", seed=0)
        >>> len(data.train) + len(data.val) + len(data.test)
        1797
    """
    if isinstance(data, DataConfig):
        config = data
    elif isinstance(data, str):
        config = parse_data_spec(
            data, seed=seed, val_fraction=val_fraction, max_train_samples=max_train_samples
        )
    else:
        raise ConfigError(
            "data must be a spec string such as 'digits' or a DataConfig; "
            f"got {type(data).__name__} {data!r}"
        )
    source = _SOURCES[config.source]
    x, y, x_test, y_test = source.read(config.path)
    if x_test is None or y_test is None:
        kept, held_out = _split_indices(y, TEST_FRACTION, config.seed)
        x, y, x_test, y_test = x[kept], y[kept], x[held_out], y[held_out]
    train, val = _split_indices(y, config.val_fraction, config.seed)
    cap = config.max_train_samples
    if cap is not None and cap < len(train):
        chosen = np.random.default_rng(config.seed).permutation(len(train))[:cap]
        train = train[np.sort(chosen)]
    num_classes = source.num_classes or int(max(y.max(), y_test.max())) + 1
    if num_classes < 2:
        raise DataError(
            f"data from {config.to_spec()} has labels up to {num_classes - 1} only; "
            "a classification set needs at least 2 classes"
        )
    dataset = Dataset(
        name=config.source,
        config=config,
        train=_to_split(x[train], y[train]),
        val=_to_split(x[val], y[val]),
        test=_to_split(x_test, y_test),
        num_classes=num_classes,
        input_shape=(int(x.shape[1]), int(x.shape[2]), int(x.shape[3])),
    )
    logger.info(
        "loaded %s: %d train, %d val, %d test samples of %s, %d classes (seed %d)",
        config.to_spec(),
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
        dataset.input_shape,
        num_classes,
        config.seed,
    )
    return dataset

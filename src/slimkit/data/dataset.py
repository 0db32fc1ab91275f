"""Data sets: the config, its spec string, the sources, and the splits.

A data set is named by a spec string (``"digits"``, ``"mnist:PATH"``, ``"fashion-mnist:PATH"``,
``"idx:PATH"``, ``"folder:PATH"``, ``"cifar10:PATH"``, ``"cifar100:PATH"``, ``"npz:PATH"``) or a
:class:`DataConfig`; :func:`load_dataset` turns either into a :class:`Dataset` with deterministic
train / validation / test splits for a seed. Python objects come in through
:func:`slimkit.data.from_arrays` and :func:`slimkit.data.from_torch`.
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

from slimkit.data.arrays import array_split, read_npz
from slimkit.data.cifar import open_cifar
from slimkit.data.digits import load_digits_arrays
from slimkit.data.folder import FolderSource, scan_folder
from slimkit.data.idx import MNIST_FILES, load_mnist_folder
from slimkit.data.images import ImageOptions, image_hw, per_channel
from slimkit.data.split import Split, StreamSplit
from slimkit.errors import ConfigError, DataError, check_fraction
from slimkit.progress import Progress, ProgressFn, reporting

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2  # held out as the test split by sources without an official one
MAX_SEED = 2**32 - 1  # scikit-learn's limit on random_state


@dataclass(frozen=True)
class Loaded:
    """What a source read: all training samples, the test split where the source has one."""

    train: Split
    test: Split | None
    num_classes: int | None = None  # None: max label + 1
    val: Split | None = None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Source:
    """A registered source: how to read it, whether it needs a path, what the path is."""

    read: Callable[[DataConfig, ProgressFn | None], Loaded]
    needs_path: bool
    path_hint: str = ""
    images: bool = False  # takes image_size, crop and channels


def _read_digits(config: DataConfig, report: ProgressFn | None = None) -> Loaded:
    config.image_options().check_fixed_shape("digits")
    images, labels = load_digits_arrays()
    return Loaded(array_split(images, labels, config.image_options(), ""), None, 10)


def _read_idx(
    config: DataConfig, report: ProgressFn | None = None, *, official: str | None
) -> Loaded:
    assert config.path is not None  # DataConfig refuses a missing path
    options = config.image_options()
    options.check_fixed_shape(f"{config.source}:")
    x, y, x_test, y_test = load_mnist_folder(config.path, official=official)
    return Loaded(
        array_split(x, y, options, "train"),
        array_split(x_test, y_test, options, "test"),
        10 if official else None,
    )


def _read_folder(config: DataConfig, report: ProgressFn | None = None) -> Loaded:
    assert config.path is not None
    options = config.image_options()
    scanned = scan_folder(config.path, options, report)
    splits: dict[str, Split] = {}
    for name, files in scanned.splits.items():
        source = FolderSource(files.paths, options, scanned.channels, scanned.hw)
        # files come class by class: a seeded order makes any first n (calibration) a sample
        rows = np.random.default_rng(config.seed).permutation(len(files.paths))
        labels = torch.from_numpy(files.labels[rows])
        splits[name] = StreamSplit(source, rows, labels, config.workers)
    train = splits.get("all", splits.get("train"))
    assert train is not None  # scan_folder gives "all" or "train"
    return Loaded(
        train, splits.get("test"), len(scanned.classes), splits.get("val"), scanned.classes
    )


def _read_cifar(config: DataConfig, report: ProgressFn | None = None) -> Loaded:
    assert config.path is not None
    train, test = open_cifar(config.path, config.source, config.image_options())
    splits = [
        StreamSplit(
            source, np.arange(len(source)), torch.from_numpy(source.labels()), config.workers
        )
        for source in (train, test)
    ]
    return Loaded(splits[0], splits[1], train.fmt.num_classes)


def _read_npz(config: DataConfig, report: ProgressFn | None = None) -> Loaded:
    assert config.path is not None
    options = config.image_options()
    options.check_fixed_shape("npz:")
    splits = read_npz(config.path, options)
    train = splits["all"] if "all" in splits else splits["train"]
    return Loaded(train, splits.get("test"), None, splits.get("val"))


_IDX_HINT = f"the folder with the four IDX files ({', '.join(MNIST_FILES)})"

# One line per source; keys are the spec names.
_SOURCES: dict[str, _Source] = {
    "digits": _Source(_read_digits, needs_path=False),
    "mnist": _Source(partial(_read_idx, official="mnist"), True, _IDX_HINT),
    "fashion-mnist": _Source(partial(_read_idx, official="fashion-mnist"), True, _IDX_HINT),
    "idx": _Source(partial(_read_idx, official=None), True, _IDX_HINT),
    "folder": _Source(_read_folder, True, "a folder with one subfolder of images per class", True),
    "cifar10": _Source(_read_cifar, True, "the cifar-10-batches-bin folder", True),
    "cifar100": _Source(_read_cifar, True, "the cifar-100-binary folder", True),
    "npz": _Source(_read_npz, True, "a .npz file of x_train, y_train, x_test, y_test"),
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
        image_size, crop, channels, mean, std: how images become inputs (see
            :mod:`slimkit.data.images`); ``image_size``, ``crop`` and ``channels`` apply to
            ``folder`` and ``cifar`` sources, ``mean`` and ``std`` to every float input.
        workers: Worker processes that decode files ahead of the batch that needs them
            (``folder`` and ``cifar``; 0 decodes in the main process).

    Example:
        >>> DataConfig("mnist", "/data/mnist", seed=1).to_spec()
        'mnist:/data/mnist'
    """

    source: str
    path: str | None = None
    seed: int = 0
    val_fraction: float = 0.1
    max_train_samples: int | None = None
    image_size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        # JSON gives lists; a frozen config holds tuples (hashable, equal after a round trip)
        object.__setattr__(self, "image_size", image_hw(self.image_size, "image_size"))
        object.__setattr__(self, "crop", image_hw(self.crop, "crop"))
        object.__setattr__(self, "mean", per_channel(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", per_channel(self.std, "std", positive=True))
        self.image_options()  # checks channels and the lengths of mean and std
        workers = self.workers
        if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
            raise ConfigError(f"workers must be an integer in 0..64; got {workers!r}")
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
                f"{self.source}:PATH, {_SOURCES[self.source].path_hint}"
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

    def image_options(self) -> ImageOptions:
        """The resize, crop, channels, mean and std as one :class:`ImageOptions`."""
        return ImageOptions(self.image_size, self.crop, self.channels, self.mean, self.std)

    def to_spec(self) -> str:
        """Return the spec string of the source and path (``"digits"``, ``"mnist:/abs/path"``)."""
        return self.source if self.path is None else f"{self.source}:{self.path}"

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-safe dict; :meth:`from_dict` reads it back."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

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
    """Parse ``"digits"`` or ``"SOURCE:PATH"`` (``mnist``, ``fashion-mnist``, ``idx``, ``folder``,
    ``cifar10``, ``cifar100``, ``npz``).

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
    """A data set split into train, validation and test.

    Attributes:
        name: The source name (``"python"`` for :func:`~slimkit.data.from_arrays` and
            :func:`~slimkit.data.from_torch`).
        config: The config it was loaded from (``None`` for a set built in Python).
        train: Training split.
        val: Validation split (held out of the training data unless the source has one).
        test: Test split (the official one when the source has it).
        num_classes: Number of classes.
        input_shape: The shape of one input: ``(C, H, W)`` for images, ``(L,)`` for token ids.
        classes: Class names where the source has them (a folder's subfolders).

    Example:
        >>> data = load_dataset("digits")
        >>> data.input_shape, data.num_classes
        ((1, 8, 8), 10)
    """

    name: str
    config: DataConfig | None
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[str, ...] | None = None

    @property
    def input_dtype(self) -> torch.dtype:
        """float32, or int64 for token ids."""
        return self.train.dtype

    def describe(self) -> str:
        """The spec of a loaded set, or ``python`` for one built in Python (for messages)."""
        return self.config.to_spec() if self.config is not None else self.name


def data_record(data: Dataset) -> dict[str, Any]:
    """What a checkpoint or a report records of its data: the config (it reloads the set), or
    ``{"source": "python"}`` for a set built in Python (a file cannot reload it)."""
    return data.config.to_dict() if data.config is not None else {"source": data.name}


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


def assemble(
    loaded: Loaded,
    *,
    name: str,
    config: DataConfig | None,
    seed: int,
    val_fraction: float,
    max_train_samples: int | None = None,
) -> Dataset:
    """Hold out test (where the source has none) and validation, cap the training samples, and
    check what every stage relies on: at least 2 classes, no empty split, one input shape."""
    where = config.to_spec() if config is not None else name
    train, test, val = loaded.train, loaded.test, loaded.val
    if test is None:
        kept, held_out = _split_indices(train.y.numpy(), TEST_FRACTION, seed)
        train, test = train.subset(kept), train.subset(held_out)
    if val is None:
        kept, held_out = _split_indices(train.y.numpy(), val_fraction, seed)
        train, val = train.subset(kept), train.subset(held_out)
    if max_train_samples is not None and max_train_samples < len(train):
        chosen = np.random.default_rng(seed).permutation(len(train))[:max_train_samples]
        train = train.subset(np.sort(chosen))
    for split_name, split in (("train", train), ("validation", val), ("test", test)):
        if len(split) == 0:
            raise DataError(f"the {split_name} split of {where} is empty; give it samples")
        if split.sample_shape != train.sample_shape or split.dtype != train.dtype:
            raise DataError(
                f"the {split_name} split of {where} has inputs {split.sample_shape} "
                f"{split.dtype}, the train split {train.sample_shape} {train.dtype}; give one shape"
            )
    labels_max = max(int(split.y.max()) for split in (train, val, test))
    num_classes = loaded.num_classes or labels_max + 1
    if labels_max >= num_classes:
        raise DataError(
            f"{where} has label {labels_max} but {num_classes} classes "
            f"(labels 0..{num_classes - 1})"
        )
    if num_classes < 2 or len(np.unique(train.y.numpy())) < 2:
        raise DataError(
            f"the training split of {where} holds one class only; a classifier needs at least "
            "2 classes"
        )
    dataset = Dataset(
        name=name,
        config=config,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=train.sample_shape,
        classes=loaded.classes,
    )
    logger.info(
        "loaded %s: %d train, %d val, %d test samples of %s, %d classes (seed %d)",
        where,
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
        dataset.input_shape,
        num_classes,
        seed,
    )
    return dataset


def load_dataset(
    data: str | DataConfig = "digits",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_train_samples: int | None = None,
    progress: Progress = None,
) -> Dataset:
    """Load a data set with deterministic splits.

    Sources without an official test split (``digits``, a folder without ``test/``, an ``.npz``
    of ``x`` and ``y``) hold out a stratified 20 % test set first. Validation is
    ``val_fraction`` of the remaining training data, stratified by label, unless the source has
    its own. Arrays are held in memory; folders and CIFAR files are read batch by batch.

    Args:
        data: A spec string (see :func:`parse_data_spec`) or a :class:`DataConfig`. For a
            config, the keyword arguments are ignored: the config wins.
        seed: Seed of the splits and of the ``max_train_samples`` subset.
        val_fraction: Fraction of the training data held out for validation, in (0, 1).
        max_train_samples: Optional cap on the training samples.
        progress: the check of a folder's image headers, as ``scan`` events (see
            :mod:`slimkit.progress`).

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
    with reporting(progress) as report:
        loaded = _SOURCES[config.source].read(config, report)
    return assemble(
        loaded,
        name=config.source,
        config=config,
        seed=config.seed,
        val_fraction=config.val_fraction,
        max_train_samples=config.max_train_samples,
    )

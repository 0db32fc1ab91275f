"""Data sets built in Python: :func:`from_arrays` (NumPy) and :func:`from_torch` (a PyTorch
``Dataset`` or ``DataLoader``).

Both give the same :class:`~slimkit.data.Dataset` a spec string gives, so every stage (training,
calibration, compression, measurement) takes them. A map-style PyTorch dataset stays where it
is: its items are read batch by batch, in ``workers`` processes if asked. An ``IterableDataset``
has no random access, so it is read once into memory.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from slimkit.data.arrays import array_split, input_tensor, label_tensor
from slimkit.data.dataset import Dataset, Loaded, assemble
from slimkit.data.images import ImageOptions, per_channel
from slimkit.data.split import Source, Split, StreamSplit, TensorSplit
from slimkit.errors import ConfigError, DataError, check_fraction

logger = logging.getLogger(__name__)


def _check_common(num_classes: Any, seed: Any, val_fraction: Any) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ConfigError(f"num_classes must be None or an integer >= 2; got {num_classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ConfigError(f"seed must be an integer in [0, 2**32 - 1]; got {seed!r}")
    check_fraction("val_fraction", val_fraction, low_open=True, high_open=True)


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    num_classes: int | None = None,
    mean: float | list[float] | None = None,
    std: float | list[float] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> Dataset:
    """A data set of NumPy arrays (see :mod:`slimkit.data.arrays` for how dtypes are read).

    Without ``x_test`` a stratified 20 % is held out for test; without ``x_val``,
    ``val_fraction`` of the training samples for validation.

    Raises:
        DataError: An array has the wrong shape or dtype, a label is negative, one class only.

    Example:
        >>> x, y = np.random.rand(100, 16).astype(np.float32), np.arange(100) % 2
        >>> from_arrays(x, y).input_shape
        (16,)
    """
    _check_common(num_classes, seed, val_fraction)
    options = ImageOptions(
        mean=per_channel(mean, "mean", positive=False), std=per_channel(std, "std", positive=True)
    )
    pairs = {"val": (x_val, y_val), "test": (x_test, y_test)}
    for name, (xs, ys) in pairs.items():
        if (xs is None) != (ys is None):
            raise ConfigError(f"give both x_{name} and y_{name}, or neither")
    splits = {
        name: array_split(xs, ys, options, name)
        for name, (xs, ys) in pairs.items()
        if xs is not None and ys is not None
    }
    loaded = Loaded(
        array_split(x, y, options, ""), splits.get("test"), num_classes, splits.get("val")
    )
    return assemble(loaded, name="python", config=None, seed=seed, val_fraction=val_fraction)


def _item(item: Any, where: str) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    if isinstance(item, dict) and {"x", "y"} <= set(item):
        return item["x"], item["y"]
    raise DataError(
        f"{where} is a {type(item).__name__}; slimkit needs items (input, label) or "
        "{'x': input, 'y': label}"
    )


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class TorchSource(Source):
    """The inputs of a map-style ``torch.utils.data.Dataset``, read item by item."""

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset, self.name = dataset, name
        first = self._input(0)
        self.sample_shape = tuple(int(s) for s in first.shape)
        self.dtype = first.dtype

    def _input(self, row: int) -> torch.Tensor:
        x, _ = _item(self.dataset[row], f"{self.name}[{row}]")
        array = _to_numpy(x)
        tensor = input_tensor(array[None], ImageOptions(), f"{self.name}[{row}]'s input")
        return tensor[0]

    def read(self, index: np.ndarray) -> np.ndarray:
        out = [self._input(int(row)) for row in index]
        for row, x in zip(index, out, strict=True):
            if tuple(x.shape) != self.sample_shape or x.dtype != self.dtype:
                raise DataError(
                    f"{self.name}[{int(row)}] has an input of {tuple(x.shape)} {x.dtype}, "
                    f"{self.name}[0] {self.sample_shape} {self.dtype}; give one shape and dtype"
                )
        if not out:
            empty = np.int64 if self.dtype == torch.int64 else np.float32
            return np.empty((0, *self.sample_shape), empty)
        return torch.stack(out).numpy()


def _labels(dataset: Any, name: str) -> np.ndarray:
    targets = getattr(dataset, "targets", None)  # torchvision's convention: no decoding
    if targets is not None and len(targets) == len(dataset):
        return label_tensor(_to_numpy(targets).reshape(-1), len(dataset), f"{name}.targets").numpy()
    labels = [
        _to_numpy(_item(dataset[i], f"{name}[{i}]")[1]).reshape(-1) for i in range(len(dataset))
    ]
    bad = next((i for i, label in enumerate(labels) if label.size != 1), None)
    if bad is not None:
        raise DataError(
            f"{name}[{bad}] has a label of {labels[bad].size} values; give one class index"
        )
    return label_tensor(
        np.concatenate(labels) if labels else np.zeros(0, np.int64), len(labels), f"{name}'s labels"
    ).numpy()


def _torch_split(data: Any, name: str, workers: int, seed: int) -> Split:
    if isinstance(data, torch.utils.data.DataLoader):
        data = data.dataset
    if isinstance(data, torch.utils.data.IterableDataset):
        pairs = [_item(item, f"an item of {name}") for item in data]
        if not pairs:
            raise DataError(f"{name} yields no items")
        x = np.stack([_to_numpy(p[0]) for p in pairs])
        y = np.concatenate([_to_numpy(p[1]).reshape(-1) for p in pairs])
        logger.info("read the iterable %s into memory: %d items", name, len(pairs))
        return TensorSplit(input_tensor(x, ImageOptions(), name), label_tensor(y, len(x), name))
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise ConfigError(
            f"{name} must be a torch.utils.data.Dataset (map-style or iterable) or a DataLoader; "
            f"got {type(data).__name__}"
        )
    if len(data) == 0:
        raise DataError(f"{name} is empty")
    labels = _labels(data, name)
    source = TorchSource(data, name)
    # a dataset is often ordered class by class: a seeded order makes any first n a sample
    rows = np.random.default_rng(seed).permutation(len(labels))
    return StreamSplit(source, rows, torch.from_numpy(labels[rows]), workers)


def from_torch(
    train: Any,
    val: Any = None,
    test: Any = None,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    workers: int = 0,
) -> Dataset:
    """A data set of PyTorch datasets (or ``DataLoader`` s: their ``.dataset`` is read).

    Items are ``(input, label)`` pairs (or ``{"x": ..., "y": ...}``), inputs as tensors or arrays
    of one shape: float (images, signals, features) or integer token ids. Labels come from
    ``dataset.targets`` where it exists, else one pass over the items. Without ``test`` a
    stratified 20 % of ``train`` is held out; without ``val``, ``val_fraction`` of the rest.

    Args:
        workers: worker processes reading items ahead of the batch that needs them (for
            datasets that decode files); 0 reads them in this process.

    Example:
        >>> x = torch.rand(100, 3, 8, 8); y = torch.arange(100) % 4
        >>> data = from_torch(torch.utils.data.TensorDataset(x, y))
        >>> data.input_shape, data.num_classes
        ((3, 8, 8), 4)
    """
    _check_common(num_classes, seed, val_fraction)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise ConfigError(f"workers must be an integer in 0..64; got {workers!r}")
    splits = {
        name: _torch_split(data, name, workers, seed)
        for name, data in (("train", train), ("val", val), ("test", test))
        if data is not None
    }
    loaded = Loaded(splits["train"], splits.get("test"), num_classes, splits.get("val"))
    return assemble(loaded, name="python", config=None, seed=seed, val_fraction=val_fraction)

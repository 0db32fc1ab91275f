"""One split of a data set: labels in memory, inputs in memory or read batch by batch.

Every stage reads a split the same way, so a folder of 2 GB of images and an 8x8 array both work:

- ``len(split)``, ``split.y`` (int64 labels, always in memory: 8 bytes a sample),
- ``split.take(index)``: the inputs of some samples, stacked,
- ``split.batches(batch_size)``: ``(x, y)`` batches in order (or shuffled by a seed),
- ``split.load(index_batches)``: the batches of given index lists, read ahead in worker
  processes where the split decodes files (``workers`` > 0).

:class:`TensorSplit` holds its inputs as one tensor (``split.x``); :class:`StreamSplit` reads them
from a :class:`Source` (decoded image files, a memory-mapped binary file) when asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from slimkit.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]
INPUT_DTYPES = (torch.float32, torch.int64)  # images, signals, features; token ids


def _as_index(index: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    array = index.numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
    return array.astype(np.int64, copy=False).reshape(-1)


class Split(ABC):
    """The samples of one split (train, validation or test); see the module's text."""

    @property
    @abstractmethod
    def y(self) -> torch.Tensor:
        """Class labels, int64 ``(N,)``."""

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input, such as ``(C, H, W)`` or ``(L,)``."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The inputs' dtype: float32, or int64 for token ids."""

    @abstractmethod
    def take(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        """The inputs of the samples at ``index``, stacked: ``(len(index), *sample_shape)``."""

    @abstractmethod
    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> Split:
        """A split of the samples at ``index`` (nothing is read)."""

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> torch.Tensor:
        """The inputs of the first ``n`` samples (all of them when there are fewer)."""
        return self.take(np.arange(min(n, len(self))))

    def load(
        self, index_batches: Iterable[torch.Tensor | np.ndarray]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(index, x, y)`` for each index batch, in the given order."""
        for index in index_batches:
            array = _as_index(index)
            yield torch.from_numpy(array), self.take(array), self.y[array]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Yield ``(x, y)`` batches of at most ``batch_size`` samples.

        Example:
            >>> split = TensorSplit(torch.zeros(5, 1, 2, 2), torch.arange(5))
            >>> [len(y) for _, y in split.batches(2)]
            [2, 2, 1]
        """
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        chunks = (order[start : start + batch_size] for start in range(0, n, batch_size))
        for _, x, y in self.load(chunks):
            yield x, y


def _check_labels(y: torch.Tensor, n: int) -> None:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"a split needs labels of shape (N,) = ({n},); got {tuple(y.shape)}")
    if y.dtype != torch.int64:
        raise DataError(f"labels must be int64; got {y.dtype}")


@dataclass(frozen=True, eq=False)
class TensorSplit(Split):
    """A split held in memory.

    Attributes:
        x: Inputs ``(N, ...)``: float32 (images ``(N, C, H, W)`` in [0, 1] for the built-in sets,
            signals, features) or int64 token ids ``(N, L)``.
        labels: Class labels, int64 ``(N,)`` (also ``split.y``).

    Example:
        >>> split = TensorSplit(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
        >>> len(split), split.sample_shape
        (4, (1, 8, 8))
    """

    x: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim < 2:
            raise DataError(
                f"a split needs inputs of shape (N, ...) with at least one feature axis; got "
                f"{tuple(self.x.shape)}"
            )
        if self.x.dtype not in INPUT_DTYPES:
            raise DataError(
                f"inputs must be float32 (images, signals, features) or int64 (token ids); "
                f"got {self.x.dtype}"
            )
        _check_labels(self.labels, len(self.x))

    @property
    def y(self) -> torch.Tensor:
        return self.labels

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(size) for size in self.x.shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    def take(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        return self.x[torch.from_numpy(_as_index(index))]

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> TensorSplit:
        chosen = torch.from_numpy(_as_index(index))
        return TensorSplit(self.x[chosen], self.labels[chosen])

    def head(self, n: int) -> torch.Tensor:
        return self.x[:n]


class Source(ABC):
    """Inputs read on demand: a folder of image files, a memory-mapped binary file.

    A source is pickled into data-loader worker processes, so it holds paths and settings, not
    open files.
    """

    sample_shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def read(self, index: np.ndarray) -> np.ndarray:
        """The inputs at ``index`` (indices into the whole source), ``(len(index), *shape)``."""


class _Reader(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A map-style dataset whose item is a whole batch: ``reader[index_list]`` → ``(x, y)``."""

    def __init__(self, source: Source, rows: np.ndarray) -> None:
        self.source, self.rows = source, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(self.source.read(self.rows[index]))
        return torch.from_numpy(x), torch.from_numpy(index)


@dataclass(frozen=True, eq=False)
class StreamSplit(Split):
    """A split whose inputs are read from a :class:`Source` batch by batch.

    Attributes:
        source: Where the inputs are read.
        rows: The source's row of each sample of this split, int64 ``(N,)``.
        labels: Class labels, int64 ``(N,)``.
        workers: Worker processes that read ahead (0: read in this process).
    """

    source: Source
    rows: np.ndarray
    labels: torch.Tensor
    workers: int = 0

    def __post_init__(self) -> None:
        _check_labels(self.labels, len(self.rows))

    @property
    def y(self) -> torch.Tensor:
        return self.labels

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.source.sample_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.source.dtype

    def take(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.source.read(self.rows[_as_index(index)])))

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> StreamSplit:
        chosen = _as_index(index)
        return StreamSplit(self.source, self.rows[chosen], self.labels[chosen], self.workers)

    def load(
        self, index_batches: Iterable[torch.Tensor | np.ndarray]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.workers == 0:
            yield from super().load(index_batches)
            return
        batches = [_as_index(index) for index in index_batches]
        loader = torch.utils.data.DataLoader(
            _Reader(self.source, self.rows),
            sampler=batches,  # each "sample" is a whole index batch
            batch_size=None,
            num_workers=self.workers,
            prefetch_factor=2,
        )
        for x, index in loader:
            yield index, x, self.labels[index]

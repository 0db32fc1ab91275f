"""Batches of a :class:`~slimkit.data.Split` as a PyTorch ``DataLoader``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit.data.split import Split, TensorSplit
from slimkit.errors import ConfigError


class _Items(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Sample ``i`` of a split, read when asked (for splits that stream from files)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.take([i])[0], self.split.y[i]


def make_loader(
    split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0, workers: int = 0
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Return a PyTorch loader of ``(x, y)`` batches over a split (for code of your own; slimkit's
    stages read ``split.batches`` / ``split.load``).

    Args:
        split: The split to batch.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Reshuffle every epoch, in an order fixed by ``seed``.
        seed: Seed of the ``torch.Generator`` that drives the shuffling.
        workers: Worker processes of the loader.

    Raises:
        ConfigError: ``batch_size`` is not a positive integer or ``seed`` not an integer.

    Example:
        >>> data = load_dataset("digits")  # doctest: +SKIP
        >>> x, y = next(iter(make_loader(data.train, 64, shuffle=True, seed=0)))  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        torch.Size([64, 1, 8, 8])
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"loader seed must be an integer; got {seed!r}")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    items: torch.utils.data.Dataset[tuple[torch.Tensor, ...]] = (
        TensorDataset(split.x, split.y) if isinstance(split, TensorSplit) else _Items(split)
    )
    return DataLoader(
        items, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=workers
    )

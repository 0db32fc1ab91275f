"""Batches of a :class:`~slimkit.data.Split` as a PyTorch ``DataLoader``."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit.data.dataset import Split
from slimkit.errors import ConfigError


def make_loader(
    split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Return a loader of ``(x, y)`` batches over an in-memory split.

    Args:
        split: The split to batch.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Reshuffle every epoch, in an order fixed by ``seed``.
        seed: Seed of the ``torch.Generator`` that drives the shuffling.

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
    return DataLoader(
        TensorDataset(split.x, split.y),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=0,
    )

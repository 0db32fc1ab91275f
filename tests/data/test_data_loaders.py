"""make_loader: batches of an in-memory split, shuffled deterministically by seed."""

from __future__ import annotations

import pytest
import torch

from slimkit.data import Split, TensorSplit, make_loader
from slimkit.errors import ConfigError


@pytest.fixture
def split() -> Split:
    # Sample i has every pixel equal to i, so a batch's order can be read off its labels.
    n = 50
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorSplit(x, torch.arange(n))


def order(loader: torch.utils.data.DataLoader) -> list[int]:
    return [label for _, y in loader for label in y.tolist()]


def test_unshuffled_keeps_order(split: Split) -> None:
    loader = make_loader(split, 16)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    assert order(loader) == list(range(50))
    x, y = batches[1]
    assert x.shape == (16, 1, 2, 2)
    torch.testing.assert_close(x[:, 0, 0, 0], y.float())  # images travel with their labels


def test_shuffle_is_deterministic_by_seed(split: Split) -> None:
    first = order(make_loader(split, 8, shuffle=True, seed=3))
    again = order(make_loader(split, 8, shuffle=True, seed=3))
    other = order(make_loader(split, 8, shuffle=True, seed=4))
    assert first == again
    assert first != other
    assert first != list(range(50))
    assert sorted(first) == sorted(other) == list(range(50))


def test_epochs_reshuffle_reproducibly(split: Split) -> None:
    loader = make_loader(split, 8, shuffle=True, seed=0)
    epochs = [order(loader), order(loader)]
    assert epochs[0] != epochs[1]
    replay = make_loader(split, 8, shuffle=True, seed=0)
    assert [order(replay), order(replay)] == epochs


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(split: Split, batch_size: int) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(split, batch_size)


def test_bad_seed(split: Split) -> None:
    with pytest.raises(ConfigError, match="seed"):
        make_loader(split, 4, shuffle=True, seed="0")  # type: ignore[arg-type]

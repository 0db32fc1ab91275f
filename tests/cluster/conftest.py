"""Fixtures of the clustering tests: one thread (opt-in), and a small MLP trained on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.models import create_model
from slimkit.train import TrainConfig, train


@pytest.fixture
def one_thread() -> None:
    """Tiny models train faster on one thread than on two of a shared machine.

    Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_mlp(digits: Dataset) -> nn.Module:
    """A 64-64-32-10 MLP trained for 12 epochs on digits (about 92% test accuracy)."""
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=digits.input_shape, hidden=(64, 32))
    train(model, digits, TrainConfig(epochs=12, lr=3e-3, seed=0, threads=1))
    return model.eval()

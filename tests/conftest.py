"""Shared fixtures: the real digits data, a small trained model, where MNIST lies, and a way to
give batch norms trained-looking statistics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from slimkit.data import Dataset, load_dataset
from slimkit.models import create_model
from slimkit.train import TrainConfig, train

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _fixed_threads() -> None:
    """Tests run with fixed seeds and thread counts so that results repeat."""
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """scikit-learn's digits, split with seed 0."""
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def trained_lenet(digits: Dataset) -> torch.nn.Module:
    """LeNet-5 trained for a few epochs on digits (good enough for parity and accuracy checks)."""
    model = create_model("lenet5", input_shape=digits.input_shape)
    train(model, digits, TrainConfig(epochs=8, lr=3e-3, seed=0, threads=2))
    return model.eval()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared MNIST folder; tests that need it are skipped where it is absent."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST files not found in {MNIST_DIR}")
    return MNIST_DIR


def _randomize_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every batch norm non-trivial statistics (as training would), so that folding and
    folded biases are really exercised."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)  # type: ignore[union-attr]
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)  # type: ignore[union-attr]
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="session")
def randomize_batch_norms() -> Callable[..., torch.nn.Module]:
    """``randomize_batch_norms(model, seed=0)``: batch norms with trained-looking statistics."""
    return _randomize_batch_norms

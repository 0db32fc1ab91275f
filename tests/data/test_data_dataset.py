"""Data specs, DataConfig, and the digits source with its deterministic splits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from slimkit.data import (
    DATA_SOURCES,
    DataConfig,
    Dataset,
    TensorSplit,
    load_dataset,
    parse_data_spec,
)
from slimkit.errors import ConfigError, DataError

N_DIGITS = 1797


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def rows(split: TensorSplit) -> set[bytes]:
    """Each image of a split as bytes, to compare splits by content."""
    return {row.numpy().tobytes() for row in split.x.flatten(1)}


def test_digits_shapes_and_range(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    for split in (digits.train, digits.val, digits.test):
        assert split.x.shape[1:] == (1, 8, 8)
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
    assert digits.train.x.max() == 1.0  # 16 / 16


def test_digits_split_sizes(digits: Dataset) -> None:
    assert len(digits.train) + len(digits.val) + len(digits.test) == N_DIGITS
    assert len(digits.test) == 360  # ceil(0.2 * 1797)
    assert len(digits.val) == 144  # ceil(0.1 * 1437)


def test_digits_splits_do_not_overlap(digits: Dataset) -> None:
    train, val, test = rows(digits.train), rows(digits.val), rows(digits.test)
    assert len(train) + len(val) + len(test) == N_DIGITS  # also: no duplicates within a split
    assert not train & val and not train & test and not val & test


def test_digits_stratified(digits: Dataset) -> None:
    overall = torch.bincount(
        torch.cat([digits.train.y, digits.val.y, digits.test.y]), minlength=10
    ).double()
    for split in (digits.train, digits.val, digits.test):
        counts = torch.bincount(split.y, minlength=10).double()
        assert (counts > 0).all()
        share = counts / counts.sum()
        torch.testing.assert_close(share, overall / overall.sum(), atol=0.01, rtol=0)


def test_digits_same_seed_same_split(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    for name in ("train", "val", "test"):
        first, second = getattr(digits, name), getattr(again, name)
        assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)


def test_digits_other_seed_other_split(digits: Dataset) -> None:
    other = load_dataset("digits", seed=1)
    assert rows(other.test) != rows(digits.test)
    assert rows(other.val) != rows(digits.val)
    assert len(other.test) == len(digits.test)


def test_digits_val_fraction_and_cap() -> None:
    data = load_dataset("digits", val_fraction=0.5, max_train_samples=100, seed=4)
    assert len(data.val) == 719  # ceil(0.5 * 1437)
    assert len(data.train) == 100
    assert data.config.max_train_samples == 100
    assert rows(data.train) <= rows(load_dataset("digits", val_fraction=0.5, seed=4).train)


def test_config_wins_over_keywords() -> None:
    config = DataConfig("digits", seed=2, val_fraction=0.2)
    data = load_dataset(config, seed=5, val_fraction=0.5)
    assert data.config is config
    assert len(data.val) == len(load_dataset("digits", seed=2, val_fraction=0.2).val)


def test_data_sources() -> None:
    assert DATA_SOURCES == (
        "digits",
        "mnist",
        "fashion-mnist",
        "idx",
        "folder",
        "cifar10",
        "cifar100",
        "npz",
    )


@pytest.mark.parametrize(
    "config",
    [
        DataConfig("digits"),
        DataConfig("digits", seed=7, val_fraction=0.25, max_train_samples=50),
        DataConfig("mnist", "/data/mnist"),
        DataConfig("fashion-mnist", "/data/fashion mnist", seed=3),
        DataConfig("idx", "/data/idx:odd", max_train_samples=10),
    ],
    ids=lambda config: config.to_spec(),
)
def test_config_round_trips(config: DataConfig) -> None:
    parsed = parse_data_spec(
        config.to_spec(),
        seed=config.seed,
        val_fraction=config.val_fraction,
        max_train_samples=config.max_train_samples,
    )
    assert parsed == config
    assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_parse_spec_makes_path_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_data_spec(" MNIST:data/mnist ")
    assert config == DataConfig("mnist", os.path.join(str(tmp_path), "data", "mnist"))
    assert config.to_spec() == f"mnist:{tmp_path / 'data' / 'mnist'}"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("imagenet", "digits, mnist, fashion-mnist, idx, folder, cifar10, cifar100, npz"),
        ("imagenet:/data", "unknown source 'imagenet'"),
        ("cifar10", "cifar10:PATH, the cifar-10-batches-bin folder"),
        ("folder", "folder:PATH, a folder with one subfolder of images per class"),
        ("npz", "npz:PATH"),
        ("", "non-empty"),
        ("mnist", "mnist:PATH"),
        ("mnist:", "mnist:PATH"),
        ("fashion-mnist", "fashion-mnist:PATH"),
        ("idx", "idx:PATH"),
        ("digits:/some/path", "takes no path"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as error:
        parse_data_spec(spec)
    assert "\n" not in str(error.value)


def test_mnist_without_path_names_the_files() -> None:
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte"):
        load_dataset("mnist")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": "0.1"}, "val_fraction"),
        ({"max_train_samples": 0}, "max_train_samples"),
        ({"max_train_samples": 2.0}, "max_train_samples"),
    ],
)
def test_bad_parameters(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataConfig.from_dict({"source": "digits", **changes})
    with pytest.raises(ConfigError, match=match):
        load_dataset("digits", **changes)  # type: ignore[arg-type]


def test_path_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="str\\(path\\)"):
        DataConfig("idx", tmp_path)  # type: ignore[arg-type]


def test_from_dict_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown keys batch_size, shuffle") as error:
        DataConfig.from_dict({"source": "digits", "shuffle": True, "batch_size": 8})
    assert "max_train_samples" in str(error.value)  # lists the known keys


def test_from_dict_needs_source() -> None:
    with pytest.raises(ConfigError, match="'source'"):
        DataConfig.from_dict({"seed": 1})


def test_load_dataset_rejects_other_types() -> None:
    with pytest.raises(ConfigError, match="spec string"):
        load_dataset(42)  # type: ignore[arg-type]


def test_split_checks_shapes() -> None:
    with pytest.raises(DataError, match=r"shape \(N, \.\.\.\) with at least one feature axis"):
        TensorSplit(torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match=r"labels of shape \(N,\) = \(3,\); got \(2,\)"):
        TensorSplit(torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match=r"float32 .* or int64"):
        TensorSplit(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.int64))
    # token ids (N, L) and feature vectors (N, F) are inputs too
    assert TensorSplit(torch.zeros(3, 5, dtype=torch.int64), torch.arange(3)).sample_shape == (5,)

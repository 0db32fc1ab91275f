"""The real MNIST (and, where installed, Fashion-MNIST) files, with their checksums."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from slimkit.data import Dataset, load_dataset
from slimkit.data.idx import MNIST_FILES, OFFICIAL_SHA256, TEST_IMAGES
from slimkit.errors import DataError

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.mnist,
    pytest.mark.skipif(
        not all((MNIST_DIR / f"{name}.gz").is_file() for name in MNIST_FILES),
        reason=f"the MNIST files are not in {MNIST_DIR}",
    ),
]
needs_fashion = pytest.mark.skipif(
    not all((FASHION_DIR / f"{name}.gz").is_file() for name in MNIST_FILES),
    reason=f"Fashion-MNIST is not installed in {FASHION_DIR}",
)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset(f"mnist:{MNIST_DIR}", seed=0)


@pytest.fixture(scope="module")
def raw_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MNIST files decompressed into a fresh folder."""
    folder = tmp_path_factory.mktemp("mnist-raw")
    for name in MNIST_FILES:
        (folder / name).write_bytes(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes()))
    return folder


def test_mnist_shapes(mnist: Dataset) -> None:
    assert mnist.input_shape == (1, 28, 28)
    assert mnist.num_classes == 10
    assert len(mnist.train) + len(mnist.val) == 60000
    assert len(mnist.val) == 6000
    assert len(mnist.test) == 10000
    assert mnist.train.x.shape == (54000, 1, 28, 28)
    assert mnist.train.x.dtype == torch.float32 and mnist.train.y.dtype == torch.int64
    assert mnist.train.x.min() == 0.0 and mnist.train.x.max() == 1.0
    for split in (mnist.train, mnist.val, mnist.test):
        assert torch.bincount(split.y).min() > 0


def test_mnist_checksums_match_the_table() -> None:
    for name in MNIST_FILES:
        content = gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == OFFICIAL_SHA256["mnist"][name]


def test_raw_copy_loads_and_verifies(mnist: Dataset, raw_copy: Path) -> None:
    data = load_dataset(f"mnist:{raw_copy}", seed=0)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(data, name).x, getattr(mnist, name).x)
        assert torch.equal(getattr(data, name).y, getattr(mnist, name).y)


def test_altered_copy_fails_checksum_but_loads_as_idx(raw_copy: Path, tmp_path: Path) -> None:
    for name in MNIST_FILES:
        (tmp_path / name).symlink_to(raw_copy / name)
    path = tmp_path / TEST_IMAGES
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF  # one pixel of the last test image
    path.unlink()
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="is not the official MNIST file") as error:
        load_dataset(f"mnist:{tmp_path}")
    assert str(path) in str(error.value) and f"idx:{tmp_path}" in str(error.value)
    assert len(load_dataset(f"idx:{tmp_path}").test) == 10000


@needs_fashion
def test_fashion_mnist_as_mnist_says_so() -> None:
    with pytest.raises(DataError, match="is the official Fashion-MNIST file, not MNIST") as error:
        load_dataset(f"mnist:{FASHION_DIR}")
    assert f"fashion-mnist:{FASHION_DIR}" in str(error.value)


@needs_fashion
def test_fashion_mnist_loads() -> None:
    data = load_dataset(f"fashion-mnist:{FASHION_DIR}", max_train_samples=1000)
    assert data.name == "fashion-mnist"
    assert len(data.train) == 1000 and len(data.val) == 6000 and len(data.test) == 10000
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10

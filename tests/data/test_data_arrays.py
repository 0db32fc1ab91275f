"""npz:PATH, cifar10:PATH / cifar100:PATH and from_arrays / from_torch, written from real digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.data import DataConfig, StreamSplit, TensorSplit, from_arrays, from_torch, load_dataset
from slimkit.data.cifar import CIFAR10, CIFAR100
from slimkit.data.digits import load_digits_arrays
from slimkit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_digits_arrays()
    return np.round(images[:, 0] * 255).astype(np.uint8), labels


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- npz -----------------------------------------------------------------------------------


def test_npz_official_splits(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, labels = digits
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=pixels[:1000],
        y_train=labels[:1000],
        x_test=pixels[1000:],
        y_test=labels[1000:],
    )
    data = load_dataset(f"npz:{path}")
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.test) == len(pixels) - 1000 and len(data.train) + len(data.val) == 1000
    # uint8 pixels are scaled to [0, 1], exactly
    assert torch.equal(
        data.test.head(3), torch.from_numpy(pixels[1000:1003, None] / np.float32(255))
    )


def test_npz_nhwc_and_token_ids(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    pixels, labels = digits
    rgb = np.repeat(pixels[..., None], 3, axis=-1)  # (N, 8, 8, 3): Keras' layout
    np.savez(tmp_path / "rgb.npz", x=rgb, y=labels)
    assert load_dataset(f"npz:{tmp_path / 'rgb.npz'}").input_shape == (3, 8, 8)
    tokens = (pixels.reshape(len(pixels), -1) // 16).astype(np.int32)  # ids 0..15, (N, 64)
    np.savez(tmp_path / "tokens.npz", x=tokens, y=labels)
    data = load_dataset(f"npz:{tmp_path / 'tokens.npz'}")
    assert data.input_shape == (64,) and data.input_dtype == torch.int64


def test_npz_refuses_pickles_and_bad_files(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, labels = digits
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DataError) as error:
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")
    assert "allow_pickle" in one_line(error) or "Object arrays" in one_line(error)

    np.savez(tmp_path / "keys.npz", images=pixels, labels=labels)
    with pytest.raises(DataError, match="holds images, labels; give x_train") as error:
        load_dataset(f"npz:{tmp_path / 'keys.npz'}")
    one_line(error)

    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz") as error:
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    one_line(error)

    np.savez(tmp_path / "float_labels.npz", x=pixels, y=labels.astype(np.float32))
    with pytest.raises(DataError, match="integer class labels"):
        load_dataset(f"npz:{tmp_path / 'float_labels.npz'}")

    np.savez(tmp_path / "short.npz", x=pixels, y=labels[:-1])
    with pytest.raises(DataError, match="1-D array of 1797 labels"):
        load_dataset(f"npz:{tmp_path / 'short.npz'}")


# --- CIFAR binary ----------------------------------------------------------------------------


def cifar_records(pixels: np.ndarray, labels: np.ndarray, label_bytes: int) -> bytes:
    """Digits written as CIFAR records: 8x8 gray → 32x32 RGB planes, label byte(s) first."""
    big = np.kron(pixels, np.ones((4, 4), np.uint8))  # (N, 32, 32)
    planes = np.stack([big, 255 - big, big // 2], axis=1).reshape(len(pixels), -1)
    head = np.stack([labels // 5, labels][-label_bytes:], axis=1).astype(np.uint8)
    return np.concatenate([head, planes], axis=1).tobytes()


def write_cifar(folder: Path, fmt: str, pixels: np.ndarray, labels: np.ndarray) -> None:
    spec = CIFAR10 if fmt == "cifar10" else CIFAR100
    folder.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(pixels) - 200), len(spec.train))
    for name, rows in zip(spec.train, chunks, strict=True):
        (folder / name).write_bytes(cifar_records(pixels[rows], labels[rows], spec.label_bytes))
    rows = np.arange(len(pixels) - 200, len(pixels))
    (folder / spec.test).write_bytes(cifar_records(pixels[rows], labels[rows], spec.label_bytes))


@pytest.mark.parametrize("fmt", ["cifar10", "cifar100"])
def test_cifar_binary(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], fmt: str) -> None:
    pixels, labels = digits
    folder = tmp_path / (CIFAR10 if fmt == "cifar10" else CIFAR100).folder
    write_cifar(folder, fmt, pixels, labels)
    data = load_dataset(f"{fmt}:{tmp_path}")  # the folder holding it works too
    assert isinstance(data.test, StreamSplit) and len(data.test) == 200
    assert data.input_shape == (3, 32, 32) and data.num_classes == (10 if fmt == "cifar10" else 100)
    x = data.test.head(2)
    big = np.kron(pixels[-200:-198], np.ones((4, 4), np.uint8))
    assert torch.equal(x[:, 0], torch.from_numpy(big / np.float32(255)))  # red: the digit
    assert torch.equal(x[:, 1], torch.from_numpy((255 - big) / np.float32(255)))  # green: 255 - p
    assert torch.equal(data.test.y, torch.from_numpy(labels[-200:]))
    resized = load_dataset(DataConfig(fmt, str(folder), image_size=16, channels=1))
    assert resized.test.head(1).shape == (1, 1, 16, 16)


def test_cifar_refuses_the_pickled_version(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04 a pickle")
    (tmp_path / "batches.meta").write_bytes(b"\x80\x04")
    with pytest.raises(
        DataError, match=r"never loads .*binary version \(cifar-10-binary\.tar\.gz\)"
    ) as error:
        load_dataset(f"cifar10:{tmp_path}")
    one_line(error)


def test_cifar_refuses_a_truncated_file(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, labels = digits
    write_cifar(tmp_path / "c", "cifar10", pixels, labels)
    test = tmp_path / "c" / "test_batch.bin"
    test.write_bytes(test.read_bytes()[:-5])
    with pytest.raises(DataError, match="not a whole number of cifar10 records of 3073 bytes"):
        load_dataset(f"cifar10:{tmp_path / 'c'}")


# --- from_arrays / from_torch ----------------------------------------------------------------


def test_from_arrays_matches_the_digits_source(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = load_digits_arrays()
    ours = from_arrays(images, labels, seed=0)
    spec = load_dataset("digits", seed=0)
    assert isinstance(ours.train, TensorSplit) and isinstance(spec.train, TensorSplit)
    for a, b in ((ours.train, spec.train), (ours.val, spec.val), (ours.test, spec.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert ours.config is None and ours.name == "python"


def test_from_arrays_features_and_errors() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = from_arrays(x, y, x_test=x[:20], y_test=y[:20])
    assert data.input_shape == (12,) and len(data.test) == 20 and data.num_classes == 2
    with pytest.raises(ConfigError, match="give both x_val and y_val"):
        from_arrays(x, y, x_val=x[:5])
    with pytest.raises(DataError, match="NaN"):
        from_arrays(np.full((10, 3), np.nan, np.float32), np.arange(10) % 2)
    with pytest.raises(DataError, match="one class only"):
        from_arrays(x, np.zeros(200, np.int64))
    with pytest.raises(DataError, match="the test split of python has inputs \\(11,\\)"):
        from_arrays(x, y, x_test=x[:20, :11], y_test=y[:20])


class Digits(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """A user's map-style dataset: items are (image tensor, int label), read one by one."""

    def __init__(self) -> None:
        self.images, self.labels = load_digits_arrays()
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        return torch.from_numpy(self.images[i]), int(self.labels[i])


def test_from_torch_streams_a_map_style_dataset() -> None:
    user = Digits()
    data = from_torch(user, seed=0)
    assert isinstance(data.train, StreamSplit)
    reads = user.reads  # one pass for the labels
    x, y = next(data.test.batches(16))
    assert user.reads == reads + 16  # a batch reads its items only
    rows = data.test.rows[:16]  # the user's item of each sample: its input and its label
    assert torch.equal(x, torch.from_numpy(user.images[rows]))
    assert torch.equal(y, torch.from_numpy(user.labels[rows]))
    reference = load_dataset("digits", seed=0)  # split sizes as the digits source's
    sizes = (len(data.train), len(data.val), len(data.test))
    assert sizes == (len(reference.train), len(reference.val), len(reference.test))
    splits = [set(s.rows.tolist()) for s in (data.train, data.val, data.test)]
    assert set.union(*splits) == set(range(len(user))) and sum(map(len, splits)) == len(user)
    loader = torch.utils.data.DataLoader(user, batch_size=8)
    assert len(from_torch(loader, seed=0).train) == len(reference.train)


def test_from_torch_iterable_and_bad_items() -> None:
    images, labels = load_digits_arrays()

    class Stream(torch.utils.data.IterableDataset[tuple[np.ndarray, int]]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(zip(images[:300], labels[:300].tolist(), strict=True))

    data = from_torch(Stream(), num_classes=10)
    assert isinstance(data.train, TensorSplit) and data.num_classes == 10
    with pytest.raises(DataError, match="needs items \\(input, label\\)"):
        from_torch(torch.utils.data.TensorDataset(torch.zeros(10, 4)))
    with pytest.raises(ConfigError, match=r"must be a torch\.utils\.data\.Dataset"):
        from_torch(42)

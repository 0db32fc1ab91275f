"""IDX reading and MNIST-format folders, on small IDX files written into tmp_path."""

from __future__ import annotations

import contextlib
import gzip
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.data import load_dataset, read_idx
from slimkit.data.idx import MNIST_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from slimkit.errors import DataError

N_CLASSES = 4
N_TRAIN = 40
N_TEST = 12
IMAGE_SIZE = (6, 5)  # not square on purpose


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding of ``array``: magic 00 00 TYPE NDIM, big-endian uint32 sizes, data."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    return header + big_endian.tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when asked; returns the path."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images and balanced labels, keyed by MNIST file name."""
    rng = np.random.default_rng(seed)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (N_TRAIN, *IMAGE_SIZE), dtype=np.uint8),
        TRAIN_LABELS: np.arange(N_TRAIN, dtype=np.uint8) % N_CLASSES,
        TEST_IMAGES: rng.integers(0, 256, (N_TEST, *IMAGE_SIZE), dtype=np.uint8),
        TEST_LABELS: np.arange(N_TEST, dtype=np.uint8) % N_CLASSES,
    }


def write_folder(folder: Path, *, compress: bool = True) -> dict[str, np.ndarray]:
    """Write the four synthetic MNIST-format files into ``folder``; returns their arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = synthetic_arrays()
    for name, array in arrays.items():
        write_idx(folder / (f"{name}.gz" if compress else name), array, compress=compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.arange(7, dtype=np.uint8),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        np.arange(-3, 3, dtype=np.int32),
    ],
    ids=["uint8-3d", "uint8-1d", "float32", "int32"],
)
def test_read_idx_round_trip(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    type_code = {np.uint8: 0x08, np.float32: 0x0D, np.int32: 0x0C}[array.dtype.type]
    data = idx_bytes(array, type_code)
    path = tmp_path / "file.idx"  # a neutral name: gzip is told by its magic bytes
    path.write_bytes(gzip.compress(data) if compress else data)
    result = read_idx(path)
    assert result.dtype == array.dtype
    np.testing.assert_array_equal(result, array)
    result[...] = 0  # writable


def test_gz_preferred_over_raw(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path, compress=True)
    # Raw files next to the .gz files hold other images; the .gz ones must win.
    for name, array in synthetic_arrays(seed=1).items():
        write_idx(tmp_path / name, array)
    data = load_dataset(f"idx:{tmp_path}")
    expected = torch.from_numpy(arrays[TEST_IMAGES].astype(np.float32) / 255)
    torch.testing.assert_close(data.test.x[:, 0], expected)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_source_end_to_end(tmp_path: Path, compress: bool) -> None:
    arrays = write_folder(tmp_path / "set", compress=compress)
    data = load_dataset(f"idx:{tmp_path / 'set'}", seed=3, val_fraction=0.25)
    assert data.name == "idx"
    assert data.num_classes == N_CLASSES
    assert data.input_shape == (1, *IMAGE_SIZE)
    assert len(data.train) + len(data.val) == N_TRAIN
    assert len(data.val) == N_TRAIN // 4
    assert len(data.test) == N_TEST
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
        assert set(split.y.tolist()) == set(range(N_CLASSES))  # stratified
    # The test split is the t10k set, in file order, scaled by 1/255.
    torch.testing.assert_close(
        data.test.x[:, 0], torch.from_numpy(arrays[TEST_IMAGES].astype(np.float32) / 255)
    )
    assert data.test.y.tolist() == arrays[TEST_LABELS].tolist()
    # Train and val together are the training images, each exactly once.
    rows = torch.cat([data.train.x, data.val.x]).flatten(1)
    expected = torch.from_numpy(arrays[TRAIN_IMAGES].astype(np.float32) / 255).flatten(1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expected.tolist()))


def test_idx_source_caps_training_samples(tmp_path: Path) -> None:
    write_folder(tmp_path)
    first = load_dataset(f"idx:{tmp_path}", max_train_samples=10, seed=1)
    again = load_dataset(f"idx:{tmp_path}", max_train_samples=10, seed=1)
    assert len(first.train) == 10
    torch.testing.assert_close(first.train.x, again.train.x)
    assert len(load_dataset(f"idx:{tmp_path}", max_train_samples=1000).train) == 36


def test_idx_source_needs_two_classes(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path, compress=False)
    write_idx(tmp_path / TRAIN_LABELS, np.zeros_like(arrays[TRAIN_LABELS]))
    write_idx(tmp_path / TEST_LABELS, np.zeros_like(arrays[TEST_LABELS]))
    with pytest.raises(DataError, match="at least 2 classes"):
        load_dataset(f"idx:{tmp_path}")


def test_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as error:
        load_dataset(f"idx:{folder}")
    assert str(folder) in str(error.value)
    assert TRAIN_IMAGES in str(error.value)  # says what the folder should hold


def test_path_is_a_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="not a folder") as error:
        load_dataset(f"mnist:{path}")
    assert str(path) in str(error.value)


@pytest.mark.parametrize("missing", MNIST_FILES)
def test_missing_file(tmp_path: Path, missing: str) -> None:
    write_folder(tmp_path)
    (tmp_path / f"{missing}.gz").unlink()
    with pytest.raises(DataError, match="lacks") as error:
        load_dataset(f"idx:{tmp_path}")
    message = str(error.value)
    assert str(tmp_path) in message and missing in message
    assert all(name in message for name in MNIST_FILES)  # names what is expected
    assert "\n" not in message


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file(tmp_path: Path, compress: bool) -> None:
    write_folder(tmp_path, compress=False)
    path = tmp_path / TRAIN_IMAGES
    data = path.read_bytes()[:-7]
    if compress:
        path.unlink()
        path = tmp_path / f"{TRAIN_IMAGES}.gz"
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    with pytest.raises(DataError, match="truncated") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)


def test_header_only_partly_there(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    write_folder(tmp_path)
    path = tmp_path / f"{TEST_IMAGES}.gz"
    data = bytearray(path.read_bytes())
    if damage == "cut":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "magic", [b"\x12\x34\x08\x03", b"\x00\x00\x42\x03", b"\x00\x00\x08\x00"], ids=str
)
def test_wrong_magic(tmp_path: Path, magic: bytes) -> None:
    write_folder(tmp_path, compress=False)
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(magic + path.read_bytes()[4:])
    with pytest.raises(DataError, match="magic") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)


def test_wrong_ndim_or_dtype(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path, compress=False)
    path = write_idx(tmp_path / TRAIN_LABELS, arrays[TRAIN_LABELS].reshape(N_TRAIN, 1, 1))
    with pytest.raises(DataError, match="1-D") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)
    path.write_bytes(idx_bytes(arrays[TRAIN_LABELS].astype(np.int32), 0x0C))
    with pytest.raises(DataError, match="unsigned bytes"):
        load_dataset(f"idx:{tmp_path}")


def test_count_mismatch(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path)
    path = write_idx(tmp_path / f"{TEST_LABELS}.gz", arrays[TEST_LABELS][:-1], compress=True)
    with pytest.raises(DataError, match="disagree") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)
    assert f"{N_TEST} images but {N_TEST - 1} labels" in str(error.value)


def test_image_size_mismatch(tmp_path: Path) -> None:
    write_folder(tmp_path)
    path = write_idx(
        tmp_path / f"{TEST_IMAGES}.gz", np.zeros((N_TEST, 5, 5), np.uint8), compress=True
    )
    with pytest.raises(DataError, match="image size") as error:
        load_dataset(f"idx:{tmp_path}")
    assert str(path) in str(error.value)


def test_unreadable_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path)  # a folder: IsADirectoryError must not escape
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "absent.gz")


@pytest.mark.parametrize("source", ["mnist", "fashion-mnist"])
def test_checksum_mismatch_hints_at_idx(tmp_path: Path, source: str) -> None:
    write_folder(tmp_path)
    with pytest.raises(DataError, match="is not the official") as error:
        load_dataset(f"{source}:{tmp_path}")
    message = str(error.value)
    assert f"idx:{tmp_path}" in message and "without the checksum check" in message
    assert str(tmp_path / f"{TRAIN_IMAGES}.gz") in message
    assert "\n" not in message


def test_rare_class_falls_back_to_an_unstratified_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arrays = write_folder(tmp_path, compress=False)
    labels = arrays[TRAIN_LABELS].copy()
    labels[0] = N_CLASSES  # a class with one sample cannot be stratified
    write_idx(tmp_path / TRAIN_LABELS, labels)
    with caplog.at_level("WARNING", logger="slimkit.data"):
        data = load_dataset(f"idx:{tmp_path}")
    assert "not stratified" in caplog.text
    assert data.num_classes == N_CLASSES + 1
    assert len(data.train) + len(data.val) == N_TRAIN


def test_too_few_samples_to_split(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path, compress=False)
    write_idx(tmp_path / TRAIN_IMAGES, arrays[TRAIN_IMAGES][:1])
    write_idx(tmp_path / TRAIN_LABELS, arrays[TRAIN_LABELS][:1])
    with pytest.raises(DataError, match=r"cannot hold out 0\.1 of 1 samples"):
        load_dataset(f"idx:{tmp_path}")


# --- hostile headers (issue #18, item 9) -----------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dims",
    [(65536, 65536, 65536, 65536), (2**31, 4, 2**31), (2**32 - 1,) * 3],
    ids=["2^64", "2^64-by-three", "2^96"],
)
def test_a_header_whose_size_overflows_64_bits(
    tmp_path: Path, dims: tuple[int, ...], compress: bool
) -> None:
    """The product of the sizes wrapped to 0 in int64, matched the empty data, and reshape
    raised ValueError: an internal error. It is a truncated file."""
    data = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="truncated") as error:
        read_idx(path)
    assert str(math.prod(dims)) in str(error.value) and "\n" not in str(error.value)


def test_more_dimensions_than_an_array_holds(tmp_path: Path) -> None:
    dims = (0,) + (1,) * 254  # 255 dimensions, no data: NumPy cannot hold it
    path = tmp_path / "deep.idx"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 255) + struct.pack(">255I", *dims))
    with pytest.raises(DataError, match="255 dimensions"):
        read_idx(path)


def test_an_empty_file_of_a_folder_is_a_data_error(tmp_path: Path) -> None:
    arrays = write_folder(tmp_path, compress=False)
    write_idx(tmp_path / TEST_IMAGES, arrays[TEST_IMAGES][:0])
    write_idx(tmp_path / TEST_LABELS, arrays[TEST_LABELS][:0])
    with pytest.raises(DataError, match="holds no data"):
        load_dataset(f"idx:{tmp_path}")


def _peak_rss_growth(action: Callable[[], object]) -> int | None:
    """Bytes by which ``action()`` raised this process's peak RSS (None where unknown)."""
    import re

    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux)
    except OSError:
        return None

    def peak() -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]

    before = peak()
    with contextlib.suppress(DataError):
        action()
    return peak() - before


def test_a_gzip_bomb_is_unpacked_no_further_than_its_header_says(tmp_path: Path) -> None:
    """300 MB of zeros behind a header of 4 bytes of data: refused for its trailing bytes,
    without unpacking them (the whole stream was decompressed first)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    chunk = bytes(1 << 20)
    parts = [packer.compress(idx_bytes(np.zeros(4, dtype=np.uint8)))]
    parts += [packer.compress(chunk) for _ in range(300)]
    path = tmp_path / "bomb.idx"
    path.write_bytes(b"".join(parts) + packer.flush())
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)
    growth = _peak_rss_growth(lambda: read_idx(path))
    if growth is None:
        pytest.skip("peak RSS cannot be reset here")
    assert growth < 64 << 20


def test_cli_reports_an_overflowing_header_as_one_error_line(tmp_path: Path) -> None:
    """Through the installed ``slimkit`` command: exit 1 and one ``error:`` line (it was exit 2,
    ``internal error: ValueError``)."""
    import os
    import shutil
    import subprocess

    command = shutil.which("slimkit") or pytest.skip("the slimkit command is not installed")
    write_folder(tmp_path, compress=False)
    dims = (65536, 65536, 65536, 65536)
    header = struct.pack(">BBBB", 0, 0, 0x08, 4) + struct.pack(">4I", *dims)
    (tmp_path / TRAIN_IMAGES).write_bytes(header)
    result = subprocess.run(
        [command, "train", "--data", f"idx:{tmp_path}", "--epochs", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=1800,  # a guard against a hang, not a speed check
        env=dict(os.environ, COLUMNS="300"),
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "truncated" in lines[0]

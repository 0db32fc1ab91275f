"""Fuzz targets for data files: single IDX files (raw and gzip) and MNIST-format folders.

Seeds are small real IDX files written here (uint8 images and labels, int16/int32/float32/float64
arrays) and, where ``../shared/data/mnist`` exists, the first kilobytes of the real MNIST files
(their headers rewritten to the count of samples kept). Inputs are mutations of the seeds,
headers built at random (dimension products that overflow 64 bits, zero sizes, 255 dimensions),
random bytes, and gzip-wrapped versions of all of these (some with the gzip stream damaged).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fuzzlib import Input, Target, expect_clean, memory_bound, mutate_bytes, random_bytes

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
TYPE_CODES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)
IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, IMAGES, LABELS)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding of ``array``: magic 00 00 TYPE NDIM, big-endian uint32 sizes, data."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _real_mnist(count: int) -> dict[str, bytes]:
    """The first ``count`` samples of each real MNIST file, headers rewritten to ``count``."""
    found: dict[str, bytes] = {}
    for name in MNIST_FILES:
        path = MNIST_DIR / f"{name}.gz"
        if not path.is_file():
            return {}
        with gzip.open(path, "rb") as stream:
            head = stream.read(4)
            dims = list(struct.unpack(f">{head[3]}I", stream.read(4 * head[3])))
            per_sample = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
            body = stream.read(count * per_sample)
        found[name] = head + struct.pack(f">{len(dims)}I", count, *dims[1:]) + body
    return found


def _synthetic_folder(seed: int, samples: int, size: tuple[int, int]) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (samples, *size), dtype=np.uint8),
        TRAIN_LABELS: (np.arange(samples) % 4).astype(np.uint8),
        IMAGES: rng.integers(0, 256, (max(samples // 3, 2), *size), dtype=np.uint8),
        LABELS: (np.arange(max(samples // 3, 2)) % 4).astype(np.uint8),
    }
    return {name: idx_bytes(array) for name, array in arrays.items()}


def folder_seeds(folder: Path) -> list[Input]:
    """Two synthetic MNIST-format folders and, if present, the first samples of real MNIST."""
    seeds = [_synthetic_folder(0, 24, (6, 5)), _synthetic_folder(1, 12, (4, 4))]
    real = _real_mnist(16)
    return [*seeds, real] if real else seeds


def idx_seeds(folder: Path) -> list[Input]:
    """Single IDX files of every type code, the synthetic folders' files and real MNIST's."""
    rng = np.random.default_rng(0)
    arrays: list[tuple[np.ndarray, int]] = [
        (rng.integers(0, 256, (3, 4, 5), dtype=np.uint8), 0x08),
        (rng.integers(-128, 128, (7,), dtype=np.int8), 0x09),
        (rng.integers(-1000, 1000, (2, 3), dtype=np.int16), 0x0B),
        (rng.integers(-(10**6), 10**6, (4, 2), dtype=np.int32), 0x0C),
        (rng.standard_normal((2, 2, 2)).astype(np.float32), 0x0D),
        (rng.standard_normal((3,)), 0x0E),
    ]
    seeds = [idx_bytes(array, code) for array, code in arrays]
    for files in folder_seeds(folder):
        seeds.extend(files.values())
    return seeds


def random_header(rng: Any) -> bytes:
    """An IDX header made at random, with data of about the size it claims (or not)."""
    type_code = rng.choice((*TYPE_CODES, *TYPE_CODES, 0x00, 0x0A, 0xFF))
    ndim = rng.choice((0, 1, 2, 3, 3, 4, 5, 255))
    big = (0, 1, 2, 255, 256, 2**16, 2**31, 2**32 - 1)
    dims = [rng.choice(big) if rng.random() < 0.3 else rng.randint(0, 6) for _ in range(ndim)]
    item = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(type_code, 1)
    claimed = int(np.prod(np.array(dims, dtype=object))) * item if dims else item
    size = min(claimed, 4096) + rng.choice((0, 0, 0, -1, 1, -item, item))
    magic = rng.choice((b"\x00\x00", b"\x00\x00", b"\x00\x00", b"\x00\x01", b"\xff\x00"))
    header = magic + bytes((type_code, ndim)) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + random_bytes(rng, max(size, 0))


def _gzip_maybe(rng: Any, data: bytes) -> bytes:
    """``data``, or gzip of it (30%), sometimes with the gzip stream itself damaged."""
    if rng.random() >= 0.3:
        return data
    packed = gzip.compress(data, compresslevel=1, mtime=0)
    return mutate_bytes(rng, packed, max_steps=2) if rng.random() < 0.3 else packed


def generate_idx(rng: Any, seeds: Sequence[Input]) -> Input:
    """One IDX file: a mutated seed, a random header, or random bytes; maybe gzip-wrapped."""
    roll = rng.random()
    if roll < 0.55:
        data = mutate_bytes(rng, rng.choice(seeds), seeds)
    elif roll < 0.9:
        data = random_header(rng)
    elif roll < 0.95:
        data = rng.choice(seeds)
    else:
        data = random_bytes(rng, rng.randint(0, 64))
    return _gzip_maybe(rng, data)


def check_idx(data: Input, tmp: Path) -> str:
    """``read_idx`` on the file: an array, or a one-line DataError; memory bounded by the
    file's size (a gzip file may unpack to what its header says, no further)."""
    from slimkit.data import read_idx

    path = tmp / "file.idx"  # a neutral name: gzip is told by its magic bytes
    path.write_bytes(data)
    with expect_clean() as verdict, memory_bound((64 << 20) + 64 * len(data), "read_idx"):
        read_idx(path)
    return verdict[0]


def generate_folder(rng: Any, seeds: Sequence[Input]) -> Input:
    """An MNIST-format folder: a seed folder with one or two files mutated (or swapped, or
    left out), each raw or gzip."""
    files = dict(rng.choice(seeds))
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(sorted(files))
        roll = rng.random()
        if roll < 0.7:
            files[name] = mutate_bytes(rng, files[name], list(files.values()))
        elif roll < 0.8:
            files[name] = random_header(rng)
        elif roll < 0.9:
            files[name] = files[rng.choice(sorted(files))]
        else:
            files.pop(name)
    gzipped = {}
    for name, data in files.items():
        packed = _gzip_maybe(rng, data)
        gzipped[f"{name}.gz" if packed is not data else name] = packed
    return gzipped


def idx_regressions(seeds: Sequence[Input]) -> list[Input]:
    """Headers that were internal errors: a size product that wraps to 0 in int64 (reshape
    raised ValueError), 255 dimensions (more than NumPy holds), and a gzip bomb."""
    overflow = struct.pack(">BBBB", 0, 0, 0x08, 4) + struct.pack(">4I", *(65536,) * 4)
    deep = struct.pack(">BBBB", 0, 0, 0x08, 255) + struct.pack(">255I", 0, *(1,) * 254)
    bomb = gzip.compress(idx_bytes(np.zeros(4, dtype=np.uint8)) + bytes(64 << 20), mtime=0)
    return [overflow, gzip.compress(overflow, mtime=0), deep, bomb]


def folder_regressions(seeds: Sequence[Input]) -> list[Input]:
    """A folder whose test images overflow as in :func:`idx_regressions`, and one whose test
    split is empty (the labels' maximum of nothing raised ValueError)."""
    overflow = dict(seeds[0])
    overflow[IMAGES] = idx_regressions(seeds)[0]
    empty = dict(seeds[0])
    empty[IMAGES] = idx_bytes(np.zeros((0, 6, 5), dtype=np.uint8))
    empty[LABELS] = idx_bytes(np.zeros((0,), dtype=np.uint8))
    return [overflow, empty]


def check_folder(files: Input, tmp: Path) -> str:
    """``load_mnist_folder`` and then ``load_dataset("idx:...")`` (its splits) on the folder."""
    from slimkit.data import load_dataset
    from slimkit.data.idx import load_mnist_folder

    folder = tmp / "data"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with expect_clean() as verdict:
        load_mnist_folder(folder)
        load_dataset(f"idx:{folder}", val_fraction=0.25)
    return verdict[0]


TARGETS = [
    Target(
        "idx",
        "one IDX file, raw or gzip (slimkit.data.read_idx)",
        idx_seeds,
        generate_idx,
        check_idx,
        ci_examples=60,
        regressions=idx_regressions,
    ),
    Target(
        "idx_folder",
        "an MNIST-format folder (load_mnist_folder, load_dataset idx:)",
        folder_seeds,
        generate_folder,
        check_folder,
        ci_examples=25,
        regressions=folder_regressions,
    ),
]

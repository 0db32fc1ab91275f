"""IDX files and MNIST-format folders.

The IDX format (LeCun et al., "Gradient-based learning applied to document recognition", 1998,
and http://yann.lecun.com/exdb/mnist/) is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then
``NDIM`` big-endian uint32 sizes, then the values in C order. A file may be gzip-compressed; that
is told by its first two bytes (``1f 8b``), never by its name.

An MNIST-format folder holds four IDX files, each raw or with ``.gz``: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``. For the
official MNIST and Fashion-MNIST sets, the SHA-256 of each file's decompressed content is checked,
so a gzip file and its raw copy verify alike.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from slimkit.errors import DataError

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"

# IDX type byte -> big-endian numpy dtype.
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

MAX_NDIM = 32  # what NumPy 1.x arrays hold (the header's byte allows 255)
MAX_ARRAY_BYTES = 1 << 62  # NumPy refuses shapes whose size in bytes overflows its index type

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# SHA-256 of the decompressed content of the official files.
OFFICIAL_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    "fashion-mnist": {
        TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
}
OFFICIAL_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, gzip-compressed or raw, into a numpy array.

    Args:
        path: The IDX file. Compression is detected from the magic bytes ``1f 8b``, not the name.

    Returns:
        A writable array in native byte order, shaped as the header says (``uint8`` for the
        MNIST files).

    Raises:
        DataError: The file is missing, unreadable, a corrupt gzip, not IDX, or truncated.

    Example:
        >>> images = read_idx("mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    array = parse_idx(read_idx_bytes(path), path)
    return np.array(array, dtype=array.dtype.newbyteorder("="))


def read_idx_bytes(path: Path) -> bytes:
    """Return the content of ``path``, decompressed when it starts with the gzip magic bytes.

    A gzip file is decompressed no further than its IDX header says the content goes (plus one
    byte, to tell trailing data), so a small corrupt file cannot unpack into gigabytes.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist; check the path") from None
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error.strerror or error}") from None
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            head = stream.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += stream.read(4 * ndim)
            size = _content_size(head)
            return head + (_read_at_most(stream, size - len(head) + 1) if size else b"")
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"IDX file {path} is a corrupt or truncated gzip file ({error}); "
            "download it again or replace it with the raw file"
        ) from None


def _read_at_most(stream: gzip.GzipFile, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to ``limit`` bytes of ``stream``, read in chunks (a single ``read(limit)`` would
    allocate ``limit`` bytes up front, and a corrupt header can claim terabytes)."""
    parts: list[bytes] = []
    while limit > 0:
        part = stream.read(min(chunk, limit))
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)


def _content_size(head: bytes) -> int | None:
    """Bytes of an IDX file (header and data) as its header ``head`` says, or None if ``head``
    is too short or not IDX (then :func:`parse_idx` says what is wrong)."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES:
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    return 4 + 4 * ndim + math.prod(shape) * np.dtype(IDX_DTYPES[head[2]]).itemsize


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Parse the decompressed bytes of an IDX file into a read-only, big-endian array view.

    ``path`` is used in error messages only.
    """
    if len(data) < 4:
        raise DataError(
            f"IDX file {path} is truncated: {len(data)} bytes, shorter than the 4-byte magic "
            "number; download it again"
        )
    zero, type_code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"IDX file {path} has a wrong magic number 0x{data[:4].hex()} (expected 00 00, a type "
            f"byte in {', '.join(f'{code:02x}' for code in IDX_DTYPES)}, and ndim >= 1); "
            "is it an IDX file?"
        )
    if ndim > MAX_NDIM:
        raise DataError(
            f"IDX file {path} declares {ndim} dimensions; slimkit reads IDX files of up to "
            f"{MAX_NDIM} (MNIST has 1 or 3): is the file corrupt?"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"IDX file {path} is truncated: {len(data)} bytes, shorter than its {header_size}-byte "
            f"header for {ndim} dimensions; download it again"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no int64 overflow
    received = len(data) - header_size
    if received != expected:
        problem = "is truncated" if received < expected else "has trailing bytes"
        raise DataError(
            f"IDX file {path} {problem}: its header says shape {shape} ({expected} data bytes), "
            f"the file holds {received}; download it again"
        )
    # an empty array of sizes whose product (zeros left out) NumPy cannot index
    if math.prod(size for size in shape if size) * dtype.itemsize >= MAX_ARRAY_BYTES:
        raise DataError(
            f"IDX file {path} declares shape {shape}, too large for an array even with no "
            "values; is the file corrupt?"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)


def find_mnist_files(folder: Path) -> dict[str, Path]:
    """Return the path of each of the four MNIST files in ``folder``, preferring ``.gz``."""
    if "\x00" in str(folder):
        raise DataError(f"data folder {str(folder)!r} holds a NUL byte; give a real folder path")
    if not folder.exists():
        raise DataError(
            f"data folder {folder} does not exist; give the folder holding the four MNIST-format "
            f"IDX files ({', '.join(MNIST_FILES)}, each raw or .gz)"
        )
    if not folder.is_dir():
        raise DataError(
            f"data path {folder} is a file, not a folder; give the folder holding the four "
            f"MNIST-format IDX files ({', '.join(MNIST_FILES)}, each raw or .gz)"
        )
    found: dict[str, Path] = {}
    for name in MNIST_FILES:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                found[name] = candidate
                break
    missing = [name for name in MNIST_FILES if name not in found]
    if missing:
        raise DataError(
            f"data folder {folder} lacks {', '.join(missing)} (raw or .gz); an MNIST-format folder "
            f"needs all four of {', '.join(MNIST_FILES)}"
        )
    return found


def _check_sha256(path: Path, name: str, data: bytes, official: str) -> None:
    """Raise :class:`DataError` unless ``data`` hashes to the official ``name`` of ``official``."""
    digest = hashlib.sha256(data).hexdigest()
    expected = OFFICIAL_SHA256[official][name]
    if digest == expected:
        return
    title = OFFICIAL_NAMES[official]
    for other, table in OFFICIAL_SHA256.items():
        if other != official and table[name] == digest:
            raise DataError(
                f"IDX file {path} is the official {OFFICIAL_NAMES[other]} file, not {title}; "
                f"load this folder as {other}:{path.parent}"
            )
    raise DataError(
        f"IDX file {path} is not the official {title} file (sha256 {digest}, expected "
        f"{expected}); use idx:{path.parent} to load MNIST-format data without the checksum check"
    )


def _read_checked(path: Path, name: str, ndim: int, official: str | None) -> np.ndarray:
    """Read one MNIST file, check it is ``ndim``-D uint8 and, if asked, its official checksum."""
    data = read_idx_bytes(path)
    array = parse_idx(data, path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        kind = "images" if ndim == 3 else "labels"
        raise DataError(
            f"IDX file {path} holds {array.ndim}-D {array.dtype} data of shape {array.shape}; "
            f"MNIST-format {kind} must be {ndim}-D unsigned bytes (magic 00 00 08 0{ndim})"
        )
    if array.size == 0:
        raise DataError(
            f"IDX file {path} holds no data (shape {array.shape}); an MNIST-format file needs "
            "at least one sample of at least 1x1 pixels; download it again"
        )
    if official is not None:
        _check_sha256(path, name, data, official)
    return array


def load_mnist_folder(
    folder: str | os.PathLike[str], *, official: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load an MNIST-format folder as float images in [0, 1] and int64 labels.

    Args:
        folder: Folder holding the four IDX files, each raw or ``.gz`` (``.gz`` wins if both).
        official: ``"mnist"`` or ``"fashion-mnist"`` to verify the official checksums; ``None``
            for structural checks only.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``; images are float32
        ``(N, 1, H, W)``, labels int64 ``(N,)``.

    Raises:
        DataError: A file is missing, corrupt, inconsistent, or fails the checksum.

    Example:
        >>> arrays = load_mnist_folder("data/mnist", official="mnist")  # doctest: +SKIP
        >>> arrays[0].shape, arrays[2].shape  # doctest: +SKIP
        ((60000, 1, 28, 28), (10000, 1, 28, 28))
    """
    paths = find_mnist_files(Path(folder))
    arrays = {
        name: _read_checked(paths[name], name, 3 if "images" in name else 1, official)
        for name in MNIST_FILES
    }
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        n_images, n_labels = len(arrays[images_name]), len(arrays[labels_name])
        if n_images != n_labels:
            raise DataError(
                f"IDX files {paths[images_name]} and {paths[labels_name]} disagree: {n_images} "
                f"images but {n_labels} labels; the two files must come from the same set"
            )
    train_size, test_size = arrays[TRAIN_IMAGES].shape[1:], arrays[TEST_IMAGES].shape[1:]
    if train_size != test_size:
        raise DataError(
            f"IDX file {paths[TEST_IMAGES]} holds {test_size} images but "
            f"{paths[TRAIN_IMAGES]} holds {train_size}; both splits must have one image size"
        )
    logger.debug(
        "read %s: %d train and %d test images of %s (checksums: %s)",
        folder,
        len(arrays[TRAIN_IMAGES]),
        len(arrays[TEST_IMAGES]),
        train_size,
        official or "not checked",
    )
    # (N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1]
    return (
        _to_float_images(arrays[TRAIN_IMAGES]),
        arrays[TRAIN_LABELS].astype(np.int64),
        _to_float_images(arrays[TEST_IMAGES]),
        arrays[TEST_LABELS].astype(np.int64),
    )


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 scaled to [0, 1]."""
    scaled = images.astype(np.float32)
    scaled /= 255.0
    return scaled[:, None, :, :]

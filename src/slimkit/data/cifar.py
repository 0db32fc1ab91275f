"""CIFAR-10 and CIFAR-100 in their *binary* format: ``cifar10:PATH``, ``cifar100:PATH``.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009, and
https://www.cs.toronto.edu/~kriz/cifar.html ("binary version"). A record is the label byte(s)
(CIFAR-10: the class; CIFAR-100: the coarse class, then the fine class, which slimkit uses) and
3,072 pixel bytes: 1,024 red, 1,024 green, 1,024 blue, each 32x32 in row order. Files:

- CIFAR-10: ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin``
  (``cifar-10-batches-bin/``);
- CIFAR-100: ``train.bin`` and ``test.bin`` (``cifar-100-binary/``).

PATH may be that folder or the one holding it. The files are memory-mapped: a batch reads only
its records. The "python version" holds pickles, which slimkit never loads: it is refused with a
line saying which archive to get instead.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slimkit.data.images import ImageOptions
from slimkit.data.split import Source
from slimkit.errors import DataError

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    name: str
    folder: str
    train: tuple[str, ...]
    test: str
    label_bytes: int
    num_classes: int
    archive: str
    pickled: tuple[str, ...]  # files of the python version that give it away


CIFAR10 = CifarFormat(
    "cifar10",
    "cifar-10-batches-bin",
    tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test_batch.bin",
    1,
    10,
    "cifar-10-binary.tar.gz",
    ("data_batch_1", "batches.meta", "cifar-10-batches-py"),
)
CIFAR100 = CifarFormat(
    "cifar100",
    "cifar-100-binary",
    ("train.bin",),
    "test.bin",
    2,
    100,
    "cifar-100-binary.tar.gz",
    ("train", "meta", "cifar-100-python"),
)
FORMATS = {f.name: f for f in (CIFAR10, CIFAR100)}


def _find_folder(path: Path, fmt: CifarFormat) -> Path:
    for folder in (path, path / fmt.folder):
        if all((folder / name).is_file() for name in (*fmt.train, fmt.test)):
            return folder
    pickled = [path / name for name in fmt.pickled if (path / name).exists()]
    if pickled:
        raise DataError(
            f"{pickled[0]} is the pickled 'python version' of {fmt.name}, which slimkit never "
            f"loads (a pickle can run code); download the binary version ({fmt.archive}) and "
            f"give its folder ({fmt.folder})"
        )
    missing = [name for name in (*fmt.train, fmt.test) if not (path / name).is_file()]
    raise DataError(
        f"{path} is not a {fmt.name} binary folder: missing {', '.join(missing)}; give the "
        f"folder {fmt.folder} from {fmt.archive}"
    )


class CifarSource(Source):
    """The records of one or more CIFAR binary files, memory-mapped, as float32 CHW."""

    def __init__(self, files: list[Path], fmt: CifarFormat, options: ImageOptions) -> None:
        self.files = [str(f) for f in files]
        self.fmt, self.options = fmt, options
        self.record = fmt.label_bytes + PIXELS
        self.counts = []
        for file in files:
            size = file.stat().st_size
            if size == 0 or size % self.record:
                raise DataError(
                    f"{file} holds {size} bytes, not a whole number of {fmt.name} records of "
                    f"{self.record} bytes; the file is truncated or not {fmt.name} binary"
                )
            self.counts.append(size // self.record)
        self.starts = np.cumsum([0, *self.counts]).tolist()
        channels = options.channels or 3
        self.sample_shape = (channels, *options.out_hw((32, 32)))
        self.dtype = torch.float32
        self._maps: list[np.memmap] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_maps": None}  # a worker maps the files itself

    def _records(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [
                np.memmap(f, np.uint8, "r", shape=(n, self.record))
                for f, n in zip(self.files, self.counts, strict=True)
            ]
        return self._maps

    def _rows(self, index: np.ndarray) -> np.ndarray:
        maps = self._records()
        out = np.empty((len(index), self.record), np.uint8)
        for i, row in enumerate(index):
            file = bisect.bisect_right(self.starts, int(row)) - 1
            out[i] = maps[file][int(row) - self.starts[file]]
        return out

    def labels(self) -> np.ndarray:
        """The class of every record (the fine label for CIFAR-100), int64."""
        column = self.fmt.label_bytes - 1
        labels = np.concatenate([m[:, column] for m in self._records()]).astype(np.int64)
        bad = np.flatnonzero(labels >= self.fmt.num_classes)
        if len(bad):
            raise DataError(
                f"record {int(bad[0])} of {self.fmt.name} has label {int(labels[bad[0]])} "
                f"(classes are 0..{self.fmt.num_classes - 1}); the file is not "
                f"{self.fmt.name} binary"
            )
        return labels

    def read(self, index: np.ndarray) -> np.ndarray:
        pixels = self._rows(index)[:, self.fmt.label_bytes :].reshape(-1, 3, 32, 32)
        if self.options.resizes:
            from PIL import Image

            pixels = (
                np.stack(
                    [
                        self.options.pil(
                            Image.fromarray(p.transpose(1, 2, 0)), self.sample_shape[0]
                        )
                        for p in pixels
                    ]
                )
                if len(pixels)
                else np.empty((0, *self.sample_shape), np.uint8)
            )
        return self.options.normalize(pixels)


def open_cifar(path: str, name: str, options: ImageOptions) -> tuple[CifarSource, CifarSource]:
    """The (train, test) sources of a CIFAR binary folder; one DataError line if it is not one."""
    fmt = FORMATS[name]
    folder = _find_folder(Path(path), fmt)
    train = CifarSource([folder / f for f in fmt.train], fmt, options)
    test = CifarSource([folder / fmt.test], fmt, options)
    return train, test

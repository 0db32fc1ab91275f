"""A folder of images, one subfolder per class: ``folder:PATH``.

Two layouts are read::

    PATH/cat/1.png, PATH/dog/2.jpg, ...                  split by seed (test, then validation)
    PATH/train/cat/..., PATH/val/cat/..., PATH/test/...  the folder's own splits (val optional)

Files are decoded by Pillow when a batch needs them (nothing holds the whole set in memory);
each file's header is read once when the folder is opened, so a file that is not an image, or a
size that differs without ``image_size``, stops the run at the start with a line naming the file.
Files whose names start with ``.`` and files that are not images by extension are skipped.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slimkit.data.images import ImageOptions
from slimkit.data.split import Source
from slimkit.errors import DataError
from slimkit.progress import ProgressEvent, ProgressFn

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
SPLIT_NAMES = ("train", "val", "test")
MAX_PIXELS = 8192 * 8192  # larger files are refused (Pillow's own bomb limit is ~89 M)


@dataclass(frozen=True)
class FolderFiles:
    """The files of one split: their paths and class indices."""

    paths: tuple[str, ...]
    labels: np.ndarray


@dataclass(frozen=True)
class ScannedFolder:
    """What :func:`scan_folder` found: class names and the files of each split present."""

    classes: tuple[str, ...]
    splits: dict[str, FolderFiles]  # "all" for the one-folder layout, else train / val / test
    channels: int
    hw: tuple[int, int]  # (H, W) of the files, when they all have one size (else the first's)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _images_in(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / name)
    return found


def _layout(folder: Path) -> dict[str, Path]:
    """``{"all": folder}`` or ``{"train": ..., "val": ..., "test": ...}`` (val optional)."""
    names = {p.name.lower(): p for p in _class_folders(folder)}
    present = [name for name in SPLIT_NAMES if name in names]
    if not present:
        return {"all": folder}
    if "train" not in present or "test" not in present:
        raise DataError(
            f"{folder} has a {'/'.join(present)} folder but no "
            f"{'train' if 'train' not in present else 'test'}/ folder; give train/ and test/ "
            "(and optionally val/), each with one subfolder per class, or put the class "
            "folders directly in it"
        )
    others = sorted(set(names) - set(SPLIT_NAMES))
    if others:
        raise DataError(
            f"{folder} mixes split folders (train/, test/) with other folders "
            f"({', '.join(others)}); "
            "put the class folders inside train/, val/ and test/"
        )
    return {name: names[name] for name in present}


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0][:120] if str(error) else ""
    return text or type(error).__name__


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (H, W)) of an image file, read from its header; one DataError line otherwise."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                mode = image.mode
    except Exception as error:
        # an untrusted file: Pillow's plugins raise OSError, ValueError, SyntaxError, struct and
        # zlib errors alike; each is the file's fault
        raise DataError(
            f"{path} is not an image Pillow can read ({_reason(error)}); "
            "remove it or replace it with a PNG or JPEG"
        ) from None
    if width * height > MAX_PIXELS or width < 1 or height < 1:
        raise DataError(f"{path} is {width}x{height} pixels; slimkit reads images up to 8192x8192")
    return mode, (height, width)


SCAN_REPORT_EVERY = 256  # files between two progress events of the header check


def scan_folder(
    path: str, options: ImageOptions, report: ProgressFn | None = None
) -> ScannedFolder:
    """Find the classes and image files of ``path`` and check every file's header.

    ``report`` gets a :class:`~slimkit.progress.ProgressEvent` (stage ``scan``) every
    :data:`SCAN_REPORT_EVERY` files and at the end.

    Raises:
        DataError: One line naming the folder or file and the fix: no class subfolders, one
            class only, a class or split with no images, a file that is not an image, images of
            different sizes without ``image_size``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder; folder:PATH needs a folder with one subfolder per class"
        )
    layout = _layout(folder)
    per_split: dict[str, dict[str, list[Path]]] = {}
    for split, split_folder in layout.items():
        classes = _class_folders(split_folder)
        if not classes:
            loose = _images_in(split_folder)
            hint = f" (it holds {len(loose)} images directly)" if loose else ""
            raise DataError(
                f"{split_folder} has no class subfolders{hint}; put each class's images in a "
                "subfolder named after the class (cat/, dog/, ...)"
            )
        per_split[split] = {c.name: _images_in(c) for c in classes}
    names = sorted({name for found in per_split.values() for name in found})
    if len(names) < 2:
        raise DataError(
            f"{folder} has one class only ({names[0]}); a classifier needs at least 2 class "
            "subfolders"
        )
    train_key = "all" if "all" in per_split else "train"
    for name in names:
        if not per_split[train_key].get(name):
            where = layout[train_key] / name
            raise DataError(
                f"{where} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or "
                "remove the folder"
            )
    index = {name: i for i, name in enumerate(names)}
    total = sum(len(files) for found in per_split.values() for files in found.values())
    checked = 0
    splits: dict[str, FolderFiles] = {}
    first: tuple[Path, str, tuple[int, int]] | None = None
    modes: set[str] = set()
    for split, found in per_split.items():
        files = [(p, index[name]) for name in sorted(found) for p in found[name]]
        if not files:
            raise DataError(f"{layout[split]} holds no images; add some or remove the folder")
        for file, _ in files:
            checked += 1
            if report is not None and (checked % SCAN_REPORT_EVERY == 0 or checked == total):
                report(ProgressEvent("scan", checked, total, f"{folder.name}: image headers"))
            mode, hw = _header(file)
            modes.add(mode)
            if first is None:
                first = (file, mode, hw)
            elif hw != first[2] and options.size is None:
                raise DataError(
                    f"{file} is {hw[0]}x{hw[1]} but {first[0]} is {first[2][0]}x{first[2][1]}; "
                    "set image_size in the data section (e.g. image_size: [32, 32]) to resize "
                    "every image"
                )
        splits[split] = FolderFiles(
            tuple(str(p) for p, _ in files), np.array([label for _, label in files], np.int64)
        )
    assert first is not None
    channels = options.channels or (1 if modes <= {"L", "1", "I;16", "I", "F"} else 3)
    logger.info(
        "scanned %s: %d classes, %s",
        folder,
        len(names),
        ", ".join(f"{len(f.paths)} {s}" for s, f in splits.items()),
    )
    return ScannedFolder(tuple(names), splits, channels, first[2])


class FolderSource(Source):
    """Image files decoded by Pillow, transformed by :class:`ImageOptions`, as float32 CHW."""

    def __init__(
        self, paths: tuple[str, ...], options: ImageOptions, channels: int, hw: tuple[int, int]
    ) -> None:
        self.paths, self.options, self.channels = paths, options, channels
        height, width = options.out_hw(hw)
        self.sample_shape = (channels, height, width)
        self.dtype = torch.float32

    def read(self, index: np.ndarray) -> np.ndarray:
        from PIL import Image

        out = np.empty((len(index), *self.sample_shape), np.uint8)
        for i, row in enumerate(index):
            path = self.paths[int(row)]
            try:
                with Image.open(path) as image:
                    pixels = self.options.pil(image, self.channels)
            except Exception as error:  # an untrusted file (see _header)
                raise DataError(
                    f"{path} cannot be decoded ({_reason(error)}); "
                    "remove it or replace it with a readable image"
                ) from None
            if pixels.shape != self.sample_shape:
                raise DataError(
                    f"{path} gives an input of {pixels.shape} but the data set's is "
                    f"{self.sample_shape}; set image_size to resize every image"
                )
            out[i] = pixels
        return self.options.normalize(out)

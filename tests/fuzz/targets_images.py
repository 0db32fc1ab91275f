"""Fuzz targets for the streaming sources: image folders (``folder:``), CIFAR binary folders
(``cifar10:``) and ``.npz`` files (``npz:``).

Seeds are written from the real digits set (PNG and JPEG files, CIFAR records, ``.npz`` arrays).
An input is a mapping of relative path → bytes (a folder) or the bytes of one ``.npz``. Each check
loads the data set and reads one batch of every split, so decoding errors are met too.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fuzzlib import Input, Target, expect_clean, memory_bound, mutate_bytes, random_bytes

CLASSES = ("zero", "one", "two")


def _digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    from slimkit.data.digits import load_digits_arrays

    images, labels = load_digits_arrays()
    keep = np.flatnonzero(labels < len(CLASSES))[:count]
    return np.round(images[keep, 0] * 255).astype(np.uint8), labels[keep]


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def load_every_split(spec: str, memory: int) -> str:
    """``load_dataset(spec)`` and one batch of each split: OK, or CLEAN after a one-line
    refusal; the peak memory it adds stays under ``memory`` bytes."""
    from slimkit.data import load_dataset

    with expect_clean() as verdict, memory_bound(memory, spec.split(":")[0]):
        data = load_dataset(spec, val_fraction=0.25)
        for split in (data.train, data.val, data.test):
            next(split.batches(64))
    return verdict[0]


def folder_seeds(folder: Path) -> list[Input]:
    """A PNG folder (class subfolders), a JPEG one with train/ and test/, a mixed one."""
    pixels, labels = _digits(24)
    flat = {
        f"{CLASSES[y]}/{i}.png": _encode(p, "PNG")
        for i, (p, y) in enumerate(zip(pixels, labels, strict=True))
    }
    split = {
        f"{'train' if i < 16 else 'test'}/{CLASSES[y]}/{i}.jpg": _encode(p, "JPEG")
        for i, (p, y) in enumerate(zip(pixels, labels, strict=True))
    }
    mixed = {
        **dict(list(flat.items())[:12]),
        **{k.replace(".png", ".bmp"): _encode(pixels[0], "BMP") for k in list(flat)[12:]},
    }
    return [flat, split, mixed]


def generate_folder(rng: Any, seeds: Sequence[Input]) -> Input:
    """A seed folder with one to three files mutated, truncated, replaced, renamed or dropped."""
    files = dict(rng.choice(seeds))
    names = sorted(files)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(names)
        if name not in files:
            continue
        roll = rng.random()
        if roll < 0.6:
            files[name] = mutate_bytes(rng, files[name], list(files.values()), max_steps=3)
        elif roll < 0.7:
            files[name] = random_bytes(rng, rng.randint(0, 64))
        elif roll < 0.8:
            files.pop(name)
        elif roll < 0.9:  # into another class, or to the top (no class)
            files[rng.choice(("", "zero/", "three/", "train/")) + name.rsplit("/", 1)[-1]] = (
                files.pop(name)
            )
        else:
            files[name] = files[rng.choice(names)] if rng.random() < 0.5 else b""
    return files


def check_folder(files: Input, tmp: Path) -> str:
    """``load_dataset("folder:...")`` and one batch of each split; memory bounded."""
    root = tmp / "images"
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    root.mkdir(exist_ok=True)
    return load_every_split(f"folder:{root}", 512 << 20)


def cifar_seeds(folder: Path) -> list[Input]:
    """A CIFAR-10 binary folder of 36 digits (6 per file), each 8x8 grown to 32x32 RGB."""
    pixels, labels = _digits(36)
    big = np.kron(pixels, np.ones((4, 4), np.uint8))
    records = np.concatenate(
        [labels[:, None].astype(np.uint8), np.repeat(big[:, None], 3, 1).reshape(len(big), -1)],
        axis=1,
    )
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    return [{name: records[6 * i : 6 * i + 6].tobytes() for i, name in enumerate(names)}]


def generate_cifar(rng: Any, seeds: Sequence[Input]) -> Input:
    """The seed with one or two files mutated (labels out of range, truncated records), emptied
    or dropped, or the pickled python version's names."""
    files = dict(rng.choice(seeds))
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(sorted(files))
        roll = rng.random()
        if roll < 0.7:
            files[name] = mutate_bytes(rng, files[name], max_steps=3)
        elif roll < 0.8:
            files[name] = b""
        elif roll < 0.9:
            files.pop(name)
        else:
            files["data_batch_1"] = files.pop(name)  # a file named as the pickled version's
    return files


def check_cifar(files: Input, tmp: Path) -> str:
    root = tmp / "cifar-10-batches-bin"
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return load_every_split(f"cifar10:{root}", 256 << 20)


def npz_seeds(folder: Path) -> list[Input]:
    """``.npz`` files of digits: official splits (uint8), x / y (float32), token ids (int32)."""
    pixels, labels = _digits(40)
    out = []
    for arrays in (
        {
            "x_train": pixels[:30],
            "y_train": labels[:30],
            "x_test": pixels[30:],
            "y_test": labels[30:],
        },
        {"x": pixels.astype(np.float32) / 255, "y": labels},
        {"x": (pixels.reshape(40, -1) // 32).astype(np.int32), "y": labels},
    ):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        out.append(buffer.getvalue())
    return out


def _rezip(rng: Any, data: bytes) -> bytes:
    """The seed with one member's ``.npy`` bytes (header or data) mutated, re-zipped with valid
    checksums, so the mutation reaches NumPy's parser; sometimes a member dropped or renamed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = rng.choice(sorted(members))
    roll = rng.random()
    if roll < 0.8:
        members[name] = mutate_bytes(rng, members[name], list(members.values()), max_steps=3)
    elif roll < 0.9:
        members.pop(name)
    else:
        members[rng.choice(("x_val.npy", "y.npy", "x_test.npy"))] = members.pop(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)
    return out.getvalue()


def generate_npz(rng: Any, seeds: Sequence[Input]) -> Input:
    """A seed whose arrays are mutated inside a valid zip (mostly), a mutated zip, or an object
    array's pickle."""
    roll = rng.random()
    if roll < 0.05:
        buffer = io.BytesIO()
        np.savez(buffer, x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
        return buffer.getvalue()
    if roll < 0.75:
        return _rezip(rng, rng.choice(seeds))
    return mutate_bytes(rng, rng.choice(seeds), seeds, max_steps=3)


def npz_regressions(seeds: Sequence[Input]) -> list[Input]:
    """An ``.npy`` header whose dict never closes: NumPy's header tokenizer raised TokenError."""
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 8, 8"
    header += b" " * (63 - len(header) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(256)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("x.npy", npy)
        archive.writestr("y.npy", npy)
    return [out.getvalue()]


def check_npz(data: Input, tmp: Path) -> str:
    path = tmp / "arrays.npz"
    path.write_bytes(data)
    return load_every_split(f"npz:{path}", 256 << 20)


TARGETS = [
    Target(
        "image_folder",
        "a folder of images, one subfolder per class (load_dataset folder:)",
        folder_seeds,
        generate_folder,
        check_folder,
        requires=("PIL",),
        ci_examples=25,
    ),
    Target(
        "cifar",
        "a CIFAR-10 binary folder (load_dataset cifar10:)",
        cifar_seeds,
        generate_cifar,
        check_cifar,
        ci_examples=25,
    ),
    Target(
        "npz",
        "an .npz file of arrays (load_dataset npz:, allow_pickle=False)",
        npz_seeds,
        generate_npz,
        check_npz,
        ci_examples=30,
        regressions=npz_regressions,
    ),
]

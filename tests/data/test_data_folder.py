"""folder:PATH — image folders written from the digits set: layouts, transforms, streaming, and
one clear line for each bad folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimkit.data import DataConfig, StreamSplit, load_dataset, parse_data_spec
from slimkit.data.digits import load_digits_arrays
from slimkit.errors import ConfigError, DataError

CLASSES = ("zero", "one", "two")


def digits_pixels(count: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` digits of classes 0-2 as uint8 8x8 images."""
    images, labels = load_digits_arrays()
    keep = np.flatnonzero(labels < len(CLASSES))[:count]
    return np.round(images[keep, 0] * 255).astype(np.uint8), labels[keep]


def write_folder(root: Path, pixels: np.ndarray, labels: np.ndarray, rgb: bool = False) -> None:
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        (picture.convert("RGB") if rgb else picture).save(folder / f"{i:04d}.png")


@pytest.fixture
def digits_folder(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    pixels, labels = digits_pixels()
    write_folder(tmp_path / "set", pixels, labels)
    return tmp_path / "set", pixels, labels


def test_folder_reads_every_image_exactly(
    digits_folder: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    root, pixels, labels = digits_folder
    data = load_dataset(f"folder:{root}", seed=0)
    assert data.classes == ("one", "two", "zero")  # sorted subfolder names
    assert data.input_shape == (1, 8, 8) and data.num_classes == 3
    assert isinstance(data.train, StreamSplit)
    assert len(data.train) + len(data.val) + len(data.test) == len(pixels)
    # every sample decodes to its file's pixels, with the label of its folder
    by_name = {name: i for i, name in enumerate(data.classes)}
    expected = {
        (by_name[CLASSES[label]], image.tobytes())
        for image, label in zip(pixels, labels, strict=True)
    }
    got = set()
    for split in (data.train, data.val, data.test):
        for x, y in split.batches(7):
            assert x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
            for image, label in zip(x, y, strict=True):
                got.add((int(label), np.round(image[0].numpy() * 255).astype(np.uint8).tobytes()))
    assert got == expected


def test_resize_channels_and_normalize(digits_folder: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, _ = digits_folder
    config = DataConfig(
        "folder", str(root), image_size=[16, 16], crop=12, channels=3, mean=[0.5], std=[0.25]
    )
    data = load_dataset(config)
    assert data.input_shape == (3, 12, 12)
    x = data.train.head(4)
    assert x.shape == (4, 3, 12, 12)
    # gray to RGB copies the channel; values are (p - 0.5) / 0.25 for p in [0, 1]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6
    # the config round-trips through JSON (a checkpoint records it)
    assert DataConfig.from_dict(config.to_dict()) == config


def test_train_val_test_subfolders(tmp_path: Path) -> None:
    pixels, labels = digits_pixels(90)
    for name, part in (("train", slice(0, 60)), ("val", slice(60, 75)), ("test", slice(75, 90))):
        write_folder(tmp_path / name, pixels[part], labels[part])
    data = load_dataset(f"folder:{tmp_path}")
    assert (len(data.train), len(data.val), len(data.test)) == (60, 15, 15)


def test_workers_give_the_same_batches(digits_folder: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, _ = digits_folder
    serial = load_dataset(DataConfig("folder", str(root)))
    parallel = load_dataset(DataConfig("folder", str(root), workers=2))
    for (x0, y0), (x1, y1) in zip(
        serial.train.batches(8, shuffle=True, seed=3),
        parallel.train.batches(8, shuffle=True, seed=3),
        strict=True,
    ):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_training_on_a_folder_learns(digits_folder: tuple[Path, np.ndarray, np.ndarray]) -> None:
    import slimkit
    from slimkit.train import TrainConfig

    root, _, _ = digits_folder
    data = load_dataset(f"folder:{root}", seed=0)
    model = slimkit.create_model("mlp", input_shape=data.input_shape, num_classes=3, hidden=(32,))
    result = slimkit.train(model, data, TrainConfig(epochs=30, lr=0.01, seed=0), progress=False)
    assert result.best_val_accuracy >= 0.8  # 3 digit classes, 6 validation images


def spec_error(spec: str, **options: object) -> str:
    with pytest.raises((DataError, ConfigError)) as error:
        load_dataset(DataConfig.from_dict({**parse_data_spec(spec).to_dict(), **options}))
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_bad_folders_say_what_and_how(tmp_path: Path) -> None:
    pixels, labels = digits_pixels(30)
    assert "is not a folder" in spec_error(f"folder:{tmp_path / 'missing'}")

    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(pixels[0]).save(loose / "a.png")
    assert "no class subfolders (it holds 1 images directly)" in spec_error(f"folder:{loose}")

    single = tmp_path / "single"
    write_folder(single, pixels[labels == 0], labels[labels == 0])
    assert "one class only (zero)" in spec_error(f"folder:{single}")

    empty_class = tmp_path / "empty_class"
    write_folder(empty_class, pixels, labels)
    (empty_class / "three").mkdir()
    assert f"{empty_class / 'three'} has no images" in spec_error(f"folder:{empty_class}")

    broken = tmp_path / "broken"
    write_folder(broken, pixels, labels)
    (broken / "one" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    message = spec_error(f"folder:{broken}")
    assert f"{broken / 'one' / 'bad.png'} is not an image Pillow can read" in message

    mixed = tmp_path / "mixed"
    write_folder(mixed, pixels, labels)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(mixed / "two" / "big.png")
    message = spec_error(f"folder:{mixed}")
    assert "big.png is 9x9 but" in message and "set image_size" in message
    assert load_dataset(DataConfig("folder", str(mixed), image_size=8)).input_shape == (1, 8, 8)

    no_test = tmp_path / "no_test"
    write_folder(no_test / "train", pixels, labels)
    assert "no test/ folder" in spec_error(f"folder:{no_test}")

    empty_split = tmp_path / "empty_split"
    write_folder(empty_split / "train", pixels, labels)
    (empty_split / "test" / "zero").mkdir(parents=True)
    assert "holds no images" in spec_error(f"folder:{empty_split}")


def test_image_options_are_checked(digits_folder: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, _ = digits_folder
    assert "channels must be 1" in spec_error(f"folder:{root}", channels=2)
    assert "image_size must be an int or [height, width]" in spec_error(
        f"folder:{root}", image_size=[0, 4]
    )
    assert "crop [9, 9] is larger than image_size [8, 8]" in spec_error(
        f"folder:{root}", image_size=8, crop=9
    )
    assert "std must be one number or a list of 1 or 3 positive" in spec_error(
        f"folder:{root}", std=0
    )
    assert "mean has 3 values but the images have 1 channel" in spec_error(
        f"folder:{root}", channels=1, mean=[0.1, 0.2, 0.3]
    )
    assert "image_size, crop and channels apply to folder: and cifar" in spec_error(
        "digits", image_size=16
    )


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat")


@pytest.mark.skipif(
    not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not in {FASHION_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_a_fashion_mnist_png_folder_equals_its_idx_files(tmp_path: Path) -> None:
    from slimkit.data import read_idx

    images = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")[:400]
    labels = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")[:400]
    keep = np.flatnonzero(labels < len(FASHION_CLASSES))
    for split, rows in (("train", keep[:200]), ("test", keep[200:])):
        for i in rows:
            folder = tmp_path / split / FASHION_CLASSES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.input_shape == (1, 28, 28) and len(data.test) == len(keep) - 200
    assert data.classes is not None  # the subfolder names, sorted
    index = [FASHION_CLASSES.index(name) for name in data.classes]
    got = {
        (index[int(y)], np.round(x[0].numpy() * 255).astype(np.uint8).tobytes())
        for xb, yb in data.test.batches(50)
        for x, y in zip(xb, yb, strict=True)
    }
    assert got == {(int(labels[i]), images[i].tobytes()) for i in keep[200:]}
    resized = load_dataset(DataConfig("folder", str(tmp_path), image_size=32, channels=3))
    assert resized.test.head(2).shape == (2, 3, 32, 32)


def test_the_header_check_reports_progress(
    digits_folder: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    from slimkit.progress import ProgressEvent

    root, pixels, _ = digits_folder
    events: list[ProgressEvent] = []
    load_dataset(f"folder:{root}", progress=events.append)
    assert events and all(e.stage == "scan" and e.total == len(pixels) for e in events)
    assert events[-1].done == len(pixels)


def test_the_installed_cli_trains_on_a_folder(
    digits_folder: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    root, _, _ = digits_folder
    exe = Path(sys.executable).with_name("slimkit")
    out = tmp_path / "mlp.safetensors"
    command = [str(exe) if exe.is_file() else "slimkit", "train", "--data", f"folder:{root}"]
    command += ["--model", "mlp", "--epochs", "2", "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(out.with_name(out.stem + ".train.json").read_text())
    assert summary["data"]["source"] == "folder" and summary["data"]["path"] == str(root)

"""How images become input tensors: resize, center crop, channels, then mean / std.

The options sit in a recipe's ``data`` section (and :class:`~slimkit.data.DataConfig`):

- ``image_size``: ``[H, W]`` (or one int for a square) every image is resized to (bilinear, with
  Pillow's antialiasing); needed when a folder's images differ in size.
- ``crop``: ``[H, W]`` (or an int) cut from the center after the resize.
- ``channels``: 1 (grayscale) or 3 (RGB); default: what the first image is (1 for grayscale, 3
  otherwise).
- ``mean`` / ``std``: per-channel values subtracted / divided after pixels are scaled to [0, 1]
  (one value for all channels, or one per channel).

Pillow's order matches torchvision's ``Resize → CenterCrop → ToTensor → Normalize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slimkit.errors import ConfigError

MAX_SIDE = 8192  # a larger resize or crop is a typo, and would need gigabytes per batch


def image_hw(value: Any, name: str) -> tuple[int, int] | None:
    """``None``, an int or ``[H, W]`` → ``(H, W)``; one ConfigError line otherwise."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value
        )
    ):
        return int(value[0]), int(value[1])
    raise ConfigError(
        f"{name} must be an int or [height, width], each in 1..{MAX_SIDE}; got {value!r}"
    )


def per_channel(value: Any, name: str, *, positive: bool) -> tuple[float, ...] | None:
    """``None``, a number or a list of 1 or 3 numbers → a tuple; one ConfigError line otherwise."""
    if value is None:
        return None
    values = [value] if isinstance(value, int | float) and not isinstance(value, bool) else value
    if (
        isinstance(values, Sequence)
        and not isinstance(values, str)
        and len(values) in (1, 3)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        and all(np.isfinite(float(v)) and (float(v) > 0 or not positive) for v in values)
    ):
        return tuple(float(v) for v in values)
    need = "positive numbers" if positive else "finite numbers"
    raise ConfigError(f"{name} must be one number or a list of 1 or 3 {need}; got {value!r}")


@dataclass(frozen=True)
class ImageOptions:
    """Resize, crop, channels, mean and std of a data set's images (see the module's text)."""

    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB); got {self.channels!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (
                values is not None
                and self.channels is not None
                and len(values) not in (1, self.channels)
            ):
                raise ConfigError(
                    f"{name} has {len(values)} values but the images have {self.channels} "
                    "channel(s); give one value or one per channel"
                )
        size, crop = self.size, self.crop
        if size is not None and crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
            raise ConfigError(
                f"crop {list(crop)} is larger than image_size {list(size)}; "
                "crop a part of the resized image"
            )

    @property
    def resizes(self) -> bool:
        return self.size is not None or self.crop is not None or self.channels is not None

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) of an input whose file is ``hw`` (H, W) once resized and cropped."""
        return self.crop or self.size or hw

    def pil(self, image: Any, channels: int) -> np.ndarray:
        """A Pillow image → uint8 ``(C, H, W)``: channels converted, resized, center-cropped."""
        image = image.convert("L" if channels == 1 else "RGB")
        if self.size is not None and image.size != (self.size[1], self.size[0]):
            from PIL import Image

            image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        if self.crop is not None:
            width, height = image.size
            top = (height - self.crop[0]) // 2
            left = (width - self.crop[1]) // 2
            if top < 0 or left < 0:
                raise ConfigError(
                    f"crop {list(self.crop)} is larger than an image of {height}x{width}; "
                    "set image_size at least as large as the crop"
                )
            image = image.crop((left, top, left + self.crop[1], top + self.crop[0]))
        array = np.asarray(image, dtype=np.uint8)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (or [0, 1] float) ``(N, C, H, W)`` → float32 scaled to [0, 1], then mean / std."""
        x = pixels.astype(np.float32)
        if pixels.dtype == np.uint8:
            x /= 255.0
        channels = x.shape[1] if x.ndim >= 2 else 1
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) not in (1, channels):
                raise ConfigError(
                    f"{name} has {len(values)} values but the inputs have {channels} channel(s); "
                    "give one value or one per channel"
                )
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.mean is not None:
            x -= np.asarray(self.mean, dtype=np.float32).reshape(shape)
        if self.std is not None:
            x /= np.asarray(self.std, dtype=np.float32).reshape(shape)
        return x

    @property
    def normalizes(self) -> bool:
        return self.mean is not None or self.std is not None

    def check_fixed_shape(self, where: str) -> None:
        """Refuse resize, crop and channels for a source of fixed-shape arrays (they would be
        silently ignored); mean and std apply to every source."""
        if self.resizes:
            raise ConfigError(
                f"image_size, crop and channels apply to folder: and cifar sources; {where} "
                "gives arrays of a fixed shape (mean and std apply)"
            )

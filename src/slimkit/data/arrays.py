"""NumPy arrays as a data set: ``.npz`` files (``npz:PATH``) and :func:`slimkit.data.from_arrays`.

Inputs are read by their dtype:

- ``uint8``: images, scaled to [0, 1] (then ``mean`` / ``std``); ``(N, H, W)`` gets a channel axis,
  and ``(N, H, W, C)`` with C of 1 or 3 is moved to ``(N, C, H, W)``;
- floating: float32 as given (images ``(N, C, H, W)``, signals ``(N, C, L)``, features ``(N, F)``);
- other integers: int64 token ids ``(N, L)``.

Labels are integers ``(N,)`` from 0. An ``.npz`` holds ``x_train``, ``y_train``, ``x_test``,
``y_test`` and optionally ``x_val``, ``y_val`` (the Keras names), or just ``x`` and ``y`` (split by
seed). It is read with ``allow_pickle=False``: an object array is refused, never unpickled.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from slimkit.data.images import ImageOptions
from slimkit.data.split import TensorSplit
from slimkit.errors import DataError

logger = logging.getLogger(__name__)

NPZ_SPLITS = ("train", "val", "test")


def input_tensor(x: np.ndarray, options: ImageOptions, name: str = "x") -> torch.Tensor:
    """An input array → the tensor slimkit trains on (see the module's text)."""
    if not isinstance(x, np.ndarray) or x.dtype == object:
        raise DataError(f"{name} must be a numeric NumPy array; got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(
            f"{name} must have shape (N, ...) with N >= 1 and a feature axis; got {x.shape}"
        )
    if x.dtype == np.uint8:
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(options.normalize(x)))
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{name} holds NaN or infinite values; clean the inputs first")
        return torch.from_numpy(np.ascontiguousarray(options.normalize(x)))
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if options.normalizes:
            raise DataError(f"{name} holds integers (token ids): mean and std do not apply to them")
        if x.size and int(x.min()) < 0:
            raise DataError(f"{name} holds integer inputs (token ids) below 0; ids start at 0")
        return torch.from_numpy(np.ascontiguousarray(x.astype(np.int64)))
    raise DataError(f"{name} has dtype {x.dtype}; give uint8 images, float inputs or integer ids")


def label_tensor(y: np.ndarray, n: int, name: str = "y") -> torch.Tensor:
    """Labels → int64 ``(N,)``; one DataError line if they are not integers from 0."""
    if not isinstance(y, np.ndarray) or y.ndim != 1 or len(y) != n:
        shape = getattr(y, "shape", type(y).__name__)
        raise DataError(f"{name} must be a 1-D array of {n} labels (one per input); got {shape}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if n and int(y.min()) < 0:
        raise DataError(f"{name} holds a label below 0; class labels are 0, 1, 2, ...")
    return torch.from_numpy(y.astype(np.int64))


def array_split(x: np.ndarray, y: np.ndarray, options: ImageOptions, name: str) -> TensorSplit:
    inputs = input_tensor(x, options, f"x_{name}" if name else "x")
    return TensorSplit(inputs, label_tensor(y, len(inputs), f"y_{name}" if name else "y"))


def read_npz(path: str, options: ImageOptions) -> dict[str, TensorSplit]:
    """The splits of an ``.npz`` file: ``{"train": ..., "test": ...}`` (``val`` where given), or
    ``{"all": ...}`` for plain ``x`` / ``y``."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file} is not a file; npz:PATH needs a .npz of x_train, y_train, ...")
    try:
        with np.load(file, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"x", "y"} <= keys:
                return {"all": array_split(npz["x"], npz["y"], options, "")}
            if not {"x_train", "y_train", "x_test", "y_test"} <= keys:
                raise DataError(
                    f"{file} holds {', '.join(sorted(keys)) or 'no arrays'}; give x_train, "
                    "y_train, x_test, y_test (and optionally x_val, y_val), or x and y"
                )
            splits = {
                name: array_split(npz[f"x_{name}"], npz[f"y_{name}"], options, name)
                for name in NPZ_SPLITS
                if f"x_{name}" in keys and f"y_{name}" in keys
            }
    except DataError:
        raise
    except ValueError as error:  # object arrays (allow_pickle=False), bad headers
        raise DataError(
            f"{file}: {str(error).splitlines()[0][:200]}; save plain numeric arrays with np.savez"
        ) from None
    except Exception as error:  # an untrusted file: zip, npy header and tokenizer errors alike
        reason = str(error).splitlines()[0][:120] if str(error) else ""
        raise DataError(
            f"{file} is not a readable .npz ({type(error).__name__}: {reason}); "
            "write it with np.savez"
        ) from None
    shapes = {split.sample_shape for split in splits.values()}
    if len(shapes) > 1:
        raise DataError(
            f"{file}: the splits' inputs differ in shape ({sorted(shapes)}); give one shape"
        )
    return splits

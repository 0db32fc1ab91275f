"""A user's trained weights into a model: ``.safetensors``, or a ``state_dict`` saved by
``torch.save`` (``.pt``, ``.pth``, ``.bin``) read with ``weights_only=True`` (no code runs).

A ``.pt`` may hold the state dict itself or wrap it as ``{"state_dict": ...}`` or
``{"model": ...}`` (what training scripts often save). Every tensor must fit the model: a missing
or unexpected name, or a shape that differs, stops with one line naming the layers.

Example:
    >>> model = build(...)  # doctest: +SKIP
    >>> load_weights(model, "trained.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import CheckpointError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
MAX_LISTED = 4  # names listed in a message before "and N more"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, by name; one CheckpointError line if it cannot be read."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"weights file {file} does not exist (or is not a file)")
    if file.suffix.lower() not in WEIGHT_SUFFIXES:
        raise CheckpointError(
            f"weights file {file} has suffix {file.suffix!r}; give .safetensors, or a state_dict "
            "saved by torch.save as .pt / .pth / .bin"
        )
    if file.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(file)))
        except Exception as error:  # an untrusted file: safetensors' own errors are of many kinds
            raise CheckpointError(
                f"weights file {file} is not a readable safetensors file ({_reason(error)})"
            ) from None
    try:
        loaded: Any = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refused a class: never run it
        raise CheckpointError(
            f"weights file {file} holds objects other than tensors ({_reason(error)}); save "
            "model.state_dict() (torch.save(model.state_dict(), path)) or use safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"weights file {file} cannot be read ({_reason(error)})") from None
    if isinstance(loaded, Mapping):
        for key in WRAPPER_KEYS:
            inner = loaded.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(
            f"weights file {file} holds a {type(loaded).__name__}, not a state_dict of tensors; "
            "save model.state_dict()"
        )
    return dict(loaded)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a weights file into ``model`` (in place, strictly) and return it in eval mode.

    A ``module.`` prefix on every name (``DataParallel``'s) is dropped.

    Raises:
        CheckpointError: the file cannot be read, or its tensors do not fit the model (the
            message names missing, unexpected and mis-shaped layers).
    """
    tensors = read_state_dict(path)
    if tensors and all(name.startswith("module.") for name in tensors):
        tensors = {name.removeprefix("module."): value for name, value in tensors.items()}
    expected = model.state_dict()
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    shapes = [
        f"{name} is {tuple(tensors[name].shape)} in the file, {tuple(value.shape)} in the model"
        for name, value in expected.items()
        if name in tensors and tuple(tensors[name].shape) != tuple(value.shape)
    ]
    problems = []
    if shapes:
        problems.append(
            "; ".join(shapes[:MAX_LISTED]) + (" ..." if len(shapes) > MAX_LISTED else "")
        )
    if missing:
        problems.append(f"missing from the file: {_listed(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_listed(unexpected)}")
    if problems:
        raise CheckpointError(
            f"weights file {path} does not fit the model ({type(model).__name__}): "
            f"{'; '.join(problems)}; build the model with the arguments it was trained with"
        )
    with torch.no_grad():
        model.load_state_dict(
            {name: tensors[name].to(expected[name].dtype) for name in expected}, strict=True
        )
    return model.eval()


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return text or type(error).__name__

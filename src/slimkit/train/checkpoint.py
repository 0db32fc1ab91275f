"""Checkpoints: weights in safetensors plus the model's spec, so a file alone rebuilds its model.

The format is a plain safetensors file (no pickle, nothing executed on load) whose string metadata
holds ``slimkit.format`` and ``slimkit.version`` markers, the :class:`~slimkit.models.ModelSpec` as
JSON, and any extra JSON the caller adds (data spec, training config, metrics). Files are written
atomically.

Example:
    >>> from slimkit.models import create_model
    >>> model = create_model("mlp", input_shape=(1, 8, 8))
    >>> save_checkpoint(model, "model.safetensors")  # doctest: +SKIP
    >>> restored = load_checkpoint("model.safetensors").model  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import CheckpointError, ModelError
from slimkit.io import write_atomic
from slimkit.models import ModelSpec, build_model, model_spec_of

FORMAT = "slimkit.checkpoint"
VERSION = "1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode), its spec and the extra metadata."""

    model: nn.Module
    spec: ModelSpec
    metadata: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model``'s weights and spec to a safetensors file, atomically.

    Args:
        model: a model built by :func:`slimkit.models.create_model`, or any model with ``spec``.
        path: where to write (conventionally ``*.safetensors``).
        spec: the spec to store; defaults to the one the model carries.
        metadata: extra JSON-serialisable data (training config, data spec, metrics).
    """
    from safetensors.torch import save_model

    spec = spec or model_spec_of(model)
    if spec is None:
        raise ModelError(
            "this model carries no slimkit spec (it was not built by slimkit.create_model); "
            "pass spec=ModelSpec(...) so the checkpoint can rebuild it"
        )
    header = {
        "slimkit.format": FORMAT,
        "slimkit.version": VERSION,
        "model_spec": json.dumps(spec.to_dict()),
        "extra": json.dumps(dict(metadata or {})),
    }
    model_cpu = model.to("cpu")
    return write_atomic(path, lambda tmp: save_model(model_cpu, str(tmp), metadata=header))


TensorTable = dict[str, tuple[int, ...]]


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, Any]]:
    """Read only the spec and extra metadata of a checkpoint (no weights).

    Raises:
        CheckpointError: the file is missing, not a readable safetensors file, not a slimkit
            checkpoint, or its metadata is corrupt (the spec is validated by
            :meth:`ModelSpec.from_dict`; ``extra`` must be a JSON object).
    """
    spec, extra, _ = _read_header(Path(path))
    return spec, extra


def _read_header(file: Path) -> tuple[ModelSpec, dict[str, Any], TensorTable]:
    """The spec, the extra metadata and each tensor's shape, read from the header only."""
    from safetensors import safe_open

    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist or is not a file")
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
            names = list(handle.keys())
            tensors = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(
            f"checkpoint {file} is not a readable safetensors file ({_first_line(error)}); "
            "was it truncated, or is it another format?"
        ) from error
    if header.get("slimkit.format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {file} is a safetensors file but not a slimkit checkpoint "
            "(no slimkit.format marker); save it with slimkit.save_checkpoint"
        )
    if header.get("slimkit.version") != VERSION:
        raise CheckpointError(
            f"checkpoint {file} has format version {_short(header.get('slimkit.version'))}; "
            f"this slimkit reads version {VERSION}"
        )
    try:
        spec_data = json.loads(header["model_spec"])
        extra = json.loads(header.get("extra", "{}"))
    except KeyError:
        raise CheckpointError(f"checkpoint {file} has no model_spec in its metadata") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise CheckpointError(
            f"checkpoint {file} has corrupt metadata JSON ({_first_line(error)})"
        ) from None
    if not isinstance(extra, dict):
        raise CheckpointError(
            f"checkpoint {file} has corrupt metadata: extra must be a JSON object; "
            f"got {type(extra).__name__}"
        )
    try:
        spec = ModelSpec.from_dict(spec_data)
    except ModelError as error:
        raise CheckpointError(f"checkpoint {file} has an invalid model spec: {error}") from None
    return spec, extra, tensors


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Rebuild the model stored in ``path`` and load its weights (eval mode).

    The spec is checked against the file's tensors before any memory is spent on the model: the
    model is first built on the ``meta`` device (names and shapes, no data), and its parameters
    and buffers must be the file's, name for name and shape for shape. Only then is it built
    for real, so a small file cannot make slimkit allocate a huge model.

    Raises:
        CheckpointError: the file is unreadable or corrupt, or its spec and weights disagree.
    """
    from safetensors.torch import load_model

    file = Path(path)
    spec, extra, tensors = _read_header(file)
    _check_tensors(file, spec, _skeleton(file, spec, tensors), tensors)
    try:
        model = build_model(spec)
        missing, unexpected = load_model(model, str(file), strict=False)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {file} has weights that do not fit {spec.name}: {_first_line(error)}"
        ) from error
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {file} does not match model {spec.name!r}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    model.eval()
    return Checkpoint(model=model, spec=spec, metadata=extra, path=file)


class _TooManyTensors(Exception):
    """Raised from a registration hook to stop building a skeleton the file cannot fill."""


def _skeleton(file: Path, spec: ModelSpec, tensors: TensorTable) -> nn.Module:
    """``spec``'s model built on the meta device (shapes only), stopped early when it registers
    far more parameters, buffers or modules than the file holds tensors."""
    import torch.nn.modules.module as module_hooks

    limit = {"tensors": 2 * len(tensors) + 64, "modules": 16 * len(tensors) + 1024}
    counts = {"tensors": 0, "modules": 0}
    owner = threading.get_ident()

    def counter(kind: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            if threading.get_ident() == owner:
                counts[kind] += 1
                if counts[kind] > limit[kind]:
                    raise _TooManyTensors(kind)

        return hook

    handles = [
        module_hooks.register_module_parameter_registration_hook(counter("tensors")),
        module_hooks.register_module_buffer_registration_hook(counter("tensors")),
        module_hooks.register_module_module_registration_hook(counter("modules")),
    ]
    try:
        with torch.device("meta"):
            return build_model(spec)
    except _TooManyTensors as error:
        raise CheckpointError(
            f"checkpoint {file}: its spec {_short(spec.to_dict())} builds a model with more than "
            f"{limit[str(error)]} {error}, but the file holds {len(tensors)} tensors; the spec "
            "and the weights do not belong together"
        ) from None
    except ModelError as error:
        raise CheckpointError(f"checkpoint {file}: its spec cannot be built: {error}") from None
    finally:
        for handle in handles:
            handle.remove()


def _check_tensors(file: Path, spec: ModelSpec, skeleton: nn.Module, tensors: TensorTable) -> None:
    """Raise CheckpointError unless the skeleton's parameters and buffers are the file's tensors
    (names and shapes; of tied parameters, one name is stored)."""
    groups: dict[int, list[str]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, tensor in skeleton.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
        shapes[name] = tuple(tensor.shape)
    missing = [names[0] for names in groups.values() if not any(n in tensors for n in names)]
    unexpected = [name for name in tensors if name not in shapes]
    wrong = [
        f"{name} {list(tensors[name])} (the spec makes {list(shapes[name])})"
        for name in tensors
        if name in shapes and tensors[name] != shapes[name]
    ]
    if missing or unexpected or wrong:
        implied = sum(math.prod(shapes[names[0]]) for names in groups.values())
        stored = sum(math.prod(shape) for shape in tensors.values())
        problems = [
            f"{label} {_short(items)}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if items
        ]
        raise CheckpointError(
            f"checkpoint {file} does not match its spec ({spec.name}, {implied:,} values; the "
            f"file holds {stored:,}): {'; '.join(problems)}; the spec and the weights do not "
            "belong together"
        )


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

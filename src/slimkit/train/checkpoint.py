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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, Any]]:
    """Read only the spec and extra metadata of a checkpoint (no weights)."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist or is not a file")
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(
            f"checkpoint {file} is not a readable safetensors file ({error}); "
            "was it truncated, or is it another format?"
        ) from error
    if header.get("slimkit.format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {file} is a safetensors file but not a slimkit checkpoint "
            "(no slimkit.format marker); save it with slimkit.save_checkpoint"
        )
    if header.get("slimkit.version") != VERSION:
        raise CheckpointError(
            f"checkpoint {file} has format version {header.get('slimkit.version')!r}; "
            f"this slimkit reads version {VERSION}"
        )
    try:
        spec = ModelSpec.from_dict(json.loads(header["model_spec"]))
        extra = json.loads(header.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {file} has corrupt metadata: {error}") from error
    return spec, extra


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Rebuild the model stored in ``path`` and load its weights (eval mode)."""
    from safetensors.torch import load_model

    spec, extra = read_checkpoint_metadata(path)
    model = build_model(spec)
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} has weights that do not fit {spec.name}: {error}"
        ) from error
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match model {spec.name!r}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    model.eval()
    return Checkpoint(model=model, spec=spec, metadata=extra, path=Path(path))

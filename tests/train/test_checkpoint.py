"""Checkpoints: a file alone rebuilds its model; bad files get one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from slimkit.errors import CheckpointError, ModelError
from slimkit.models import create_model
from slimkit.train import load_checkpoint, read_checkpoint_metadata, save_checkpoint


def test_round_trip_rebuilds_the_same_function(tmp_path: Path) -> None:
    model = create_model("lenet5", input_shape=(1, 8, 8), num_classes=10, channels=[4, 8]).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", metadata={"note": "hi", "acc": 0.5})
    loaded = load_checkpoint(path)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.spec.kwargs == {"channels": [4, 8]}
    assert loaded.metadata == {"note": "hi", "acc": 0.5}
    assert not loaded.model.training


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    model = create_model("mlp", input_shape=(1, 8, 8))
    save_checkpoint(model, tmp_path / "a" / "m.safetensors")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.safetensors"]


def test_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(create_model("mlp", input_shape=(1, 8, 8)), path)
    before = path.read_bytes()
    with pytest.raises(ModelError):
        save_checkpoint(torch.nn.Linear(2, 2), path)  # no spec: refused before writing
    assert path.read_bytes() == before


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path: Path) -> None:
    path = save_checkpoint(create_model("mlp", input_shape=(1, 8, 8)), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_other_format(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a slimkit checkpoint"):
        read_checkpoint_metadata(path)


def test_weights_that_do_not_fit_the_spec(tmp_path: Path) -> None:
    small = create_model("mlp", input_shape=(1, 8, 8), hidden=[8])
    path = save_checkpoint(small, tmp_path / "m.safetensors")
    # claim the weights belong to a wider model: loading must refuse, not silently mis-shape
    from slimkit.models import ModelSpec

    wide = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": [16]})
    save_checkpoint(small, tmp_path / "bad.safetensors", spec=wide)
    with pytest.raises(CheckpointError, match=r"do not fit|does not match"):
        load_checkpoint(tmp_path / "bad.safetensors")
    assert load_checkpoint(path).spec.kwargs == {"hidden": [8]}

"""Checkpoints: a file alone rebuilds its model; bad files get one clear error."""

from __future__ import annotations

import contextlib
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


# --- corrupt or hostile metadata (issue #18, items 9 and 12) ---------------------------------


def _with_metadata(tmp_path: Path, **changes: str) -> Path:
    """A real checkpoint of a small MLP, its metadata strings changed as given."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    good = save_checkpoint(
        create_model("mlp", input_shape=(1, 8, 8), hidden=[16]), tmp_path / "g.st"
    )
    with safe_open(str(good), framework="pt") as handle:
        metadata = dict(handle.metadata())
    spec = json.loads(metadata["model_spec"])
    for key, value in changes.items():
        metadata[key] = value.replace("SPEC", json.dumps(spec)) if "SPEC" in value else value
    path = tmp_path / "bad.safetensors"
    save_file(load_file(str(good)), str(path), metadata=metadata)
    return path


def _spec_with(**fields: object) -> str:
    import json

    spec = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "kwargs": {"hidden": [16]}}
    return json.dumps({**spec, **fields})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_spec": "[1, 2]"}, "must be a mapping"),
        ({"model_spec": '"mlp"'}, "must be a mapping"),
        ({"model_spec": "5"}, "must be a mapping"),
        ({"extra": "[1]"}, "extra must be a JSON object"),
        ({"extra": "3"}, "extra must be a JSON object"),
        ({"model_spec": _spec_with(input_shape=["a", 8, 8])}, "input_shape"),
        ({"model_spec": _spec_with(input_shape=[1.5, 8, 8])}, "input_shape"),
        ({"model_spec": _spec_with(input_shape=None)}, "input_shape"),
        ({"model_spec": _spec_with(input_shape=[1, 8])}, "input_shape"),
        ({"model_spec": _spec_with(num_classes="10")}, "num_classes"),
        ({"model_spec": _spec_with(num_classes=2**40)}, "num_classes"),
        ({"model_spec": _spec_with(kwargs=[16])}, "kwargs"),
        ({"model_spec": _spec_with(kwargs={"name": "lenet5"})}, "may not set name"),
        ({"model_spec": _spec_with(kwargs={"hidden": [-16]})}, "cannot be built"),
        ({"model_spec": "[" * 100_000 + "]" * 100_000}, "corrupt metadata"),
        ({"model_spec": "{"}, "corrupt metadata"),
    ],
)
def test_corrupt_metadata_is_one_checkpoint_error(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    """Each was an internal error before: TypeError, ValueError, AttributeError, RecursionError
    or (num_classes 2**40) RuntimeError: can't allocate memory."""
    path = _with_metadata(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert len(str(caught.value).splitlines()) == 1


def _peak_rss_growth(action: object) -> int | None:
    """Bytes by which ``action()`` raised this process's peak RSS (None off Linux)."""
    import re

    status = Path("/proc/self/status")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None

    def peak() -> int:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1)) * 1024  # type: ignore[union-attr]

    before = peak()
    with contextlib.suppress(CheckpointError):
        action()  # type: ignore[operator]
    return peak() - before


def test_a_huge_spec_is_refused_before_any_model_is_built(tmp_path: Path) -> None:
    """The reproducer of item 12: a small file whose spec says hidden [4000000] built that model
    (1.2 GB of weights) before the weights were checked."""
    path = _with_metadata(tmp_path, model_spec=_spec_with(kwargs={"hidden": [4_000_000]}))
    with pytest.raises(CheckpointError, match="does not match its spec") as caught:
        load_checkpoint(path)
    assert "300,000,010 values" in str(caught.value)  # what the spec implies, named
    growth = _peak_rss_growth(lambda: load_checkpoint(path))
    if growth is None:
        pytest.skip("peak RSS cannot be reset here")
    assert growth < 200 << 20


def test_a_spec_of_thousands_of_layers_stops_early(tmp_path: Path) -> None:
    path = _with_metadata(tmp_path, model_spec=_spec_with(kwargs={"hidden": [1] * 4000}))
    with pytest.raises(CheckpointError, match="builds a model with more than"):
        load_checkpoint(path)


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    """A model whose two layers share one weight is stored with one name and still loads."""
    from slimkit.models import register_model

    @register_model("test_tied_mlp", "two linear layers sharing a weight")
    def tied(input_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
        width = input_shape[0] * input_shape[1] * input_shape[2]
        first, second = torch.nn.Linear(width, width), torch.nn.Linear(width, width)
        second.weight = first.weight
        head = torch.nn.Linear(width, num_classes)
        return torch.nn.Sequential(torch.nn.Flatten(), first, second, head)

    model = create_model("test_tied_mlp", input_shape=(1, 2, 2)).eval()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "tied.safetensors")).model
    x = torch.rand(3, 1, 2, 2)
    assert torch.equal(loaded(x), model(x))
    assert loaded[1].weight is loaded[2].weight


def test_cli_reports_corrupt_metadata_as_one_error_line(tmp_path: Path) -> None:
    """Through the installed ``slimkit`` command: exit 1 and one ``error:`` line (it was exit 2,
    ``internal error: AttributeError``)."""
    import os
    import shutil
    import subprocess

    command = shutil.which("slimkit") or pytest.skip("the slimkit command is not installed")
    path = _with_metadata(tmp_path, extra="[1]")
    result = subprocess.run(
        [command, "measure", str(path), "-b", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=1800,  # a guard against a hang, not a speed check
        env=dict(os.environ, COLUMNS="300"),
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "extra must be" in lines[0]

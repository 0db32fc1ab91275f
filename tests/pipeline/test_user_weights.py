"""Your trained model: weights files into a model (safetensors, a .pt state_dict), and the installed
`slimkit optimize` on a folder of images with a user's function and its trained weights as the
baseline (not retrained), a distilled user-function student, then `slimkit export` of the run's
baseline checkpoint (rebuilt from the function it records)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import slimkit
from slimkit.data import DataConfig, load_dataset
from slimkit.data.digits import load_digits_arrays
from slimkit.errors import CheckpointError, ConfigError
from slimkit.train.weights import load_weights

MODULE = '''
from torch import nn


def build(input_shape, num_classes, width=8):
    """A user's CNN: conv, depthwise conv, max pooling, linear."""
    channels, height, width_px = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, groups=width), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(width * (height // 2) * (width_px // 2), num_classes),
    )
'''


def net(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 36, 10))


def test_safetensors_and_pt_state_dicts_load_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = net()
    save_file(trained.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "w.pt")  # a training script's
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, tmp_path / "dp.pth")
    x = torch.rand(3, 1, 8, 8)
    for name in ("w.safetensors", "w.pt", "dp.pth"):
        loaded = load_weights(net(), tmp_path / name)
        assert not loaded.training
        assert torch.equal(loaded(x), trained.eval()(x)), name


def test_weights_that_do_not_fit_are_named(tmp_path: Path) -> None:
    torch.save(net(width=6).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(CheckpointError) as error:
        load_weights(net(width=4), tmp_path / "wide.pt")
    message = str(error.value)
    assert "0.weight is (6, 1, 3, 3) in the file, (4, 1, 3, 3) in the model" in message
    assert "build the model with the arguments it was trained with" in message
    assert "\n" not in message

    partial = {k: v for k, v in net().state_dict().items() if k != "3.bias"}
    partial["head.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(
        CheckpointError, match=r"missing from the file: 3\.bias; not in the model: head\.weight"
    ):
        load_weights(net(), tmp_path / "partial.pt")


class NotTensors:
    pass


def test_weights_files_that_are_not_state_dicts(tmp_path: Path) -> None:
    torch.save(NotTensors(), tmp_path / "object.pt")  # weights_only refuses to build the class
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_weights(net(), tmp_path / "object.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        load_weights(net(), tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(net(), tmp_path / "junk.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"give \.safetensors, or a state_dict"):
        load_weights(net(), tmp_path / "w.onnx")


def write_png_folder(root: Path) -> None:
    """Digits 0-4 as 16x16 PNGs, one subfolder per class."""
    images, labels = load_digits_arrays()
    for i in np.flatnonzero(labels < 5):
        folder = root / f"class{labels[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(images[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((16, 16), Image.Resampling.NEAREST).save(folder / f"{i}.png")


def slimkit_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("slimkit")
    command = [str(exe) if exe.is_file() else "slimkit", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_optimize_a_folder_with_your_trained_weights(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "images")
    (tmp_path / "mynet.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import mynet  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mynet", None)  # the CLI below imports it by itself
    config = DataConfig("folder", str(tmp_path / "images"), image_size=12, seed=0)
    data = load_dataset(config)
    torch.manual_seed(0)
    model = mynet.build(data.input_shape, data.num_classes, width=8)
    slimkit.train(model, data, slimkit.TrainConfig(epochs=25, lr=0.01, seed=0), progress=False)
    torch.save(model.state_dict(), tmp_path / "trained.pt")
    with torch.no_grad():
        logits = torch.cat([model.eval()(x) for x, _ in data.test.batches(64)])
    accuracy = float((logits.argmax(1) == data.test.y).float().mean())
    assert accuracy > 0.8  # trained: the baseline below must be this model, not a fresh one

    (tmp_path / "recipe.yaml").write_text(
        "name: mine\n"
        "data: {source: folder, path: images, image_size: 12}\n"
        "model: {function: 'mynet:build', args: {width: 8}, weights: trained.pt}\n"
        "target: {runtime: onnxruntime, batch_size: 16, threads: 1, latency_budget_s: 0.1}\n"
        "candidates:\n"
        "  - name: int8\n"
        "    techniques: [{technique: static_int8}]\n"
        "  - name: student\n"
        "    model: {function: 'mynet:build', args: {width: 4}}\n"
        "    train: {epochs: 3, lr: 0.01}\n"
        "    techniques: [{technique: distillation}]\n"
    )
    run = slimkit_cli("optimize", "recipe.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "runs" / "mine" / "report.json").read_text())
    by_name = {c["name"]: c for c in report["candidates"]}
    assert set(by_name) == {"baseline", "int8", "student"}
    assert all(c["error"] is None for c in by_name.values())
    # the baseline is the user's weights, measured in ONNX Runtime on the same test split
    assert by_name["baseline"]["accuracy"] == pytest.approx(accuracy, abs=1.5 / len(data.test))
    assert by_name["int8"]["accuracy"] >= accuracy - 0.05

    export = slimkit_cli(
        "export", "runs/mine/baseline.safetensors", "--out", "baseline.onnx", cwd=tmp_path
    )
    assert export.returncode == 0, export.stdout + export.stderr
    summary = json.loads((tmp_path / "baseline.onnx.json").read_text())
    assert summary["parity"]["argmax_agreement"] == 1.0


def test_a_checkpoint_rebuilds_only_your_own_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slimkit.models import ModelSpec
    from slimkit.pipeline.recipe import build_user_model
    from slimkit.train import load_checkpoint, save_checkpoint

    (tmp_path / "ckptnet.py").write_text(MODULE)  # a name no other test imports
    monkeypatch.chdir(tmp_path)  # a user's files: the current directory
    model = build_user_model("ckptnet:build", {"width": 4}, (1, 8, 8), 10)
    save_checkpoint(model, tmp_path / "mine.safetensors")
    loaded = load_checkpoint(tmp_path / "mine.safetensors")
    assert loaded.spec.name == "ckptnet:build" and dict(loaded.spec.kwargs) == {"width": 4}
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded.model(x), model.eval()(x))

    hostile = ModelSpec("os:system", (1, 8, 8), 10, {"command": "touch pwned"})
    save_checkpoint(model, tmp_path / "hostile.safetensors", spec=hostile)
    with pytest.raises(CheckpointError, match="is not a function of yours"):
        load_checkpoint(tmp_path / "hostile.safetensors")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_optimize_takes_your_module_in_python(tmp_path: Path) -> None:
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    slimkit.train(model, data, slimkit.TrainConfig(epochs=20, lr=0.01, seed=0), progress=False)
    with torch.no_grad():
        accuracy = float((model.eval()(data.test.x).argmax(1) == data.test.y).float().mean())
    recipe = {
        "name": "mine",
        "data": "digits",
        "target": {"latency_budget_s": 0.1},
        "candidates": [{"name": "int8", "techniques": [{"technique": "dynamic_int8"}]}],
    }
    report = slimkit.optimize(recipe, model=model, out=tmp_path / "run", progress=False)
    baseline = report.candidate("baseline")
    assert baseline.accuracy == pytest.approx(accuracy, abs=1.5 / len(data.test))  # as given
    assert report.candidate("int8").error is None
    assert report.recipe["model"]["python"] == "Sequential"

    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # another model, same run folder
    with pytest.raises(ConfigError, match="holds a run of a different recipe"):
        slimkit.optimize(recipe, model=other, out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"gives \(2, 3\) for 2 inputs"):
        slimkit.optimize(
            recipe, model=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), out=tmp_path / "r2"
        )


@pytest.mark.slow
def test_the_search_varies_your_functions_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "searchnet.py").write_text(MODULE)  # a name no other test imports
    monkeypatch.chdir(tmp_path)
    recipe = {
        "name": "searched",
        "data": {"source": "digits", "max_train_samples": 400},
        "model": {"function": "searchnet:build", "args": {"width": 4}},
        "train": {"epochs": 2},
        "target": {"latency_budget_s": 0.05},
        "search": {
            "trials": 3,
            "sampler": "random",
            "space": {
                "model": {"searchnet:build": {"width": {"choice": [2, 6]}}},
                "train": {"epochs": 1},
                "techniques": [{"slot": "distill", "choices": {"none": {}, "distillation": {}}}],
            },
        },
    }
    report = slimkit.optimize(recipe, out=tmp_path / "run", progress=False)
    trials = [c for c in report.candidates if c.source == "search"]
    assert len(trials) == 3 and all(c.error is None for c in trials), [c.error for c in trials]
    assert {c.model["kwargs"]["width"] for c in trials} <= {2, 6}
    assert all(c.model["name"] == "searchnet:build" for c in trials)

    bad = {**recipe, "search": {"trials": 1, "space": {"model": {"os:system": {}}}}}
    with pytest.raises(ConfigError, match="is not a function of yours"):
        slimkit.optimize(bad, out=tmp_path / "bad", progress=False)
    arg = {**recipe, "search": {"trials": 1, "space": {"model": {"searchnet:build": {"depth": 3}}}}}
    with pytest.raises(ConfigError, match="depth"):
        slimkit.optimize(arg, out=tmp_path / "arg", progress=False)

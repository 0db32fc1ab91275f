"""ONNX export: the file ONNX Runtime runs computes what the PyTorch model computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from slimkit.data import Dataset
from slimkit.errors import ConfigError, ExportError
from slimkit.export import export, list_formats
from slimkit.measure import compare_logits
from slimkit.models import create_model, list_models
from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches


def test_trained_lenet_parity_on_the_whole_test_split(
    trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    result = export(trained_lenet, tmp_path / "lenet5.onnx")
    assert result.format == "onnx" and result.file_bytes == result.path.stat().st_size > 0
    x = digits.test.x.numpy()
    reference = predict_batches(PyTorchRunner.from_model(trained_lenet).run, x)
    candidate = predict_batches(load_runtime("onnxruntime", result.path).run, x)
    parity = compare_logits(reference, candidate)
    assert parity.samples == len(digits.test)
    assert parity.max_abs_diff <= 1e-4
    assert parity.argmax_agreement == 1.0


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_a_dynamic_batch(name: str, tmp_path: Path) -> None:
    model = create_model(name, input_shape=(1, 8, 8)).eval()
    path = export(model, tmp_path / f"{name}.onnx").path
    runner = load_runtime("onnxruntime", path)
    for batch in (1, 3, 64):
        x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
        expected = model(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(runner.run(x), expected, atol=1e-5)


def test_file_records_the_model_spec_and_input_shape(tmp_path: Path) -> None:
    model = create_model("mlp", input_shape=(1, 8, 8), hidden=[16])
    path = export(model, tmp_path / "m.onnx", metadata={"note": "x"}).path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["slimkit.model_spec"])["kwargs"] == {"hidden": [16]}
    assert json.loads(props["slimkit.input_shape"]) == [1, 8, 8]
    assert props["note"] == "x"


def test_export_keeps_training_mode(tmp_path: Path) -> None:
    model = create_model("mlp", input_shape=(1, 8, 8), dropout=0.5)
    model.train()
    export(model, tmp_path / "m.onnx")
    assert model.training


def test_plain_module_needs_an_input_shape(tmp_path: Path) -> None:
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="input_shape"):
        export(plain, tmp_path / "p.onnx")
    assert export(plain, tmp_path / "p.onnx", input_shape=(1, 2, 2)).file_bytes > 0


def test_unknown_format() -> None:
    assert "onnx" in list_formats()
    with pytest.raises(ConfigError, match="unknown export format 'tflite2'"):
        export(create_model("mlp"), "x", format="tflite2")


class _DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow cannot be exported
            return x.flatten(1)
        return -x.flatten(1)


def test_unexportable_model_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="could not export _DataDependent to ONNX"):
        export(_DataDependent(), tmp_path / "d.onnx", input_shape=(1, 2, 2))
    assert not (tmp_path / "d.onnx").exists()

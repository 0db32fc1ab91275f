"""A model file measured against a checkpoint of another model is refused (issue #18, item 17:
``slimkit measure lenet5.onnx --checkpoint mlp.safetensors`` exited 0 and reported the MLP's
parameters and MACs as LeNet-5's). Shapes are checked first, then the outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
import torch

from slimkit.cli.options import data_config_of
from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.measure import LatencyConfig, count_costs, measure
from slimkit.models import create_model
from slimkit.techniques import compress, config_from_dict
from slimkit.train import save_checkpoint

FAST = LatencyConfig(warmup=1, min_repeats=3, max_repeats=5, time_budget_s=0.1)


def _model(name: str, seed: int, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    shape = kwargs.pop("input_shape", (1, 8, 8))
    return create_model(name, input_shape=shape, **kwargs).eval()  # type: ignore[arg-type]


def test_cli_refuses_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    """The reproducer, through the installed ``slimkit`` command."""
    lenet = export(_model("lenet5", 0), tmp_path / "lenet5.onnx").path
    mlp = save_checkpoint(_model("mlp", 0), tmp_path / "mlp.safetensors")
    command = shutil.which("slimkit") or pytest.skip("the slimkit command is not installed")
    out = tmp_path / "m.json"
    arguments = ["--checkpoint", str(mlp), "--data", "digits", "-b", "1", "--budget", "0.1"]
    result = subprocess.run(
        [command, "measure", str(lenet), *arguments, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hang, not a speed check
        env=dict(os.environ, COLUMNS="300"),
    )
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "lenet5" in errors[0] and "mlp" in errors[0] and "not the same model" in errors[0]
    assert not out.exists()


def test_same_architecture_other_weights_is_refused_by_its_outputs(
    digits: Dataset, tmp_path: Path
) -> None:
    path = export(_model("lenet5", 0), tmp_path / "a.onnx").path
    with pytest.raises(ConfigError, match="compute different outputs"):
        measure(path, digits, batch_sizes=(1,), reference=_model("lenet5", 1), latency=FAST)


def test_other_input_shape_is_refused(digits: Dataset, tmp_path: Path) -> None:
    path = export(_model("lenet5", 0), tmp_path / "a.onnx").path
    onnx_model = onnx.load(str(path))
    del onnx_model.metadata_props[:]  # no recorded spec: the shapes must tell
    onnx.save(onnx_model, str(path))
    other = _model("lenet5", 0, input_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match=r"takes inputs of shape \(1, 8, 8\)"):
        measure(path, digits, batch_sizes=(1,), reference=other, latency=FAST)


def test_other_number_of_classes_is_refused(digits: Dataset, tmp_path: Path) -> None:
    path = export(_model("mlp", 0), tmp_path / "a.onnx").path
    onnx_model = onnx.load(str(path))
    del onnx_model.metadata_props[:]
    onnx.save(onnx_model, str(path))
    with pytest.raises(ConfigError, match="gives outputs of shape"):
        measure(path, digits, batch_sizes=(1,), reference=_model("mlp", 0, num_classes=12))


@pytest.mark.parametrize("technique", ["static_int8", "dynamic_int8"])
def test_an_int8_file_of_the_reference_is_accepted(
    trained_lenet: torch.nn.Module, digits: Dataset, technique: str, tmp_path: Path
) -> None:
    """int8 rounding is not a different model: the file of a quantized model is measured
    against its float checkpoint, and counted as it."""
    quantized = compress(trained_lenet, [config_from_dict({"technique": technique})], data=digits)
    path = export(quantized, tmp_path / "q.onnx").path
    record = measure(path, digits, batch_sizes=(1,), reference=trained_lenet, latency=FAST)
    cost = count_costs(trained_lenet, digits.input_shape)
    assert (record.params, record.macs) == (cost.params, cost.macs)
    assert record.parity is not None and record.parity.argmax_agreement > 0.9


def test_corrupt_data_metadata_is_a_config_error(tmp_path: Path) -> None:
    path = export(_model("mlp", 0), tmp_path / "a.onnx").path
    for value, message in [("{", "corrupt slimkit.data"), ('{"source": [1]}', "invalid data spec")]:
        onnx_model = onnx.load(str(path))
        onnx.helper.set_model_props(onnx_model, {"slimkit.data": value})
        onnx.save(onnx_model, str(path))
        with pytest.raises(ConfigError, match=message):
            data_config_of(path)
    onnx.helper.set_model_props(onnx_model, {"slimkit.data": json.dumps({"source": "digits"})})
    onnx.save(onnx_model, str(path))
    config = data_config_of(path)
    assert config is not None and config.source == "digits"

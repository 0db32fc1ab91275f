"""``slimkit compress`` and ``slimkit quantize`` on a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from slimkit.cli import app
from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.train import save_checkpoint

runner = CliRunner()


@pytest.fixture
def checkpoint(trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path) -> Path:
    return save_checkpoint(
        trained_lenet, tmp_path / "lenet5.safetensors", metadata={"data": digits.config.to_dict()}
    )


def test_quantize_static_writes_an_int8_model_that_agrees(checkpoint: Path) -> None:
    result = runner.invoke(
        app, ["quantize", str(checkpoint), "--calibration", "mse"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((checkpoint.parent / "lenet5.static_int8.onnx.json").read_text())
    assert summary["techniques"][0]["calibration"] == "mse"
    assert summary["accuracy_runtime"] >= summary["accuracy_fp32"] - 0.02
    assert summary["within_one_lsb_of_integer_reference"] >= 0.999
    assert summary["fp32_export"]["file_bytes"] > 3 * summary["export"]["file_bytes"]


def test_compress_from_a_yaml_recipe(checkpoint: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "techniques:\n"
        "  - technique: static_int8\n"
        "    calibration: percentile\n"
        "    percentile: 99.9\n"
    )
    out = tmp_path / "out.onnx"
    result = runner.invoke(
        app,
        ["compress", str(checkpoint), "--recipe", str(recipe), "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary["techniques"][0]["percentile"] == 99.9
    assert summary["parity_vs_simulation"]["argmax_agreement"] >= 0.99


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("techniques:\n  - technique: magic\n", "unknown technique 'magic'"),
        ("techniques:\n  - technique: static_int8\n    bits: 4\n", "has no option(s) bits"),
        ("techniques: [\n", "not valid YAML"),
        ("model: lenet5\n", "needs a non-empty 'techniques:' list"),
    ],
)
def test_bad_recipes_name_the_problem(
    checkpoint: Path, tmp_path: Path, recipe: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(recipe)
    with pytest.raises(ConfigError) as error:
        runner.invoke(
            app, ["compress", str(checkpoint), "--recipe", str(path)], catch_exceptions=False
        )
    assert message in str(error.value)


def test_technique_by_name_with_options(checkpoint: Path) -> None:
    result = runner.invoke(
        app,
        ["compress", str(checkpoint), "--technique", "weight_only_int8", "-o", "per_channel=false"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((checkpoint.parent / "lenet5.weight_only_int8.onnx.json").read_text())
    assert summary["techniques"][0]["per_channel"] is False

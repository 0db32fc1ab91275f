"""``slimkit models`` over the zoo: costs at an input size, notes for misfits, per-layer tables."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from slimkit.cli import app
from slimkit.models import list_models

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_listing_notes_models_that_do_not_fit_the_input_size() -> None:
    code, output = _run("models", "--input-shape", "1x30x30")
    assert code == 0
    lines = {line.split()[1]: line for line in output.splitlines() if line.startswith("│")}
    assert set(list_models()) <= set(lines)
    assert "not at this input size" in lines["vit_small"]
    assert "30x30 is not a whole number of 4x4" in " ".join(output.split())
    assert "not at this input size" not in lines["mobilenet_v1_small"]


def test_paper_convention_reproduces_mobilenet_v1() -> None:
    args = ("models", "mobilenet_v1", "--input-shape", "3x224x224", "--num-classes", "1000")
    code, output = _run(*args, "--no-batchnorm-params")
    assert code == 0 and "4,210,088" in output and "568,740,352" in output
    code, output = _run(*args)
    assert code == 0 and "4,231,976" in output and "568,740,352" in output


@pytest.mark.parametrize(
    ("name", "layer_type", "total_macs"),
    [
        ("mobilenet_v1_small", "Conv2d", "393,200"),
        ("vit_small", "SoftmaxAttention", "1,690,624"),
        ("sequence_transformer", "LinearAttention", "14,701,888"),
        ("shufflenet_small", "ChannelShuffle", "304,096"),
    ],
)
def test_summary_lists_every_layer_and_the_total(
    name: str, layer_type: str, total_macs: str
) -> None:
    code, output = _run("models", name, "--summary", "--input-shape", "1x28x28")
    assert code == 0 and layer_type in output
    total = next(line for line in output.splitlines() if "total" in line)
    assert total_macs in total


def test_a_single_model_that_does_not_fit_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["models", "vit_small", "--input-shape", "1x30x30"])
    assert result.exit_code != 0
    assert "30x30 is not a whole number of 4x4 patches" in str(result.exception)


def test_model_arguments_need_a_model_name() -> None:
    result = runner.invoke(app, ["models", "--model-arg", "attention=linear"])
    assert "--model-arg needs a model name" in str(result.exception)

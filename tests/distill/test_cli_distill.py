"""``slimkit distill`` on digits: a checkpoint and a summary out, one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn
from typer.testing import CliRunner

from slimkit.cli import app, main
from slimkit.data import Dataset
from slimkit.train import load_checkpoint, save_checkpoint

runner = CliRunner()


@pytest.fixture
def teacher_checkpoint(tmp_path: Path, trained_lenet: nn.Module, digits: Dataset) -> Path:
    return save_checkpoint(
        trained_lenet, tmp_path / "teacher.safetensors", metadata={"data": digits.config.to_dict()}
    )


def test_distill_writes_a_student_checkpoint_and_summary(
    teacher_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "student.safetensors"
    result = runner.invoke(
        app,
        [
            "distill",
            "--teacher",
            str(teacher_checkpoint),
            "--student",
            "mlp",
            "--student-arg",
            "hidden=[32]",
            "--temperature",
            "3",
            "--alpha",
            "0.8",
            "--epochs",
            "2",
            "--hint",
            "layers.1:classifier.1",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "teacher" in result.output and "student" in result.output
    student = load_checkpoint(out)
    assert student.spec.name == "mlp" and list(student.spec.kwargs["hidden"]) == [32]
    assert student.metadata["distillation"]["temperature"] == 3.0
    assert student.metadata["data"]["source"] == "digits"  # taken from the teacher
    summary = json.loads((tmp_path / "student.distill.json").read_text())
    assert summary["distillation"]["hints"][0]["teacher_layer"] == "classifier.1"
    assert len(summary["train"]["history"]) == 2
    assert 0.0 <= summary["student"]["test_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alpha", "1.5"], "alpha must be in [0, 1]; got 1.5"),
        (["--temperature", "0"], "temperature must be a finite number > 0"),
        (["--hint", "layers.1:nope"], "hint layer 'nope' does not exist in the teacher"),
        (["--student-arg", "num_classes=5"], "the teacher outputs 10 logits, the student 5"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    teacher_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    argv = ["distill", "--teacher", str(teacher_checkpoint), "--student", "mlp", *args]
    argv += ["--out", str(tmp_path / "s.safetensors")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "error:" in error and message in " ".join(error.split())
    assert not (tmp_path / "s.safetensors").exists()

"""``progress=`` of the verbs: a function gets a ProgressEvent per unit of work; the default and
``False`` show nothing outside a notebook; nested verbs report to the outer one's function."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import slimkit
from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.measure import LatencyConfig
from slimkit.models import create_model
from slimkit.progress import ProgressEvent, TqdmBars, reporting
from slimkit.techniques.prune import ChannelPruningConfig
from slimkit.techniques.quantize import StaticInt8Config
from slimkit.train import TrainConfig

FAST = LatencyConfig(warmup=1, min_repeats=5, time_budget_s=0.05)


def test_train_reports_each_epoch(digits: Dataset) -> None:
    events: list[ProgressEvent] = []
    model = create_model("lenet5", input_shape=digits.input_shape)
    result = slimkit.train(model, digits, TrainConfig(epochs=3, seed=0), progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [
        ("train", 0, 3),
        ("train", 1, 3),
        ("train", 2, 3),
        ("train", 3, 3),
    ]
    last = result.history[-1]
    assert events[-1].info == f"loss {last.train_loss:.4f} val {100 * last.val_accuracy:.2f}%"
    assert str(events[-1]).startswith("train: 3/3 loss ")


def test_compress_reports_its_techniques_and_the_work_inside(
    trained_lenet: torch.nn.Module, digits: Dataset
) -> None:
    events: list[ProgressEvent] = []
    configs = [ChannelPruningConfig(ratio=0.5, epochs=2), StaticInt8Config(calibration="minmax")]
    slimkit.compress(trained_lenet, configs, data=digits, progress=events.append)
    stages = [e.stage for e in events]
    assert [(e.done, e.total, e.info) for e in events if e.stage == "compress"] == [
        (0, 2, "channel_pruning"),
        (1, 2, "static_int8"),
        (2, 2, "done"),
    ]
    # the fine-tuning's epochs (a train call inside) come between, then calibration batches
    assert [e.done for e in events if e.stage == "train"] == [0, 1, 2]
    calibrate = [e for e in events if e.stage == "calibrate"]
    assert calibrate and calibrate[-1].done == calibrate[-1].total
    assert stages.index("train") < stages.index("calibrate")


def test_measure_reports_each_step(
    trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    path = slimkit.export(trained_lenet, tmp_path / "m.onnx").path
    events: list[ProgressEvent] = []
    slimkit.measure(
        path,
        digits,
        batch_sizes=(1, 8),
        reference=trained_lenet,
        latency=FAST,
        progress=events.append,
    )
    assert [e.done for e in events] == [0, 1, 2, 3, 4]
    assert {e.stage for e in events} == {"measure"} and {e.total for e in events} == {4}
    assert "latency at batch 8" in events[3].info


def test_no_progress_by_default_outside_a_notebook(
    digits: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    model = create_model("lenet5", input_shape=digits.input_shape)
    slimkit.train(model, digits, TrainConfig(epochs=1, seed=0))
    slimkit.train(model, digits, TrainConfig(epochs=1, seed=0), progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_true_shows_a_tqdm_bar(digits: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    model = create_model("lenet5", input_shape=digits.input_shape)
    slimkit.train(model, digits, TrainConfig(epochs=2, seed=0), progress=True)
    err = capsys.readouterr().err
    assert "train: 100%" in err and "2/2" in err


def test_reporting_checks_its_argument_and_nests() -> None:
    with pytest.raises(ConfigError, match="progress must be"), reporting("yes"):  # type: ignore[arg-type]
        pass
    events: list[ProgressEvent] = []
    with reporting(events.append) as outer:
        with reporting(None) as inner:  # a verb inside a verb that shows progress
            assert inner is outer
        with reporting(False) as silent:
            assert silent is None
    with reporting(True) as bars:
        assert isinstance(bars, TqdmBars)

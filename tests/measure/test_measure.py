"""The measure verb end to end: a trained model in PyTorch and ONNX Runtime on held-out digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.export import export
from slimkit.measure import LatencyConfig, count_costs, measure
from slimkit.progress import ProgressEvent
from slimkit.train import evaluate, save_checkpoint

FAST = LatencyConfig(warmup=2, min_repeats=5, max_repeats=50, time_budget_s=0.3)


def test_onnxruntime_record(
    trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    path = export(trained_lenet, tmp_path / "m.onnx").path
    events: list[ProgressEvent] = []
    record = measure(
        path,
        digits,
        runtime="onnxruntime",
        batch_sizes=(1, 64),
        threads=(1, 2),
        reference=trained_lenet,
        latency=FAST,
        progress=events.append,
    )
    _, eager_accuracy = evaluate(trained_lenet, digits.test)
    assert record.accuracy == pytest.approx(eager_accuracy)
    assert record.test_samples == len(digits.test)
    assert record.parity is not None and record.parity.passes(atol=1e-4)
    assert record.file_bytes == path.stat().st_size
    cost = count_costs(trained_lenet, digits.input_shape)
    assert (record.params, record.macs) == (cost.params, cost.macs)
    assert sorted((s.batch_size, s.threads) for s in record.latency) == [
        (1, 1),
        (1, 2),
        (64, 1),
        (64, 2),
    ]
    assert all(s.p50_ms > 0 and s.repeats >= 5 for s in record.latency)
    assert record.model_spec is not None and record.model_spec["name"] == "lenet5"
    assert record.data is not None and record.data["source"] == "digits"
    assert record.environment["cpu"]
    assert any("latency at batch 64" in e.info for e in events)


def test_pytorch_record_from_a_checkpoint(
    trained_lenet: torch.nn.Module, digits: Dataset, tmp_path: Path
) -> None:
    path = save_checkpoint(trained_lenet, tmp_path / "m.safetensors")
    record = measure(path, digits, runtime="pytorch", batch_sizes=(8,), latency=FAST)
    assert record.accuracy == pytest.approx(evaluate(trained_lenet, digits.test)[1])
    assert record.params == count_costs(trained_lenet, digits.input_shape).params
    assert record.latency[0].batch_size == 8


def test_live_model_only_in_pytorch(trained_lenet: torch.nn.Module, digits: Dataset) -> None:
    record = measure(trained_lenet, digits, runtime="pytorch", batch_sizes=(1,), latency=FAST)
    assert record.artifact == "" and record.file_bytes is None
    with pytest.raises(ConfigError, match="export it"):
        measure(trained_lenet, digits, runtime="onnxruntime", latency=FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"batch_sizes": (0,)}, "batch_sizes"), ({"threads": ()}, "threads")]
)
def test_bad_settings(
    trained_lenet: torch.nn.Module, digits: Dataset, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        measure(trained_lenet, digits, runtime="pytorch", **kwargs)  # type: ignore[arg-type]

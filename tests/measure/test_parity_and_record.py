"""Parity of logits, the measurement record's JSON round trip, and the environment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.measure import MeasureRecord, compare_logits, environment
from slimkit.measure.latency import summarize


def test_identical_logits_agree_fully() -> None:
    logits = np.random.default_rng(0).standard_normal((50, 10))
    result = compare_logits(logits, logits.copy())
    assert result.max_abs_diff == 0 and result.argmax_agreement == 1.0 and result.samples == 50
    assert result.passes()


def test_a_flipped_prediction_is_counted() -> None:
    reference = np.eye(4, dtype=np.float32)
    candidate = reference.copy()
    candidate[2] = [0, 0, 0.4, 0.6]
    result = compare_logits(reference, candidate)
    assert result.argmax_agreement == pytest.approx(0.75)
    assert result.max_abs_diff == pytest.approx(0.6)
    assert not result.passes()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ConfigError, match="same shape"):
        compare_logits(np.zeros((3, 10)), np.zeros((3, 9)))


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    stats = summarize(np.array([1.0, 2.0, 3.0]), batch_size=64, threads=1, stable=True)
    record = MeasureRecord(
        name="m",
        runtime="onnxruntime",
        runtime_version="1",
        artifact="m.onnx",
        file_bytes=10,
        accuracy=0.9,
        test_samples=100,
        latency=(stats,),
        environment=environment(),
        params=5,
        macs=7,
        parity=compare_logits(np.eye(3), np.eye(3)),
    )
    path = record.save(tmp_path / "r.json")
    loaded = MeasureRecord.from_dict(json.loads(path.read_text()))
    assert loaded == record
    assert loaded.latency_for(64, 1) == stats
    assert loaded.latency_for(1, 1) is None


def test_environment_names_the_cpu_and_versions() -> None:
    env = environment()
    assert env["cpu"] and env["cpu_count"] >= 1
    assert env["packages"]["torch"] and env["packages"]["onnxruntime"]
    assert isinstance(env["cpu_features"], list)
    json.dumps(env)


def test_environment_records_how_idle_cpus_sleep() -> None:
    idle = environment()["idle"]
    assert set(idle) == {"cpuidle_driver", "guest_halt_poll_ns"}
    assert idle["cpuidle_driver"] is None or isinstance(idle["cpuidle_driver"], str)
    assert idle["guest_halt_poll_ns"] is None or idle["guest_halt_poll_ns"] >= 0

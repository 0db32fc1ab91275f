"""Parity of logits, the measurement record's JSON round trip, and the environment."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from slimkit.errors import ConfigError
from slimkit.measure import MeasureRecord, compare_logits, environment
from slimkit.measure.environment import guest_halt_polling
from slimkit.measure.latency import summarize

# the module (the package exports a function of the same name)
environment_module = importlib.import_module("slimkit.measure.environment")


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


def test_guest_halt_polling_sets_and_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the kernel's parameter folder stood in by a copy, so the test does not tune the CI host
    (tmp_path / "guest_halt_poll_ns").write_text("0\n")
    (tmp_path / "guest_halt_poll_allow_shrink").write_text("Y\n")
    monkeypatch.setattr(environment_module, "HALT_POLL", tmp_path)
    with guest_halt_polling(200_000):
        assert (tmp_path / "guest_halt_poll_ns").read_text() == "200000"
        assert (tmp_path / "guest_halt_poll_allow_shrink").read_text() == "N"
    assert (tmp_path / "guest_halt_poll_ns").read_text() == "0"
    assert (tmp_path / "guest_halt_poll_allow_shrink").read_text() == "Y"
    with pytest.raises(RuntimeError), guest_halt_polling(5):  # restored on errors too
        raise RuntimeError("boom")
    assert (tmp_path / "guest_halt_poll_ns").read_text() == "0"


def test_guest_halt_polling_without_haltpoll_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environment_module, "HALT_POLL", tmp_path / "missing")
    with pytest.raises(ConfigError, match="KVM guest with the haltpoll"), guest_halt_polling(1):
        pass
    with pytest.raises(ConfigError, match="nanoseconds >= 0"), guest_halt_polling(-1):
        pass

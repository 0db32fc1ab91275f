"""Process isolation, peak memory, repeat stability, and the ``slimkit bench`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slimkit.cli import app
from slimkit.errors import ConfigError, RuntimeLoadError
from slimkit.export import export
from slimkit.measure import LatencyConfig
from slimkit.measure.latency import measure_isolated, peak_rss_bytes, pinned_cpus
from slimkit.models import create_model
from slimkit.techniques.quantize import quantize_static
from slimkit.train import save_checkpoint

FAST = LatencyConfig(warmup=2, min_repeats=5, max_repeats=50, time_budget_s=0.2)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", input_shape=(1, 8, 8), channels=[4, 8], hidden=[16, 16]).eval()


def test_isolated_timing_reports_latency_memory_and_repeats(
    tiny: torch.nn.Module, tmp_path: Path
) -> None:
    path = export(tiny, tmp_path / "m.onnx").path
    batches = [np.zeros((b, 1, 8, 8), np.float32) for b in (1, 16)]
    timing = measure_isolated("onnxruntime", path, batches, threads=2, config=FAST, rounds=2)
    assert [s.batch_size for s in timing.latency] == [1, 16]
    assert all(s.threads == 2 and s.p50_ms > 0 for s in timing.latency)
    assert len(timing.repeats) == 2 and len(timing.repeat_stability()) == 2
    # the child imported slimkit (torch) before loading: tens of MiB at least, under this process
    assert 50 * 2**20 < timing.baseline_rss_bytes <= timing.peak_rss_bytes
    assert timing.peak_rss_bytes < 4 * peak_rss_bytes()
    assert timing.to_dict()["model_rss_bytes"] == timing.model_rss_bytes


def test_a_live_model_is_timed_in_its_own_process(tiny: torch.nn.Module) -> None:
    # slimkit's simulated int8 model has no file: it is sent to the child through the pipe
    torch.manual_seed(0)
    quantized = quantize_static(tiny, torch.randn(32, 1, 8, 8))
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    timing = measure_isolated(
        "pytorch", "<in-memory>", [x], threads=1, config=FAST, rounds=2, model=quantized
    )
    assert timing.latency[0].p50_ms > 0 and len(timing.repeat_stability()) == 1
    assert 50 * 2**20 < timing.baseline_rss_bytes <= timing.peak_rss_bytes
    with pytest.raises(ConfigError, match="timed with the pytorch runtime"):
        measure_isolated("onnxruntime", "<in-memory>", [x], config=FAST, model=quantized)


def test_a_pinned_child_runs_on_the_cpus_it_was_given(
    tiny: torch.nn.Module, tmp_path: Path
) -> None:
    path = export(tiny, tmp_path / "m.onnx").path
    x = [np.zeros((1, 1, 8, 8), np.float32)]
    one = pinned_cpus(1)
    assert len(one) == 1 and one[0] == max(os.sched_getaffinity(0))  # the last CPU, not CPU 0
    timing = measure_isolated("onnxruntime", path, x, threads=1, config=FAST, cpus=one)
    assert timing.cpus == one  # read back in the child after timing
    assert timing.to_dict()["cpus"] == list(one)
    assert measure_isolated("onnxruntime", path, x, config=FAST).cpus is None
    with pytest.raises(ConfigError, match="this process may use CPUs"):
        measure_isolated("onnxruntime", path, x, config=FAST, cpus=[os.cpu_count() or 1])
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        pinned_cpus(0)


def test_isolated_errors_come_back_as_slimkit_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(RuntimeLoadError, match=r"cannot load .*bad\.onnx as an ONNX model"):
        measure_isolated("onnxruntime", bad, [np.zeros((1, 1, 8, 8), np.float32)], config=FAST)
    with pytest.raises(ConfigError, match="rounds must be 1 or 2"):
        measure_isolated("onnxruntime", bad, [np.zeros((1, 1, 8, 8), np.float32)], rounds=3)


def test_bench_command_prints_one_table_and_writes_json(
    tiny: torch.nn.Module, tmp_path: Path
) -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    pytest.importorskip("executorch", reason="executorch is not installed")
    checkpoint = save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    out = tmp_path / "bench"
    args = ["bench", str(checkpoint), "--data", "digits", "-b", "1", "-b", "4", "-t", "1"]
    args += ["-r", "pytorch", "-r", "litert", "-r", "executorch", "-p", "fp32", "-p", "int8"]
    args += ["--budget", "0.1", "--rounds", "2", "--no-isolate", "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "p50/p99 in ms per batch" in result.output and "rep Δ: |Δp50|" in result.output
    body = json.loads((out / "bench.json").read_text())
    rows = body["rows"]
    # 3 runtimes x 2 precisions x 2 batch sizes x 1 thread count
    assert len(rows) == 12
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert all(r["max_abs_diff"] <= 1e-4 and r["argmax_agreement"] == 1.0 for r in fp32)
    int8 = [r for r in rows if r["precision"] == "int8"]
    assert all(r["quantizer"] == "slimkit" and r["speedup_vs_fp32"] > 0 for r in int8)
    # slimkit's int8 in every runtime, held against slimkit's integer reference
    assert all(r["parity_reference"] == "slimkit integer reference" for r in int8)
    assert all(r["within_1_lsb"] >= 0.999 and r["argmax_agreement"] >= 0.99 for r in int8)
    edge = [r for r in rows if r["runtime"] != "pytorch"]
    assert all(r["all_delegated"] for r in edge)
    assert (out / "bench.md").is_file()
    # timed twice in one process; a window the harness called stable held still within tolerance
    assert all(r["repeat_stability"] >= 0 and isinstance(r["repeat_stable"], bool) for r in rows)
    assert all(r["drift"] <= LatencyConfig().tolerance for r in rows if r["stable"])


def test_bench_pin_times_each_process_on_as_many_cpus_as_threads(
    tiny: torch.nn.Module, tmp_path: Path
) -> None:
    checkpoint = save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    out = tmp_path / "bench"
    args = ["bench", str(checkpoint), "--data", "digits", "-b", "1", "-t", "1", "-r"]
    args += ["onnxruntime", "--budget", "0.1", "--pin", "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "bench.json").read_text())["rows"]
    assert row["isolated"] and row["cpus"] == list(pinned_cpus(1))
    with pytest.raises(ConfigError, match="use it with isolate=True"):
        CliRunner().invoke(app, [*args, "--no-isolate"], catch_exceptions=False)


def test_only_picklable_live_models_are_sent_to_a_child(tiny: torch.nn.Module) -> None:
    from slimkit.cli.bench import _can_send
    from slimkit.export.pt2e import quantize_pt2e

    torch.manual_seed(0)
    calibration = torch.randn(16, 1, 8, 8)
    assert _can_send(quantize_static(tiny, calibration))  # slimkit's simulated int8 model
    # a PT2E graph holds local closures: bench times it in the bench process instead
    assert not _can_send(quantize_pt2e(tiny, calibration.numpy(), quantizer="litert-pt2e"))
    assert not _can_send(None)


def test_repeat_stability_lines_count_settings_per_thread_and_flag_unsettled_windows() -> None:
    from slimkit.cli.bench import repeat_stability_lines

    def row(threads: int, gap: float | None, held: bool = True) -> dict[str, object]:
        return {
            "model": "m",
            "runtime": "onnxruntime",
            "precision": "fp32",
            "batch_size": 1,
            "threads": threads,
            "repeat_stability": gap,
            "stable": True,
            "repeat_stable": held,
        }

    rows = [row(1, 0.01), row(1, 0.02), row(2, 0.08, held=False), row(2, 0.03), row(1, None)]
    overall, held, misses = repeat_stability_lines(rows, 0.05)
    assert "3/4 settings under 5% (1 thread: 2/2, 2 threads: 1/2)" in overall
    assert "median 2.5%, max 8.0%" in overall
    assert held.startswith("repeat stability where both windows held still: 3/3 under 5%; 1 ")
    assert misses == "over 5%: m onnxruntime fp32 b1 t2 8.0% (flagged)"
    assert repeat_stability_lines([row(1, None)]) == []  # timed once: nothing to say

"""TFLite Micro: the runtime against LiteRT, the arena probe, the planner, operators, bad input.

Real interpreters on real (digits) data: the int8 file comes from the LiteRT exporter and runs in
both TFLite Micro (reference kernels) and LiteRT (XNNPACK); the arena is checked independently of
the probe, by running the interpreter in fresh child processes written here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ExportError, MissingDependencyError, RuntimeLoadError
from slimkit.export import export, quantize_pt2e
from slimkit.measure import compare_logits
from slimkit.measure.mcu import (
    McuBudgetError,
    _Child,
    check_mcu_budget,
    mcu_memory,
    parse_size,
    plan_activations,
    probe_arena,
    probe_arena_details,
)
from slimkit.runtime import load_runtime, predict_batches, runtime_info
from slimkit.runtime.tflite_graph import read_tflite_graph
from slimkit.runtime.tflite_micro import (
    TFLITE_MICRO_OPERATORS,
    check_operators,
    resolver_method,
)

tflite_micro = pytest.importorskip("tflite_micro", reason="tflite-micro is not installed")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")

# One sample in a fresh interpreter with a given arena: prints "ok" or the error, never crashes
# the test process (a too-small arena can crash this interpreter).
RUN_WITH_ARENA = """
import sys, numpy as np
from tflite_micro import runtime
try:
    interpreter = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
    interpreter.invoke()
    print("ok")
except RuntimeError as error:
    print("error:", error)
"""


def _run_with_arena(path: Path, arena: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITH_ARENA, str(path), str(arena)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def int8_file(trained_lenet: torch.nn.Module, digits: Dataset, tmp_path_factory) -> Path:
    graph = quantize_pt2e(trained_lenet, digits.train.x.numpy()[:256], quantizer="litert-pt2e")
    folder = tmp_path_factory.mktemp("tflm")
    return export(graph, folder / "lenet-int8.tflite", format="tflite", batch_size=1).path


@pytest.fixture(scope="module")
def fp32_file(trained_lenet: torch.nn.Module, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tflm-fp32")
    return export(trained_lenet, folder / "lenet-fp32.tflite", format="tflite", batch_size=1).path


@pytest.fixture(scope="module")
def gelu_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 10)).eval()
    folder = tmp_path_factory.mktemp("tflm-gelu")
    path = folder / "gelu.tflite"
    return export(model, path, format="tflite", input_shape=(1, 8, 8), batch_size=1).path


def test_operator_list_matches_the_installed_build() -> None:
    library = next(Path(tflite_micro.__file__).parent.rglob("_runtime*.so")).read_bytes()
    registered = {m.decode() for m in re.findall(rb"Register_([A-Z0-9_]+)Ev", library)}
    assert registered >= TFLITE_MICRO_OPERATORS
    assert "GELU" not in registered and "GELU" not in TFLITE_MICRO_OPERATORS
    assert resolver_method("CONV_2D") == "AddConv2D"
    assert resolver_method("BATCH_TO_SPACE_ND") == "AddBatchToSpaceNd"
    assert resolver_method("FULLY_CONNECTED") == "AddFullyConnected"


def test_int8_agrees_with_litert_within_one_output_step(int8_file: Path, digits: Dataset) -> None:
    micro = load_runtime("tflite-micro", int8_file)
    assert micro.batch_size == 1 and micro.input_shape == (1, 8, 8)
    assert micro.version() == tflite_micro.__version__
    x = digits.test.x.numpy()  # 360 samples, one invocation each
    reference = predict_batches(load_runtime("litert", int8_file).run, x)
    parity = compare_logits(reference, predict_batches(micro.run, x))
    graph = read_tflite_graph(int8_file)
    step = graph.tensors[graph.outputs[0]].scales[0]  # one step of the int8 output
    # measured: 100% agreement, max |Δ| = one output step (reference kernels round differently)
    assert parity.argmax_agreement >= 0.999
    assert parity.max_abs_diff <= step * 1.0001


def test_fp32_agrees_with_litert(fp32_file: Path, digits: Dataset) -> None:
    x = digits.test.x.numpy()[:64]
    micro = load_runtime("tflite-micro", fp32_file, threads=2)
    parity = compare_logits(load_runtime("litert", fp32_file).run(x), micro.run(x))
    assert parity.max_abs_diff <= 1e-4 and parity.argmax_agreement == 1.0


def test_arena_is_the_smallest_that_runs(int8_file: Path) -> None:
    details = probe_arena_details(int8_file)
    arena = details.arena_bytes
    assert probe_arena(int8_file) == arena  # reproducible
    # independently of the probe, each in a fresh process: runs with it, fails with 16 less
    assert _run_with_arena(int8_file, arena).stdout.strip() == "ok"
    below = _run_with_arena(int8_file, arena - 16)
    assert below.returncode == 0 and below.stdout.startswith("error:"), below
    # the allocation record is where the search starts: operators' temporary memory comes on top
    # (measured here: 5,100 recorded, 5,816 needed)
    assert details.recorded_head_bytes + details.recorded_tail_bytes == details.recorded_bytes
    assert 0 < details.recorded_bytes <= arena
    assert details.fails_cleanly_below


def test_a_far_too_small_arena_stays_in_its_child(int8_file: Path, tmp_path: Path) -> None:
    child = _Child(int8_file, tmp_path, timeout_s=20)
    try:
        reply = child.ask("try", 64)  # crashes this build's interpreter, or fails
    finally:
        child.close()
    assert reply["ok"] is False and reply["error"]
    assert load_runtime("tflite-micro", int8_file).run(np.zeros((1, 1, 8, 8), np.float32)).shape


def test_planner_cross_checks_the_interpreter(int8_file: Path) -> None:
    graph = read_tflite_graph(int8_file)
    plan = plan_activations(graph)
    details = probe_arena_details(int8_file)
    assert plan.peak_live_bytes <= plan.planned_bytes
    # TFLite Micro's greedy plan of the activations (the arena head) and slimkit's agree
    assert plan.planned_bytes == details.recorded_head_bytes
    largest_pair = max(
        sum(
            graph.tensors[t].nbytes
            for t in (*op.inputs, *op.outputs)
            if not graph.tensors[t].constant
        )
        for op in graph.operators
    )
    assert plan.peak_live_bytes >= largest_pair


def test_memory_and_budget(int8_file: Path, fp32_file: Path) -> None:
    memory = mcu_memory(int8_file)
    assert json.loads(json.dumps(memory)) == memory
    assert memory["int8"] is True
    assert memory["flash_bytes"] == memory["model_bytes"] + memory["interpreter_code_bytes"]
    assert memory["model_bytes"] == int8_file.stat().st_size
    assert memory["operators"] == check_operators(read_tflite_graph(int8_file))
    arena, flash = memory["arena_bytes"], memory["flash_bytes"]
    assert check_mcu_budget(memory, ram_bytes=arena, flash_bytes=flash) == memory
    with pytest.raises(McuBudgetError, match=rf"arena {arena:,} bytes > RAM budget {arena - 1:,}"):
        check_mcu_budget(memory, ram_bytes=arena - 1)
    with pytest.raises(McuBudgetError, match=r"flash [\d,]+ bytes > flash budget 16,384 bytes"):
        check_mcu_budget(memory, ram_bytes="32KB", flash_bytes="16KB")
    with pytest.raises(McuBudgetError, match=r"float model .* budget is int8-only; quantize"):
        check_mcu_budget(fp32_file, int8_only=True)
    assert parse_size("32KB") == 32768 and parse_size("1 MiB") == 1 << 20
    with pytest.raises(ValueError, match="32 parsecs"):
        parse_size("32 parsecs")


def test_unsupported_operator_names_layer_and_hint(gelu_file: Path) -> None:
    with pytest.raises(ExportError) as caught:
        check_operators(read_tflite_graph(gelu_file))
    message = str(caught.value)
    assert "\n" not in message
    assert "layer 2 (GELU) uses operator GELU" in message and "hint: replace nn.GELU" in message
    with pytest.raises(RuntimeLoadError, match=r"layer 2 \(GELU\) uses operator GELU"):
        load_runtime("tflite-micro", gelu_file)
    with pytest.raises(ExportError, match="operator GELU"):
        probe_arena(gelu_file)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not-tflite"])
def test_corrupt_file_gets_one_line(damage: str, int8_file: Path, tmp_path: Path) -> None:
    data = int8_file.read_bytes()
    rng = np.random.default_rng(0)
    content = {
        "garbage": data[:8] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "truncated": data[: len(data) // 2],
        "not-tflite": b"PK\x03\x04" + data[4:],
    }[damage]
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    for attempt in (lambda: load_runtime("tflite-micro", path), lambda: probe_arena(path)):
        with pytest.raises(RuntimeLoadError) as caught:
            attempt()
        assert "\n" not in str(caught.value) and "bad.tflite" in str(caught.value)


def test_missing_package_gives_the_install_command(
    int8_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tflite_micro", "tflite_micro.tensorflow.lite.micro.python"):
        monkeypatch.setitem(sys.modules, module, None)  # import of the package now fails
    monkeypatch.setitem(
        sys.modules, "tflite_micro.tensorflow.lite.micro.python.schema_py_generated", None
    )
    with pytest.raises(MissingDependencyError, match=r'pip install "slimkit\[litert\]"'):
        load_runtime("tflite-micro", int8_file)
    assert runtime_info("tflite-micro").runner.install_hint == 'pip install "slimkit[litert]"'

"""The thread policy: counts never above the CPUs this process may use, every pool sized from one
number, no ONNX Runtime pool that spins, OpenMP told to sleep before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit import threads as policy
from slimkit.data import Dataset
from slimkit.errors import ConfigError


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process may use CPUs 0-3 (whatever the machine has), and no count is in effect (an
    earlier test's command may have called use_threads in this process)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(policy, "_current", None)


def test_default_is_every_cpu_this_process_may_use() -> None:
    assert policy.available_cpus() == len(os.sched_getaffinity(0))
    assert policy.resolve_threads() == policy.available_cpus()


def test_never_more_threads_than_cpus(four_cpus: None) -> None:
    assert policy.resolve_threads(1) == 1
    assert policy.resolve_threads(4) == 4
    assert policy.resolve_threads(64) == 4
    with policy.compute_threads(64) as count:
        assert count == 4 and policy.current_threads() == 4


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_count_that_is_not_an_int_of_one_or_more_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads must be an int >= 1"):
        policy.resolve_threads(bad)  # type: ignore[arg-type]


def test_workers_share_the_threads(four_cpus: None) -> None:
    assert policy.threads_per_worker(None, 1) == 4
    assert policy.threads_per_worker(None, 2) == 2
    assert policy.threads_per_worker(4, 3) == 1
    assert policy.threads_per_worker(None, 8) == 1  # at least one each
    with policy.compute_threads(2):
        assert policy.threads_per_worker(None, 2) == 1  # the count in effect is shared


def test_compute_threads_sets_torch_and_restores_it() -> None:
    torch.set_num_threads(policy.available_cpus())
    before = torch.get_num_threads()
    with policy.compute_threads(1) as count:
        assert count == 1 and torch.get_num_threads() == 1
        with policy.compute_threads() as inner:  # None: the enclosing count, not every CPU
            assert inner == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert policy.current_threads() == policy.available_cpus()


def test_training_runs_on_the_configured_threads(digits: Dataset) -> None:
    from slimkit.models import create_model
    from slimkit.train import Callback, TrainConfig, train

    seen: list[int] = []

    class Record(Callback):
        def on_epoch_start(self, state: object) -> None:
            seen.append(torch.get_num_threads())

    torch.set_num_threads(policy.available_cpus())
    model = create_model("mlp", input_shape=(1, 8, 8), hidden=[8])
    train(model, digits, TrainConfig(epochs=1, threads=1, seed=0), callbacks=[Record()])
    assert seen == [1]
    assert torch.get_num_threads() == policy.available_cpus()  # given back afterwards


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [64, 10], np.random.default_rng(0).normal(size=640).tolist()
    )
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("threads", [1, 2])
def test_onnxruntime_sessions_have_the_count_and_never_spin(threads: int, tmp_path: Path) -> None:
    """A real InferenceSession, as the runner builds it: its own options say what it runs with."""
    from slimkit.runtime import load_runtime

    runner = load_runtime("onnxruntime", _tiny_onnx(tmp_path / "m.onnx"), threads=threads)
    options = runner.session.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    out = runner.run(np.zeros((3, 1, 8, 8), dtype=np.float32))
    assert out.shape == (3, 10)


def test_onnxruntime_options_without_a_count_follow_the_policy() -> None:
    import onnxruntime

    with policy.compute_threads(1):
        assert policy.onnxruntime_options(onnxruntime).intra_op_num_threads == 1
    explicit = policy.onnxruntime_options(onnxruntime, 3)  # a count being measured: kept
    assert explicit.intra_op_num_threads == 3


def test_optimized_op_types_session_follows_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export's own ONNX Runtime session (graph optimisation) is made by the policy too."""
    import onnxruntime

    from slimkit.export.onnx_qdq import optimized_op_types

    made: list[object] = []
    real = onnxruntime.InferenceSession

    def recording(path: str, options: object, **kwargs: object) -> object:
        made.append(options)
        return real(path, options, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    with policy.compute_threads(1):
        assert optimized_op_types(_tiny_onnx(tmp_path / "m.onnx"))["MatMul"] == 1
    (options,) = made
    assert options.intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tiny_mlp() -> torch.nn.Module:
    from slimkit.models import create_model

    torch.manual_seed(0)
    return create_model("mlp", input_shape=(1, 8, 8), hidden=[16]).eval()


@pytest.mark.slow
def test_litert_interpreter_is_made_with_the_count(
    tiny_mlp: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    from slimkit.export import export
    from slimkit.runtime import load_runtime

    path = export(tiny_mlp, tmp_path / "m.tflite", format="tflite", batch_size=1).path
    counts: list[int] = []

    class Recording(interpreter.Interpreter):  # type: ignore[misc,name-defined]
        def __init__(self, *args: object, **kwargs: object) -> None:
            counts.append(int(kwargs.get("num_threads", -1)))  # type: ignore[call-overload]
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(interpreter, "Interpreter", Recording)
    runner = load_runtime("litert", path, threads=2)
    assert counts[-1] == 2  # the runner's interpreter (an earlier one checks the file, 1 thread)
    assert runner.run(np.zeros((1, 1, 8, 8), dtype=np.float32)).shape == (1, 10)


@pytest.mark.slow
def test_executorch_pool_is_sized_to_the_count(tiny_mlp: torch.nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("executorch.runtime")
    from slimkit.export import export
    from slimkit.runtime import load_runtime
    from slimkit.runtime.executorch import _threadpool

    path = export(tiny_mlp, tmp_path / "m.pte", format="pte", batch_size=1).path
    for threads in (1, 2):
        runner = load_runtime("executorch", path, threads=threads)
        assert _threadpool()._threadpool_get_thread_count() == threads
        assert runner.run(np.zeros((1, 1, 8, 8), dtype=np.float32)).shape == (1, 10)


def test_a_policy_the_user_chose_is_kept(tmp_path: Path) -> None:
    code = (
        "import os; os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'; "
        "from slimkit.threads import prefer_passive_waiting; prefer_passive_waiting(); "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "ACTIVE"

"""Corrupt model files that crashed a native runtime (found by the fuzz suite, ``tests/fuzz``) are
refused by slimkit in one line before the runtime sees them.

Each file is loaded in a child process, so that the old behaviour (a segfault or an abort of the
whole process) shows as the child's exit status instead of ending the test run.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from slimkit.errors import RuntimeLoadError
from slimkit.export import export
from slimkit.models import create_model
from slimkit.runtime import load_runtime, runtime_info

SHAPE = (1, 8, 8)

# Load a file and run one batch of zeros; print the outcome. Never imported by the tests.
LOAD = """
import sys
import numpy as np
from slimkit.errors import SlimkitError
from slimkit.runtime import load_runtime
try:
    runner = load_runtime(sys.argv[1], sys.argv[2])
    runner.run(np.zeros((runner.batch_size or 1, *runner.input_shape), np.float32))
    print("ran")
except SlimkitError as error:
    print(f"{type(error).__name__}: {error}")
"""


def _load_in_child(runtime: str, path: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, runtime, str(path)],
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hang, not a speed check
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, lines[-1] if lines else ""


def _skip_without(runtime: str) -> None:
    runner = runtime_info(runtime).runner
    if not runner.available():
        pytest.skip(f"{runtime} is not installed ({runner.install_hint})")


def _model(name: str = "mlp", **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, input_shape=SHAPE, **kwargs).eval()  # type: ignore[arg-type]


def _rewrite_tflite(source: Path, target: Path, change: str) -> Path:
    """``source`` with one field of its flatbuffer changed, written with the TFLite schema."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(source.read_bytes(), 0))
    graph = model.subgraphs[0]
    if change == "output index":
        graph.outputs = [131080]  # a subgraph of 9 tensors
    else:  # a weight whose buffer holds half its bytes
        sizes = [
            0 if model.buffers[t.buffer].data is None else len(model.buffers[t.buffer].data)
            for t in graph.tensors
        ]
        tensor = graph.tensors[sizes.index(max(sizes))]
        buffer = model.buffers[tensor.buffer]
        buffer.data = buffer.data[: len(buffer.data) // 2]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))
    return target


@pytest.mark.parametrize("change", ["output index", "short buffer"])
def test_tflite_micro_refuses_a_corrupt_graph(change: str, tmp_path: Path) -> None:
    """TFLite Micro trusts its model: an output index out of range segfaulted it; a weight buffer
    shorter than its tensor ran on whatever memory followed."""
    _skip_without("tflite-micro")
    _skip_without("litert")
    good = export(_model(hidden=[16]), tmp_path / "m.tflite", format="tflite", batch_size=1).path
    assert _load_in_child("tflite-micro", good) == (0, "ran")
    bad = _rewrite_tflite(good, tmp_path / "bad.tflite", change)
    code, line = _load_in_child("tflite-micro", bad)
    assert code == 0, f"the child died with status {code}"
    assert line.startswith("RuntimeLoadError: tflite-micro:") and str(bad) in line


def test_executorch_refuses_a_named_key_that_is_not_utf8(tmp_path: Path) -> None:
    """A constant's named key in the XNNPACK payload, corrupted to invalid UTF-8: ExecuTorch's
    verifier passed it, its bindings raised inside C++ while logging it, and the process aborted."""
    _skip_without("executorch")
    good = export(
        _model("lenet5", channels=[4, 8], hidden=[16, 12]), tmp_path / "m.pte", format="pte"
    )
    data = bytearray(good.path.read_bytes())
    payload = data.find(b"XH00")  # the XNNPACK payload's header
    key = re.compile(rb"[0-9a-f]{64}").search(bytes(data), payload)
    assert payload > 0 and key is not None
    data[key.start()] = 0xFF
    bad = tmp_path / "bad.pte"
    bad.write_bytes(bytes(data))
    code, line = _load_in_child("executorch", bad)
    assert code == 0, f"the child died with status {code}"
    assert line.startswith("RuntimeLoadError: executorch:") and "UnicodeDecodeError" in line
    assert _load_in_child("executorch", good.path) == (0, "ran")


def _widen_a_kernel(data: bytes) -> bytes:
    """``data`` with its first convolution's kernel width 5 → 262149 (its weight unchanged), set
    in place in the XNNPACK payload's XNNGraph (schema ``backends/xnnpack/serialization``)."""
    from flatbuffers import number_types as types
    from flatbuffers import table

    changed = bytearray(data)
    header = changed.find(b"XH00") - 4  # the XNNHeader: magic at 4, flatbuffer offset at 10
    (offset,) = struct.unpack("<I", changed[header + 10 : header + 14])
    (root,) = struct.unpack("<I", changed[header + offset : header + offset + 4])
    graph = table.Table(changed, header + offset + root)
    nodes = graph.Offset(4 + 2 * 1)  # XNNGraph field 1: xnodes
    for i in range(graph.VectorLen(nodes)):
        node = table.Table(changed, graph.Indirect(graph.Vector(nodes) + 4 * i))
        kind = node.Get(types.Uint8Flags, node.Pos + node.Offset(4))  # XNode: union type, union
        if kind in (7, 13):  # XNNConv2d, XNNDepthwiseConv2d: both an _XNNNodeConv
            conv = table.Table(changed, node.Indirect(node.Pos + node.Offset(6)))
            width = conv.Pos + conv.Offset(4 + 2 * 5)  # field 5: kernel_width
            assert conv.Get(types.Uint32Flags, width) == 5
            struct.pack_into("<I", changed, width, 262149)
            return bytes(changed)
    raise AssertionError("the program has no convolution")


def _drop_delegate_arguments(data: bytes) -> bytes:
    """``data`` with its XNNPACK delegate called with no arguments (rewritten by ExecuTorch's own
    serializer)."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    pte = deserialize_pte_binary(data)
    for chain in pte.program.execution_plan[0].chains:
        for instruction in chain.instructions:
            if type(instruction.instr_args).__name__ == "DelegateCall":
                instruction.instr_args.args = []
    return bytes(serialize_pte_binary(pte))


@pytest.mark.parametrize("change", ["kernel width", "delegate arguments"])
def test_executorch_refuses_a_file_that_crashes_it(change: str, tmp_path: Path) -> None:
    """Corrupt files that pass every check slimkit can make in Python and crash the process
    that runs them (found by the fuzz soak): a convolution whose kernel width no longer matches
    its weight (SIGBUS at load), a delegate call without its arguments (SIGSEGV in execute).
    The runner tries them in a probe process first: one line naming the file and the signal."""
    _skip_without("executorch")
    model = _model("lenet5", channels=[4, 8], hidden=[16, 12])
    good = export(model, tmp_path / "m.pte", format="pte").path
    corrupt = _widen_a_kernel if change == "kernel width" else _drop_delegate_arguments
    bad = tmp_path / "bad.pte"
    bad.write_bytes(corrupt(good.read_bytes()))
    code, line = _load_in_child("executorch", bad)
    assert code == 0, f"the child died with status {code}"
    assert line.startswith(f"RuntimeLoadError: executorch: {bad} crashed ExecuTorch (SIG"), line
    assert "corrupt or made for another ExecuTorch version" in line
    assert _load_in_child("executorch", good) == (0, "ran")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "corrupt slimkit.model_spec"),
        (
            '{"name": "mlp", "input_shape": [1, 8, 8, 8, 8], "num_classes": 10}',
            "corrupt slimkit.model_spec",
        ),
    ],
)
def test_onnx_with_corrupt_slimkit_metadata(value: str, message: str, tmp_path: Path) -> None:
    path = export(_model(), tmp_path / "m.onnx").path
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"slimkit.model_spec": value})
    onnx.save(proto, str(path))
    with pytest.raises(RuntimeLoadError, match=message) as caught:
        load_runtime("onnxruntime", path)
    assert len(str(caught.value).splitlines()) == 1


def test_onnx_metadata_that_is_not_utf8(tmp_path: Path) -> None:
    path = export(_model(), tmp_path / "m.onnx").path
    data = path.read_bytes()
    marker = b"slimkit.input_shape"
    at = data.find(marker)
    assert at > 0
    corrupt = data[:at] + b"\xff" + data[at + 1 :]  # the key itself, same length
    path.write_bytes(corrupt)
    with pytest.raises(RuntimeLoadError, match="not UTF-8"):
        load_runtime("onnxruntime", path)


def test_onnx_records_the_spec_it_was_exported_from(tmp_path: Path) -> None:
    model = _model(hidden=[16])
    runner = load_runtime("onnxruntime", export(model, tmp_path / "m.onnx").path)
    assert runner.model_spec == model.slimkit_spec.to_dict()  # type: ignore[union-attr, operator]

"""Fuzz targets for model files given to ``slimkit measure`` and ``slimkit bench``.

Seeds are real small files exported by slimkit from seeded models on 8x8 inputs: an MLP in fp32
and a small LeNet-5 in slimkit's static int8, as ``.onnx`` (QDQ for int8), ``.tflite`` (LiteRT)
and ``.pte`` (ExecuTorch with XNNPACK). Inputs are byte mutations of them (flatbuffer offsets and
sizes nudged, ranges moved between files, truncations) and random bytes.

The check does what ``measure`` does with a file: tell its runtime by suffix, read the reference
and data recorded in it, load it through :func:`slimkit.runtime.load_runtime`, and run one batch
of zeros. A native runtime that crashes on a file shows up as a crash of the harness's child.
ExecuTorch's runner tries every new file in a probe process first (``slimkit.runtime.pte_probe``):
a file that crashes the probe must come back as a clean error here.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuzzlib import Input, Target, expect_clean, mutate_bytes, random_bytes, soak_inputs

SHAPE = (1, 8, 8)


@functools.lru_cache(maxsize=4)
def _exported(folder: str) -> dict[str, list[bytes]]:
    """Every seed file by suffix, exported once per folder."""
    import torch

    from slimkit.data import load_dataset
    from slimkit.export import export
    from slimkit.models import create_model
    from slimkit.runtime import runtime_info
    from slimkit.techniques import compress, config_from_dict

    data = load_dataset("digits")
    torch.manual_seed(0)
    mlp = create_model("mlp", input_shape=SHAPE, hidden=[16]).eval()
    lenet = create_model("lenet5", input_shape=SHAPE, channels=[4, 8], hidden=[16, 12]).eval()
    int8 = compress(lenet, [config_from_dict({"technique": "static_int8"})], data=data)
    jobs = [("onnx", "onnxruntime"), ("tflite", "litert"), ("pte", "executorch")]
    found: dict[str, list[bytes]] = {}
    for fmt, runtime in jobs:
        if not runtime_info(runtime).runner.available():
            continue
        for stem, model in (("mlp", mlp), ("lenet5-int8", int8)):
            extra = {} if fmt == "onnx" else {"batch_size": 1}
            path = Path(folder) / f"{stem}.{fmt}"
            export(model, path, format=fmt, input_shape=SHAPE, **extra)
            found.setdefault(fmt, []).append(path.read_bytes())
    return found


def _seeds(fmt: str) -> Any:
    def seeds(folder: Path) -> list[Input]:
        return list(_exported(str(folder)).get(fmt, []))

    return seeds


def generate_model_file(rng: Any, seeds: Sequence[Input]) -> Input:
    """A seed with 1-4 mutations (most inputs), a seed with many, or random bytes."""
    roll = rng.random()
    if roll < 0.8:
        return mutate_bytes(rng, rng.choice(seeds), seeds)
    if roll < 0.97:
        return mutate_bytes(rng, rng.choice(seeds), seeds, max_steps=16)
    return random_bytes(rng, rng.randint(0, 512))


def pte_regressions(seeds: Sequence[Input]) -> list[Input]:
    """A constant's named key in the XNNPACK payload made invalid UTF-8 (the bindings raised
    inside C++ while logging it, and the process aborted); and soak inputs that crashed the
    process before the probe (a depthwise convolution's kernel width 5 → 262149: SIGBUS at load;
    a delegate call without its arguments, a fully connected node without its values: SIGSEGV or
    ``malloc(): invalid size`` during execute)."""
    found = soak_inputs(
        "pte",
        generate_model_file,
        [(0, 3506), (1, 180), (1, 2287), (1, 3346), (1, 6469), (1, 7496)],
    )(seeds)
    for seed in seeds:
        data = bytearray(seed)
        key = re.compile(rb"[0-9a-f]{64}").search(bytes(data), max(data.find(b"XH00"), 0))
        if key is not None:
            data[key.start()] = 0xFF
            found.append(bytes(data))
    return found


def tflite_regressions(seeds: Sequence[Input]) -> list[Input]:
    """A subgraph output index out of range (TFLite Micro segfaulted), a weight buffer half its
    tensor's size (TFLite Micro read past it), and an activation stored with another shape than
    its operator computes (SIGFPE), made with the TFLite schema."""
    try:
        import flatbuffers
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:  # the schema ships with tflite-micro
        return []
    found = []
    for change in ("output index", "short buffer", "activation shape"):
        seed = seeds[-1] if change == "activation shape" else seeds[0]  # the int8 LeNet-5
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(seed, 0))
        graph = model.subgraphs[0]
        if change == "output index":
            graph.outputs = [131080]
        elif change == "activation shape":  # a pooled activation stored with 65,028 channels
            pooled = graph.operators[2].outputs[0]
            graph.tensors[pooled].shape = [*graph.tensors[pooled].shape[:-1], 65028]
        else:
            datas = [model.buffers[t.buffer].data for t in graph.tensors]
            sizes = [0 if data is None else len(data) for data in datas]
            buffer = model.buffers[graph.tensors[sizes.index(max(sizes))].buffer]
            buffer.data = buffer.data[: len(buffer.data) // 2]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        found.append(bytes(builder.Output()))
    return found


def _check(suffix: str, runtime: str | None) -> Any:
    def check(data: Input, tmp: Path) -> str:
        """Load the file as ``measure`` does and run a batch of zeros."""
        import numpy as np

        from slimkit.cli.measure import reference_checkpoint, runtime_for
        from slimkit.cli.options import data_config_of
        from slimkit.runtime import load_runtime, pte_probe

        # the probe's own hang guard answers within the harness's (30 s by default)
        pte_probe.TIMEOUT_S = 20.0
        path = tmp / f"model{suffix}"
        path.write_bytes(data)
        with expect_clean() as verdict:
            name = runtime or runtime_for(path)
            reference_checkpoint(path, None)
            data_config_of(path)
            runner = load_runtime(name, path, threads=1)
            shape = runner.input_shape or SHAPE
            batch = runner.batch_size or 2
            if math.prod(shape) * batch <= 1 << 22:
                runner.run(np.zeros((batch, *shape), dtype=np.float32))
        return verdict[0]

    return check


TARGETS = [
    Target(
        "onnx",
        ".onnx in ONNX Runtime (fp32 and int8 QDQ)",
        _seeds("onnx"),
        generate_model_file,
        _check(".onnx", None),
        requires=("onnxruntime", "onnx"),
    ),
    Target(
        "tflite",
        ".tflite in LiteRT (fp32 and int8)",
        _seeds("tflite"),
        generate_model_file,
        _check(".tflite", None),
        requires=("ai_edge_litert", "litert_torch"),
        # soak --seed 1: a reshape into a fixed-size tensor (XNNPACK skipped the check and
        # segfaulted on invoke), names that are not UTF-8, an empty shape signature
        regressions=lambda seeds: (
            tflite_regressions(seeds)
            + soak_inputs("tflite", generate_model_file, [(1, 4135), (1, 921), (1, 2143)])(seeds)
        ),
    ),
    Target(
        "tflite_micro",
        ".tflite in TFLite Micro (fp32 and int8)",
        _seeds("tflite"),
        generate_model_file,
        _check(".tflite", "tflite-micro"),
        requires=("tflite_micro", "litert_torch"),
        regressions=tflite_regressions,
    ),
    Target(
        "pte",
        ".pte in ExecuTorch (fp32 and int8, XNNPACK)",
        _seeds("pte"),
        generate_model_file,
        _check(".pte", None),
        requires=("executorch",),
        regressions=pte_regressions,
    ),
]

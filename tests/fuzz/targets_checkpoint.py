"""Fuzz target for slimkit checkpoints (safetensors with slimkit's metadata).

Seeds are real checkpoints of small models (an MLP, LeNet-5, a MobileNet with batch norms) with a
recorded data spec. Inputs change the metadata (the model spec's fields given wrong types, huge
sizes, other models' arguments; ``extra`` and the format markers replaced by random JSON or
malformed text), the tensor table of the header (shapes, dtypes, offsets, names), or the bytes of
the file (mutations, truncations), or are random bytes.

The check does what ``slimkit measure model.safetensors`` does first: tell the runtime, find the
data spec in the metadata, load the checkpoint (its memory bounded by the file's size: item 12 of
issue #18) and run a batch of zeros through it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fuzzlib import (
    Input,
    Target,
    expect_clean,
    memory_bound,
    mutate_bytes,
    random_bytes,
    random_json,
    random_json_text,
)

DATA = {"source": "digits", "path": None, "seed": 0, "val_fraction": 0.1}
MODELS: tuple[tuple[str, tuple[int, int, int], dict[str, Any]], ...] = (
    ("mlp", (1, 8, 8), {"hidden": [16]}),
    ("lenet5", (1, 8, 8), {"channels": [4, 8], "hidden": [16, 12]}),
    ("mobilenet_v1_small", (1, 8, 8), {}),
)


def checkpoint_seeds(folder: Path) -> list[Input]:
    """Checkpoints of three small models (seeded weights), each with a data spec."""
    import torch

    from slimkit.models import create_model
    from slimkit.train import save_checkpoint

    seeds = []
    for name, shape, kwargs in MODELS:
        torch.manual_seed(0)
        model = create_model(name, input_shape=shape, num_classes=10, **kwargs)
        path = save_checkpoint(model, folder / f"{name}.safetensors", metadata={"data": DATA})
        seeds.append(path.read_bytes())
    return seeds


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file → (header JSON, tensor bytes)."""
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join(header: dict[str, Any] | str, body: bytes) -> bytes:
    """(header JSON or its text, tensor bytes) → a safetensors file (header padded to 8 bytes,
    as safetensors writes it)."""
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogatepass")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _mutate_spec(rng: Any, spec: dict[str, Any]) -> Any:
    """The model spec with one field wrong: a random JSON value, a plausible but wrong size,
    a key left out or added, or the whole spec replaced."""
    roll = rng.random()
    key = rng.choice(("name", "input_shape", "num_classes", "kwargs"))
    if roll < 0.1:
        return random_json(rng)
    if roll < 0.2:
        spec.pop(key, None)
    elif roll < 0.3:
        spec[rng.choice(("extra", "weights", ""))] = random_json(rng)
    elif roll < 0.6:
        spec[key] = random_json(rng)
    elif key == "name":
        spec["name"] = rng.choice(("mlp", "lenet5", "lenet300_100", "mobilenet_v2", "vit_small"))
    elif key == "input_shape":
        spec["input_shape"] = [rng.choice((1, 3, 8, 28, 2**16, 2**20)) for _ in range(3)]
    elif key == "num_classes":
        spec["num_classes"] = rng.choice((1, 2, 11, 1000, 2**24, 2**40))
    else:
        width = rng.choice((1, 16, 4096, 4_000_000, -1, 0))
        spec["kwargs"] = rng.choice(
            (
                {"hidden": [width]},
                {"hidden": [width] * rng.choice((2, 100, 5000))},
                {"channels": [width, width], "hidden": [16, 12]},
                {"width_multiplier": rng.choice((0.5, 2.0, 1e9, -1.0))},
                {"depth_multiplier": rng.choice((0.5, 3.0, 1e9))},
            )
        )
    return spec


def _mutate_metadata(rng: Any, header: dict[str, Any]) -> dict[str, Any]:
    """The header with its ``__metadata__`` changed: the spec, ``extra`` or a format marker."""
    meta = dict(header.get("__metadata__", {}))
    roll = rng.random()
    if roll < 0.6:
        spec = _mutate_spec(rng, json.loads(meta["model_spec"]))
        meta["model_spec"] = json.dumps(spec) if rng.random() < 0.9 else random_json_text(rng)
    elif roll < 0.8:
        extra = rng.choice(({"data": random_json(rng)}, random_json(rng)))
        meta["extra"] = json.dumps(extra) if rng.random() < 0.8 else random_json_text(rng)
    else:
        key = rng.choice(("slimkit.format", "slimkit.version", "model_spec", "extra"))
        if rng.random() < 0.5:
            meta.pop(key, None)
        else:
            meta[key] = rng.choice(("", "2", "slimkit.checkpoint", "1", random_json_text(rng)))
    return {**header, "__metadata__": meta}


def _mutate_table(rng: Any, header: dict[str, Any]) -> dict[str, Any]:
    """The header with one tensor's entry changed: shape, dtype, offsets or name."""
    names = [name for name in header if name != "__metadata__"]
    if not names:
        return header
    name = rng.choice(names)
    entry = dict(header[name])
    roll = rng.random()
    if roll < 0.3:
        shape = list(entry["shape"])
        if shape and rng.random() < 0.7:
            shape[rng.randint(0, len(shape) - 1)] = rng.choice((0, 1, 2, 2**31, 2**40, 4000000))
        else:
            shape = rng.choice(([], [1], [*shape, 1], shape[::-1]))
        entry["shape"] = shape
    elif roll < 0.5:
        entry["dtype"] = rng.choice(("F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "X9"))
    elif roll < 0.8:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = [begin + rng.choice((0, -4, 4)), end + rng.choice((0, -4, 4))]
    else:
        header = {k: v for k, v in header.items() if k != name}
        name = rng.choice((name + ".x", "", "layers.9.weight", name.upper()))
    return {**header, name: entry}


def generate_checkpoint(rng: Any, seeds: Sequence[Input]) -> Input:
    """One checkpoint file: metadata or tensor table mutated, bytes mutated, or random bytes."""
    seed = rng.choice(seeds)
    roll = rng.random()
    if roll < 0.75:
        header, body = split(seed)
        header = _mutate_metadata(rng, header) if roll < 0.55 else _mutate_table(rng, header)
        return join(header, body)
    if roll < 0.95:
        return mutate_bytes(rng, seed, seeds)
    return random_bytes(rng, rng.randint(0, 256))


def checkpoint_regressions(seeds: Sequence[Input]) -> list[Input]:
    """The reproducers of issue #18: a spec that is not a mapping, ``extra`` that is not one, a
    shape that is not integers, ``num_classes: 2**40`` (can't allocate), ``hidden: [4000000]``
    (a 1.2 GB model built before the weights were checked), a kwarg named ``name``."""
    header, body = split(seeds[0])
    spec = json.loads(header["__metadata__"]["model_spec"])
    changes = [
        {"model_spec": "[1, 2]"},
        {"extra": "[1]"},
        {"model_spec": json.dumps({**spec, "input_shape": ["a", 8, 8]})},
        {"model_spec": json.dumps({**spec, "num_classes": 2**40})},
        {"model_spec": json.dumps({**spec, "kwargs": {"hidden": [4_000_000]}})},
        {"model_spec": json.dumps({**spec, "kwargs": {"name": "lenet5"}})},
    ]
    return [
        join({**header, "__metadata__": {**header["__metadata__"], **c}}, body) for c in changes
    ]


def check_checkpoint(data: Input, tmp: Path) -> str:
    """What ``slimkit measure model.safetensors`` does first, memory bounded by the file."""
    import numpy as np

    from slimkit.cli.measure import reference_checkpoint, runtime_for
    from slimkit.cli.options import data_config_of
    from slimkit.runtime import load_runtime

    path = tmp / "model.safetensors"
    path.write_bytes(data)
    with expect_clean() as verdict:
        # 128 MiB of slack: the first build of a model kind in a process (vit_small's first
        # skeleton took 71 MiB, once); what the bound catches is a model built from its spec
        # alone, gigabytes for a file of kilobytes
        with memory_bound((128 << 20) + 16 * len(data), "loading the checkpoint"):
            runtime = runtime_for(path)
            reference_checkpoint(path, None)
            data_config_of(path)
            runner = load_runtime(runtime, path, threads=1)
        shape = runner.input_shape or (1, 8, 8)
        if math.prod(shape) <= 1 << 20:
            runner.run(np.zeros((2, *shape), dtype=np.float32))
    return verdict[0]


TARGETS = [
    Target(
        "checkpoint",
        "a slimkit checkpoint (.safetensors: metadata, tensor table, bytes)",
        checkpoint_seeds,
        generate_checkpoint,
        check_checkpoint,
        requires=("safetensors",),
        ci_examples=60,
        regressions=checkpoint_regressions,
    )
]

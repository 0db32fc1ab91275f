"""Architectures benchmark: LeNet-5, MobileNet-style CNNs and a small ViT on MNIST, measured in
ONNX Runtime; and the latency of linear against softmax attention over sequence lengths.

Every model gets the same training budget (epochs, batch size, cosine schedule, label smoothing;
the CNNs SGD with momentum, the transformer AdamW, each family's usual optimizer), then is exported
to ONNX, checked for parity with PyTorch on the whole test split, and measured for test accuracy
and p50 latency at batch 1 and 64 (1 thread). Models that no other model beats on both accuracy and
latency are marked as the frontier. The attention curve times ``sequence_transformer`` (one token
per value) with each kernel at growing sequence lengths. Prints one table and writes JSON.

    python benchmarks/architectures.py                 # MNIST from ../shared/data/mnist
    python benchmarks/architectures.py --mnist PATH --epochs 15 --out results/architectures.json

Checkpoints are kept in the output folder; ``--reuse`` measures them again without retraining.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit.data import load_dataset
from slimkit.export import export
from slimkit.io import write_json_atomic
from slimkit.measure import (
    LatencyConfig,
    MeasureRecord,
    count_costs,
    describe_cpu,
    environment,
    measure,
    measure_latency,
)
from slimkit.models import create_model
from slimkit.report import markdown_table
from slimkit.runtime import load_runtime
from slimkit.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"

# (label, registered model, builder arguments)
MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("lenet5", "lenet5", {}),
    ("mobilenet_v1_small-0.25", "mobilenet_v1_small", {"width_multiplier": 0.25}),
    ("mobilenet_v1_small-0.5", "mobilenet_v1_small", {"width_multiplier": 0.5}),
    ("mobilenet_v1_small-1.0", "mobilenet_v1_small", {"width_multiplier": 1.0}),
    ("mobilenet_v2_small-0.5", "mobilenet_v2_small", {"width_multiplier": 0.5}),
    ("vit_small-p7", "vit_small", {"patch_size": 7, "attention": "softmax"}),
]
TRANSFORMERS = ("vit_small", "sequence_transformer")
MOBILENETS = ("mobilenet_v1_small", "mobilenet_v2_small")
ACCURACY_TARGET = 0.990
SEQUENCE_LENGTHS = (64, 256, 1024, 4096)


def recipe(model_name: str, epochs: int) -> TrainConfig:
    """The training budget every model gets; CNNs use SGD, transformers AdamW."""
    if model_name in TRANSFORMERS:
        optimizer, lr, weight_decay = "adamw", 3e-3, 0.05
    else:
        optimizer, lr, weight_decay = "sgd", 0.1, 5e-4
    return TrainConfig(
        epochs=epochs,
        batch_size=128,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        label_smoothing=0.1,
        seed=0,
        threads=1,  # on a shared 2-core machine, 2 OpenMP threads can be 50x slower, not faster
    )


def frontier(points: list[tuple[float, float]]) -> list[bool]:
    """Which ``(accuracy, latency)`` points no other point beats on both (ties do not beat)."""
    return [
        not any(
            (a2 >= a and t2 <= t) and (a2 > a or t2 < t)
            for j, (a2, t2) in enumerate(points)
            if j != i
        )
        for i, (a, t) in enumerate(points)
    ]


def train_or_reuse(
    label: str,
    name: str,
    kwargs: dict[str, Any],
    data: Any,
    config: TrainConfig,
    folder: Path,
    reuse: bool,
) -> tuple[torch.nn.Module, float | None]:
    """Train one model (or load its checkpoint with ``--reuse``); returns it and the seconds."""
    checkpoint = folder / f"{label}.safetensors"
    if reuse and checkpoint.is_file():
        return load_checkpoint(checkpoint).model, None
    torch.manual_seed(config.seed)  # initialisation uses the global generator
    model = create_model(name, input_shape=data.input_shape, num_classes=data.num_classes, **kwargs)
    started = time.perf_counter()
    model.to(memory_format=torch.channels_last)  # PyTorch's fast depthwise kernels on the CPU
    train(model, data, config)
    model.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - started
    save_checkpoint(
        model, checkpoint, metadata={"data": data.config.to_dict(), "train": config.to_dict()}
    )
    return model, seconds


def attention_curve(folder: Path, budget: float) -> list[dict[str, Any]]:
    """MACs and ONNX Runtime p50 latency (batch 1, 1 thread) per kernel and sequence length."""
    rows = []
    latency = LatencyConfig(warmup=3, min_repeats=10, time_budget_s=budget)
    for attention in ("linear", "softmax"):
        for length in SEQUENCE_LENGTHS:
            shape = (1, 1, length)
            model = create_model(
                "sequence_transformer", input_shape=shape, attention=attention
            ).eval()
            macs = count_costs(model, shape).macs
            path = export(model, folder / f"sequence-{attention}-{length}.onnx").path
            runner = load_runtime("onnxruntime", path, threads=1)
            x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
            stats = measure_latency(runner.run, x, threads=1, config=latency)
            rows.append(
                {"attention": attention, "length": length, "macs": macs, "p50_ms": stats.p50_ms}
            )
            print(f"  {attention} attention, L={length}: {stats.p50_ms:.3f} ms", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST folder")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "architectures.json"
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of every model")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per setting")
    parser.add_argument("--reuse", action="store_true", help="reuse checkpoints of an earlier run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    folder = args.out.parent / "architectures"
    print(f"CPU: {describe_cpu()}", flush=True)
    data = load_dataset(f"mnist:{args.mnist}", seed=0)

    records: list[MeasureRecord] = []
    runs: list[dict[str, Any]] = []
    for label, name, kwargs in MODELS:
        config = recipe(name, args.epochs)
        model, seconds = train_or_reuse(label, name, kwargs, data, config, folder, args.reuse)
        accuracy = evaluate(model, data.test)[1]
        took = f"trained in {seconds:.0f} s" if seconds is not None else "reused"
        print(f"{label}: test accuracy {100 * accuracy:.2f}% ({took})", flush=True)
        onnx_path = export(model, folder / f"{label}.onnx").path
        record = measure(
            onnx_path,
            data,
            runtime="onnxruntime",
            batch_sizes=(1, 64),
            threads=(1,),
            reference=model,
            latency=LatencyConfig(time_budget_s=args.budget),
            name=label,
        )
        records.append(record)
        runs.append(
            {
                "label": label,
                "model": name,
                "kwargs": kwargs,
                "train": config.to_dict(),
                "train_seconds": seconds,
            }
        )

    points = {
        batch: [(r.accuracy, r.latency_for(batch, 1).p50_ms) for r in records]  # type: ignore[union-attr]
        for batch in (1, 64)
    }
    on_frontier = {batch: frontier(p) for batch, p in points.items()}
    header = ["model", "acc", "params", "MACs", "b1 ms", "b64 ms", "max|Δ|", "frontier"]
    table = []
    for i, record in enumerate(records):
        marks = [f"b{batch}" for batch in (1, 64) if on_frontier[batch][i]]
        table.append(
            [
                record.name,
                f"{100 * record.accuracy:.2f}%",
                f"{record.params:,}",
                f"{record.macs:,}",
                f"{points[1][i][1]:.3f}",
                f"{points[64][i][1]:.3f}",
                f"{record.parity.max_abs_diff:.1e}" if record.parity else "-",
                " ".join(f"*{m}" for m in marks) or "",
            ]
        )
        runs[i] |= {"frontier_b1": on_frontier[1][i], "frontier_b64": on_frontier[64][i]}

    print("\nattention latency over sequence length (sequence_transformer, ONNX Runtime):")
    curve = attention_curve(folder, args.budget)

    lenet_macs = next(r.macs for r in records if r.name == "lenet5")
    winners = [
        r.name
        for r, run in zip(records, runs, strict=True)
        if run["model"] in MOBILENETS
        and r.accuracy >= ACCURACY_TARGET
        and (r.macs or 0) < (lenet_macs or 0)
    ]
    parity_ok = all(r.parity is not None and r.parity.passes(atol=1e-4) for r in records)

    print()
    print(
        f"MNIST, {args.epochs} epochs each on 1 thread (batch 128, cosine, label smoothing 0.1; "
        "CNNs SGD lr 0.1, ViT AdamW lr 3e-3); ONNX Runtime p50 ms per batch, 1 thread; frontier: "
        "no other model is both at least as accurate and at least as fast"
    )
    print(markdown_table(header, table))
    print()
    curve_header = ["L", *[f"{a} MACs" for a in ("linear", "softmax")]]
    curve_header += [f"{a} ms" for a in ("linear", "softmax")]
    curve_rows = []
    for length in SEQUENCE_LENGTHS:
        by = {row["attention"]: row for row in curve if row["length"] == length}
        curve_rows.append(
            [
                str(length),
                f"{by['linear']['macs']:,}",
                f"{by['softmax']['macs']:,}",
                f"{by['linear']['p50_ms']:.3f}",
                f"{by['softmax']['p50_ms']:.3f}",
            ]
        )
    print(markdown_table(curve_header, curve_rows))
    growth = {
        a: next(r["p50_ms"] for r in curve if r["attention"] == a and r["length"] == 4096)
        / next(r["p50_ms"] for r in curve if r["attention"] == a and r["length"] == 1024)
        for a in ("linear", "softmax")
    }
    print(
        f"\nlatency growth from L=1024 to 4096 (4x tokens): linear {growth['linear']:.1f}x, "
        f"softmax {growth['softmax']:.1f}x"
    )
    print(
        f"MobileNet-style >= {100 * ACCURACY_TARGET:.1f}% with fewer MACs than LeNet-5 "
        f"({lenet_macs:,}): {', '.join(winners) if winners else 'NO'}"
    )
    print(f"ONNX parity <= 1e-4 on the full test split: {'yes' if parity_ok else 'NO'}")
    write_json_atomic(
        args.out,
        {
            "benchmark": "architectures",
            "environment": environment(),
            "records": [r.to_dict() for r in records],
            "runs": runs,
            "attention_curve": curve,
            "checks": {
                "mobilenets_beating_lenet5": winners,
                "parity": parity_ok,
                "latency_growth_1024_to_4096": growth,
            },
        },
    )
    print(f"\nwrote {args.out}")
    return 0 if winners and parity_ok else 1


if __name__ == "__main__":
    sys.exit(main())

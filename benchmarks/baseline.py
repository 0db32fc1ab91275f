"""Baseline benchmark: the foundation's flow on real data, measured in PyTorch and ONNX Runtime.

Trains LeNet-5 and LeNet-300-100 on MNIST and the default model on digits, exports each to ONNX,
checks parity on the whole test split, and measures test accuracy and latency (p50/p90) in PyTorch
eager and ONNX Runtime at batch 1 and 64 with 1 and 2 threads. Prints one table and writes JSON.

    python benchmarks/baseline.py                      # MNIST from ../shared/data/mnist
    python benchmarks/baseline.py --mnist PATH --out benchmarks/results/baseline.json

Checkpoints are kept in the output folder; ``--reuse`` measures them again without retraining.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from slimkit.data import load_dataset
from slimkit.export import export
from slimkit.io import write_json_atomic
from slimkit.measure import LatencyConfig, describe_cpu, environment, measure
from slimkit.models import DEFAULT_MODEL, create_model
from slimkit.report import markdown_table, records_table
from slimkit.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"

# (label, data source, model, training recipe, accuracy the issue asks for)
RUNS = [
    (
        "lenet5-mnist",
        "mnist",
        "lenet5",
        TrainConfig(epochs=15, batch_size=128, lr=2e-3, seed=0),
        0.990,
    ),
    (
        "lenet300_100-mnist",
        "mnist",
        "lenet300_100",
        TrainConfig(epochs=20, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=1e-4, seed=0),
        0.980,
    ),
    (f"{DEFAULT_MODEL}-digits", "digits", DEFAULT_MODEL, TrainConfig(seed=0), 0.95),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST files"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "baseline.json"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse checkpoints from an earlier run"
    )
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per setting")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    folder = args.out.parent / "baseline"
    print(f"CPU: {describe_cpu()}", flush=True)

    records, rows = [], []
    for label, source, model_name, config, target in RUNS:
        data = load_dataset(f"mnist:{args.mnist}" if source == "mnist" else "digits", seed=0)
        checkpoint = folder / f"{label}.safetensors"
        started = time.perf_counter()
        if args.reuse and checkpoint.is_file():
            model = load_checkpoint(checkpoint).model
            seconds = None
        else:
            torch.manual_seed(config.seed)  # initialisation uses the global generator
            model = create_model(
                model_name, input_shape=data.input_shape, num_classes=data.num_classes
            )
            train(model, data, config)
            seconds = time.perf_counter() - started
            save_checkpoint(
                model,
                checkpoint,
                metadata={"data": data.config.to_dict(), "train": config.to_dict()},
            )
        test_accuracy = evaluate(model, data.test)[1]
        print(
            f"{label}: test accuracy {100 * test_accuracy:.2f}% (trained in {seconds:.0f} s)"
            if seconds
            else f"{label}: reused",
            flush=True,
        )
        onnx_path = export(model, folder / f"{label}.onnx").path
        latency = LatencyConfig(time_budget_s=args.budget)
        for runtime, artifact in (("pytorch", checkpoint), ("onnxruntime", onnx_path)):
            record = measure(
                artifact,
                data,
                runtime=runtime,
                batch_sizes=(1, 64),
                threads=(1, 2),
                reference=model if runtime == "onnxruntime" else None,
                latency=latency,
                name=label,
            )
            records.append(record)
            rows.append(
                {
                    "label": label,
                    "runtime": runtime,
                    "train_seconds": seconds,
                    "target_accuracy": target,
                    "meets_accuracy": record.accuracy >= target,
                    "meets_parity": record.parity.passes(atol=1e-4) if record.parity else None,
                }
            )
            print(f"  measured {runtime}", flush=True)

    header, table = records_table(records)
    print()
    print(
        "latency: p50 ms per batch (b = batch size, t = threads); "
        "parity vs PyTorch on the full test split"
    )
    print(markdown_table(header, table))
    print()
    for row in rows:
        if row["runtime"] == "onnxruntime":
            print(
                f"{row['label']}: accuracy >= {100 * row['target_accuracy']:.1f}%: "
                f"{'yes' if row['meets_accuracy'] else 'NO'}; ONNX parity <= 1e-4 and 100% argmax: "
                f"{'yes' if row['meets_parity'] else 'NO'}"
            )
    write_json_atomic(
        args.out,
        {
            "benchmark": "baseline",
            "environment": environment(),
            "records": [r.to_dict() for r in records],
            "checks": rows,
        },
    )
    print(f"\nwrote {args.out}")
    ok = all(r["meets_accuracy"] for r in rows) and all(
        r["meets_parity"] in (True, None) for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Runtimes benchmark: PyTorch, ONNX Runtime, LiteRT and ExecuTorch side by side, fp32 and int8.

Trains LeNet-5, the MLP and a small depthwise-separable CNN briefly on MNIST, then for every
runtime writes the files it loads (one per batch size for LiteRT and ExecuTorch), checks parity
on the whole test split (fp32 against eager PyTorch; slimkit's int8 against slimkit's integer
reference executor: argmax agreement and the share of outputs within one quantization step), and
times batch 1 and 64 with 1 and 2 threads, each (file, threads) in its own process, twice (repeat
stability). int8 is slimkit's own (min-max, per channel) in all four runtimes — the same scales,
zero points and int8 weights; ``--quantizer runtime`` uses each runtime's own quantizer instead
(labelled in the JSON, held against its simulated model). Prints one table and writes JSON.

    python benchmarks/runtimes.py                       # MNIST from ../shared/data/mnist
    python benchmarks/runtimes.py --epochs 2 --budget 1.0 --out benchmarks/results/runtimes.json

The engine is ``slimkit bench`` (:func:`slimkit.cli.bench.run_bench`); files are kept in the
output folder (``benchmarks/results/runtimes/``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.cli.bench import (
    BENCH_LEGEND,
    BenchModel,
    bench_table,
    repeat_stability_lines,
    run_bench,
)
from slimkit.data import load_dataset
from slimkit.export.targets import prepare_for_runtime
from slimkit.io import write_json_atomic
from slimkit.measure import LatencyConfig, compare_logits, describe_cpu, environment
from slimkit.models import create_model, register_model
from slimkit.report import markdown_table
from slimkit.runtime import load_runtime, predict_batches
from slimkit.train import TrainConfig, evaluate, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
RUNTIMES = ("pytorch", "onnxruntime", "litert", "executorch")
FP32_ATOL = 1e-4
INT8_AGREEMENT = 0.995
STABILITY = 0.05


class DepthwiseSeparableCNN(nn.Module):
    """A stem convolution, two depthwise-separable blocks (MobileNet v1 style), pooling, linear."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1),  # 28x28 → 14x14
            nn.ReLU(),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [
                nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in),  # depthwise, /2
                nn.ReLU(),
                nn.Conv2d(c_in, c_out, 1),  # pointwise
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (N, C, H, W) → (N, classes)


# registered at import so that checkpoints of it load here and in the timing child processes
@register_model("bench-dwsep-cnn", "Depthwise-separable CNN of the runtimes benchmark")
def bench_dwsep_cnn(
    input_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...] = (16, 32, 64)
) -> nn.Module:
    """A small MobileNet-v1-style CNN (until the model zoo's lands)."""
    return DepthwiseSeparableCNN(input_shape[0], num_classes, tuple(widths))


MODELS = [("lenet5", "lenet5"), ("mlp", "mlp"), ("dwsep-cnn", "bench-dwsep-cnn")]


def _summary(rows: list[dict[str, Any]], crosscheck: list[dict[str, Any]]) -> list[str]:
    lines = []
    for runtime in RUNTIMES:
        mine = [r for r in rows if r["runtime"] == runtime]
        fp32 = [r for r in mine if r["precision"] == "fp32"]
        int8 = [r for r in mine if r["precision"] == "int8"]
        if fp32:
            worst = max(r["max_abs_diff"] for r in fp32)
            agree = min(r["argmax_agreement"] for r in fp32)
            lines.append(
                f"{runtime}: fp32 max |Δ logit| {worst:.1e} (limit {FP32_ATOL:.0e}), "
                f"argmax agreement {100 * agree:.2f}%"
            )
        if int8:
            agree = min(r["argmax_agreement"] for r in int8)
            quantizers = sorted({r["quantizer"] for r in int8})
            references = sorted({r["parity_reference"] for r in int8})
            steps = [r["within_1_lsb"] for r in int8 if r.get("within_1_lsb") is not None]
            lines.append(
                f"{runtime}: int8 ({', '.join(quantizers)}) argmax agreement with "
                f"{' / '.join(references)} >= {100 * agree:.2f}% (target "
                f"{100 * INT8_AGREEMENT:.1f}%)"
                + (f"; outputs within 1 step >= {100 * min(steps):.2f}%" if steps else "")
            )
        edge = [r for r in mine if r["all_delegated"] is not None]
        if edge:
            partial = sorted({r["model"] for r in edge if not r["all_delegated"]})
            lines.append(
                f"{runtime}: XNNPACK delegation: "
                + (f"PARTIAL for {', '.join(partial)}" if partial else "every file all-delegated")
            )
    lines += repeat_stability_lines(rows, STABILITY)
    for check in crosscheck:
        lines.append(
            f"cross-check {check['model']}: LiteRT int8 from ExecuTorch's quantizer graph "
            f"(shared PT2E scales): argmax agreement {100 * check['argmax_agreement']:.2f}%, "
            f"max |Δ| {check['max_abs_diff']:.3f} vs its simulated model"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST folder")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "runtimes.json"
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per model")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of timing per setting at most"
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=0.5,
        help="seconds of timing per setting at least (a longer window rides out more noise)",
    )
    parser.add_argument(
        "--quantizer",
        choices=("slimkit", "runtime"),
        default="slimkit",
        help="int8 by slimkit's scales in every runtime, or each runtime's own quantizer",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each timing process to as many CPUs as it has threads (the last ones)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("torch.onnx", "torchao", "slimkit.export"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(2)
    folder = args.out.parent / "runtimes"
    print(f"CPU: {describe_cpu()}", flush=True)
    data = load_dataset(f"mnist:{args.mnist}", seed=0)

    models, trained = [], []
    for label, name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, input_shape=data.input_shape, num_classes=data.num_classes)
        config = TrainConfig(epochs=args.epochs, batch_size=128, lr=2e-3, seed=0)
        started = time.perf_counter()
        train(model, data, config)
        model.eval()
        accuracy = evaluate(model, data.test)[1]
        seconds = time.perf_counter() - started
        print(f"{label}: test accuracy {100 * accuracy:.2f}% ({seconds:.0f} s)", flush=True)
        checkpoint = save_checkpoint(
            model, folder / label / f"{label}.safetensors", metadata={"data": data.config.to_dict()}
        )
        models.append(BenchModel(label, model, data, checkpoint))
        trained.append({"model": label, "test_accuracy": accuracy, "train_seconds": seconds})

    started = time.perf_counter()
    result = run_bench(
        models,
        RUNTIMES,
        folder,
        precisions=("fp32", "int8"),
        batch_sizes=(1, 64),
        threads=(1, 2),
        latency=LatencyConfig(time_budget_s=args.budget, min_time_s=args.min_time),
        isolate=True,
        rounds=2,
        progress=lambda message: print(f"  {message}", flush=True),
        quantizer=args.quantizer,
        pin=args.pin,
    )
    print(f"benchmark: {time.perf_counter() - started:.0f} s", flush=True)

    # the same PT2E scales in two runtimes: ExecuTorch's quantizer graph converted for LiteRT
    crosscheck = []
    x_test = data.test.x.numpy()
    calibration = data.train.x.numpy()[:512]
    for item in models:
        prepared = prepare_for_runtime(
            item.model,
            "litert",
            folder / item.name,
            stem=item.name,
            batch_sizes=(64,),
            precision="int8",
            calibration_data=calibration,
            quantizer="executorch-xnnpack-pt2e",
        )
        artifact = prepared.artifacts[0]
        assert artifact.path is not None
        runner = load_runtime("litert", artifact.path)
        parity = compare_logits(prepared.reference(x_test), predict_batches(runner.run, x_test))
        crosscheck.append({"model": item.name, **parity.to_dict()})

    header, cells = bench_table(result["rows"])
    print()
    print(BENCH_LEGEND)
    print(markdown_table(header, cells))
    print()
    summary = _summary(result["rows"], crosscheck)
    for line in summary:
        print(line)
    write_json_atomic(
        args.out,
        {
            "benchmark": "runtimes",
            "environment": environment(),
            "settings": {
                "epochs": args.epochs,
                "budget_s": args.budget,
                "min_time_s": args.min_time,
                "rounds": 2,
                "quantizer": args.quantizer,
                "pin": args.pin,
            },
            "models": trained,
            "summary": summary,
            "crosscheck_litert_shared_scales": crosscheck,
            **result,
        },
    )
    print(f"\nwrote {args.out}")
    rows = result["rows"]
    ok = all(
        r["max_abs_diff"] <= FP32_ATOL and r["argmax_agreement"] == 1.0
        for r in rows
        if r["precision"] == "fp32"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Microcontrollers benchmark: int8 models in TFLite Micro, with RAM (arena) and flash measured.

Trains LeNet-5 and the MLP (3 epochs), a MobileNet-style (depthwise-separable) CNN and a small CNN
made by hand for a Cortex-M4-class budget (RAM <= 32 KB, flash <= 64 KB) (8 epochs) on MNIST;
exports each as int8 for TFLite Micro (``.tflite`` + C source + header; slimkit's static int8,
min-max per channel, calibrated on 512 training images, its scales carried into the file); and
reports, per model:

- the arena: the smallest that runs it (bisected in child processes, confirmed: runs with it,
  fails with 16 bytes less), the interpreter's allocation record and slimkit's activation plan;
- flash: model bytes + the stated estimate of interpreter code (16 KiB + 1.5 KiB per operator);
- parity with LiteRT on the same file over the whole MNIST test set (argmax agreement, largest
  difference in output quantization steps), with slimkit's integer reference executor (the share
  of int8 outputs within one step) and the test accuracy in TFLite Micro;
- the latency of one sample in TFLite Micro's reference kernels on this machine: HOST time,
  not device time (a Cortex-M4 at 100 MHz is one to two orders of magnitude slower);
- whether it fits the budget.

    python benchmarks/microcontrollers.py                      # MNIST from ../shared/data/mnist
    python benchmarks/microcontrollers.py --epochs 3 --out benchmarks/results/microcontrollers.json
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# the runtimes benchmark's MobileNet-style CNN (benchmarks/ is on sys.path when run as a script)
from runtimes import DepthwiseSeparableCNN
from slimkit.data import load_dataset
from slimkit.export import McuExportResult, export
from slimkit.export.pt2e_slimkit import integer_outputs
from slimkit.io import write_json_atomic
from slimkit.measure import LatencyConfig, compare_logits, describe_cpu, environment
from slimkit.measure import measure_latency as time_it
from slimkit.measure.environment import package_version
from slimkit.measure.mcu import FLASH_ESTIMATE_BASIS, budget_violations
from slimkit.models import create_model, register_model
from slimkit.report import markdown_table
from slimkit.runtime import load_runtime, predict_batches
from slimkit.techniques.quantize import quantize_static
from slimkit.train import TrainConfig, evaluate, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
RAM_BUDGET, FLASH_BUDGET = "32KB", "64KB"
AGREEMENT_TARGET = 0.999
ACCURACY_TARGET = 0.988


class SmallCNN(nn.Module):
    """Three 3x3 convolutions with max pooling and one linear layer: made for 32 KB of RAM."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise((in_channels, *widths)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)  # 28 → 14 → 7 → 3
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 3 * 3, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (N, C, H, W) → (N, classes)


@register_model("mcu-dwsep-cnn", "MobileNet-style CNN of the microcontrollers benchmark")
def mcu_dwsep_cnn(
    input_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...] = (16, 32, 64)
) -> nn.Module:
    return DepthwiseSeparableCNN(input_shape[0], num_classes, tuple(widths))


@register_model("mcu-small-cnn", "Small CNN made by hand for a 32 KB RAM / 64 KB flash budget")
def mcu_small_cnn(
    input_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...] = (16, 32, 32)
) -> nn.Module:
    return SmallCNN(input_shape[0], num_classes, tuple(widths))


# (label, registered model, trained for --long-epochs instead of --epochs)
MODELS = [
    ("lenet5", "lenet5", False),
    ("mlp", "mlp", False),
    ("mobilenet-style-cnn", "mcu-dwsep-cnn", True),
    ("small-cnn (hand-made for the budget)", "mcu-small-cnn", True),
]


def _integer_parity(graph: Any, x: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """TFLite Micro's int8 outputs against slimkit's integer reference on the same inputs."""
    params = graph.qparams[graph.output]
    zero = int(params.zero_point[0]) - (128 if params.dtype == "uint8" else 0)
    theirs = np.rint(logits / float(params.scale[0])).astype(np.int64) + zero
    mine = integer_outputs(graph, x)
    steps = np.abs(theirs - mine)
    return {
        "argmax_agreement": float(np.mean(theirs.argmax(1) == mine.argmax(1))),
        "within_1_step": float(np.mean(steps <= 1)),
        "max_steps": int(steps.max()),
        "samples": len(x),
    }


def _row(label: str, model: nn.Module, data: Any, folder: Path, budget_s: float) -> dict[str, Any]:
    calibration = data.train.x[:512]
    stem = label.split(" ")[0]
    started = time.perf_counter()
    # slimkit's static int8 (min-max, per channel); its scales go into the .tflite unchanged
    quantized = quantize_static(model, calibration)
    result = export(quantized, folder / f"{stem}-int8.tflite", format="tflite-micro")
    assert isinstance(result, McuExportResult)
    export_seconds = time.perf_counter() - started
    memory = result.memory
    x, labels = data.test.x.numpy(), data.test.y.numpy()
    micro = load_runtime("tflite-micro", result.path)
    started = time.perf_counter()
    micro_logits = predict_batches(micro.run, x, batch_size=1000)
    run_seconds = time.perf_counter() - started
    litert_logits = predict_batches(load_runtime("litert", result.path).run, x, batch_size=1000)
    parity = compare_logits(litert_logits, micro_logits)
    reference = _integer_parity(quantized.graph, x, micro_logits)
    step = result.parity_atol / 1.0001  # one output quantization step
    host = time_it(micro.run, x[:1], threads=1, config=LatencyConfig(time_budget_s=budget_s))
    problems = budget_violations(
        memory, ram_bytes=RAM_BUDGET, flash_bytes=FLASH_BUDGET, int8_only=True
    )
    return {
        "model": label,
        "float_test_accuracy": None,
        "tflite_micro_test_accuracy": float(np.mean(micro_logits.argmax(1) == labels)),
        "arena_bytes": memory["arena_bytes"],
        "arena_recorded_bytes": memory["arena_recorded_bytes"],
        "arena_recorded_head_bytes": memory["arena_recorded_head_bytes"],
        "planner_plan_bytes": memory["planner_plan_bytes"],
        "planner_peak_live_bytes": memory["planner_peak_live_bytes"],
        "arena_fails_cleanly_below": memory["arena_fails_cleanly_below"],
        "flash_bytes": memory["flash_bytes"],
        "model_bytes": memory["model_bytes"],
        "interpreter_code_bytes": memory["interpreter_code_bytes"],
        "operators": memory["operators"],
        "parity_vs_litert": parity.to_dict() | {"max_abs_diff_steps": parity.max_abs_diff / step},
        "parity_vs_integer_reference": reference,
        "quantizer": result.quantizer,
        "host_latency_ms_p50": host.p50_ms,
        "host_latency": host.to_dict(),
        "host_seconds_for_test_set": run_seconds,
        "export_seconds": export_seconds,
        "fits_budget": not problems,
        "budget_problems": problems,
        "files": [str(result.path), str(result.c_source), str(result.header)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST folder")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "microcontrollers.json"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs of LeNet-5 and the MLP")
    parser.add_argument("--long-epochs", type=int, default=8, help="epochs of the two CNNs")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("torchao", "slimkit.export", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(2)
    folder = args.out.parent / "microcontrollers"
    print(f"CPU: {describe_cpu()}", flush=True)
    data = load_dataset(f"mnist:{args.mnist}", seed=0)

    rows = []
    for label, name, long in MODELS:
        torch.manual_seed(0)
        model = create_model(name, input_shape=data.input_shape, num_classes=data.num_classes)
        started = time.perf_counter()
        train(
            model,
            data,
            TrainConfig(
                epochs=args.long_epochs if long else args.epochs, batch_size=128, lr=2e-3, seed=0
            ),
        )
        model.eval()
        accuracy = evaluate(model, data.test)[1]
        print(
            f"{label}: float test accuracy {100 * accuracy:.2f}% "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        row = _row(label, model, data, folder, args.budget)
        row["float_test_accuracy"] = accuracy
        rows.append(row)

    header = [
        "model",
        "arena B",
        "record B",
        "plan B",
        "flash B",
        "model B",
        "agree vs LiteRT",
        "max |Δ| (steps)",
        "vs int. ref ≤1 step",
        "int8 acc",
        "host ms/sample",
        "fits 32KB/64KB",
    ]
    cells = [
        [
            r["model"],
            f"{r['arena_bytes']:,}",
            f"{r['arena_recorded_bytes']:,}",
            f"{r['planner_plan_bytes']:,} / head {r['arena_recorded_head_bytes']:,}",
            f"{r['flash_bytes']:,}",
            f"{r['model_bytes']:,}",
            f"{100 * r['parity_vs_litert']['argmax_agreement']:.2f}%",
            f"{r['parity_vs_litert']['max_abs_diff_steps']:.2f}",
            f"{100 * r['parity_vs_integer_reference']['within_1_step']:.2f}%",
            f"{100 * r['tflite_micro_test_accuracy']:.2f}%",
            f"{r['host_latency_ms_p50']:.3f}",
            "yes" if r["fits_budget"] else "no",
        ]
        for r in rows
    ]
    print(markdown_table(header, cells))
    lenet = rows[0]["parity_vs_litert"]["argmax_agreement"]
    print(
        f"LeNet-5 int8 TFLite Micro vs LiteRT argmax agreement {100 * lenet:.2f}% "
        f"(target >= {100 * AGREEMENT_TARGET:.1f}%)"
    )
    worst = min(r["parity_vs_integer_reference"]["within_1_step"] for r in rows)
    agree = min(r["parity_vs_integer_reference"]["argmax_agreement"] for r in rows)
    print(
        f"TFLite Micro vs slimkit's integer reference (same scales): >= {100 * worst:.2f}% of "
        f"outputs within one step, argmax agreement >= {100 * agree:.2f}% (every model)"
    )
    fitting = [r for r in rows if r["fits_budget"]]
    best = max(fitting, key=lambda r: r["tflite_micro_test_accuracy"], default=None)
    if best is not None:
        print(
            f"best model within RAM <= {RAM_BUDGET}, flash <= {FLASH_BUDGET}: {best['model']} "
            f"at {100 * best['tflite_micro_test_accuracy']:.2f}% (target "
            f">= {100 * ACCURACY_TARGET:.1f}%), arena {best['arena_bytes']:,} B, flash "
            f"{best['flash_bytes']:,} B"
        )
    print("host ms/sample: TFLite Micro reference kernels on this CPU, not device time")
    write_json_atomic(
        args.out,
        {
            "benchmark": "microcontrollers",
            "budget": {"ram": RAM_BUDGET, "flash": FLASH_BUDGET, "int8_only": True},
            "flash_basis": FLASH_ESTIMATE_BASIS,
            "latency_note": "host time of TFLite Micro's reference kernels, not device time",
            "epochs": {"lenet5, mlp": args.epochs, "cnns": args.long_epochs},
            "rows": rows,
            "best_within_budget": best["model"] if best else None,
            "environment": environment() | {"tflite-micro": package_version("tflite-micro")},
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

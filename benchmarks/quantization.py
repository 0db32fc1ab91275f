"""Quantization benchmark: slimkit's int8 beside ONNX Runtime's, NNCF's and PyTorch PT2E, one run.

For LeNet-5 and a depthwise-separable CNN (MobileNet-v1-style) on MNIST it prints, per model, one
table: the fp32 model; slimkit post-training static int8 with every calibration method, with and
without cross-layer equalization + bias correction; slimkit QAT from the float checkpoint; and the
anchors: ONNX Runtime ``quantize_static`` (its defaults = min-max, and its entropy and percentile
options), NNCF ``nncf.quantize`` (ONNX backend), and PT2E with ``X86InductorQuantizer`` under
``torch.compile``. Columns: test accuracy (10,000 MNIST test images, in the runtime), drop vs fp32,
file size, latency p50 per (batch, threads), speedup vs fp32 in the same runtime at batch 64 / 1
thread, SQNR of the logits vs fp32, and agreement with slimkit's integer reference.

    python benchmarks/quantization.py [--mnist PATH] [--models lenet5,mobilenet_v1_small] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit.data import Dataset, load_dataset
from slimkit.export import export
from slimkit.io import write_json_atomic
from slimkit.measure import LatencyConfig, describe_cpu, environment, measure_latency
from slimkit.models import create_model
from slimkit.report import markdown_table
from slimkit.runtime import load_runtime, predict_batches
from slimkit.techniques import compress
from slimkit.techniques.quantize import QATConfig, StaticInt8Config, run_reference
from slimkit.train import TrainConfig, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
SETTINGS = [(1, 1), (1, 2), (64, 1), (64, 2)]
CALIBRATION_SAMPLES = 512

RECIPES = {
    "lenet5": ({}, TrainConfig(epochs=15, batch_size=128, lr=2e-3, seed=0)),
    "mobilenet_v1_small": ({}, TrainConfig(epochs=8, batch_size=128, lr=3e-3, seed=0)),
}


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of logits in dB."""
    noise = float(np.sum((reference - candidate) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def time_settings(
    make_run: Callable[[int], Callable[[np.ndarray], Any]], x: np.ndarray, budget: float
) -> dict[str, float]:
    """p50 latency (ms per batch) of ``make_run(threads)`` for every (batch, threads) setting."""
    config = LatencyConfig(time_budget_s=budget)
    result = {}
    for threads in sorted({t for _, t in SETTINGS}):
        run = make_run(threads)
        for batch, t in SETTINGS:
            if t == threads:
                result[f"b{batch} t{threads}"] = measure_latency(
                    run, x[:batch], threads=threads, config=config
                ).p50_ms
    return result


def onnx_row(
    label: str,
    path: Path,
    data: Dataset,
    fp32_logits: np.ndarray | None,
    budget: float,
    **extra: Any,
) -> dict[str, Any]:
    """Accuracy, logits and latency of one ONNX file in ONNX Runtime."""
    x, y = data.test.x.numpy(), data.test.y.numpy()
    logits = predict_batches(load_runtime("onnxruntime", path, threads=2).run, x)
    row = {
        "row": label,
        "runtime": "onnxruntime",
        "accuracy": float(np.mean(logits.argmax(1) == y)),
        "file_bytes": path.stat().st_size,
        "latency": time_settings(
            lambda t: load_runtime("onnxruntime", path, threads=t).run, x, budget
        ),
        "sqnr_db": sqnr_db(fp32_logits, logits) if fp32_logits is not None else None,
        **extra,
    }
    row["_logits"] = logits
    return row


class ArrayReader:
    """An ONNX Runtime CalibrationDataReader over the calibration inputs."""

    def __init__(self, x: np.ndarray, batch: int = 64) -> None:
        self.batches = iter([{"input": x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def ort_anchor(fp32_path: Path, out: Path, calibration: np.ndarray, method: str) -> Path:
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(
        str(prepared),
        str(out),
        ArrayReader(calibration),
        calibrate_method=getattr(CalibrationMethod, method),
    )
    return out


def nncf_anchor(fp32_path: Path, out: Path, calibration: np.ndarray) -> Path:
    import nncf
    import onnx

    model = onnx.load(str(fp32_path))
    dataset = nncf.Dataset([{"input": calibration[i : i + 1]} for i in range(len(calibration))])
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
    onnx.save(quantized, str(out))
    return out


def pt2e_rows(
    model: torch.nn.Module,
    data: Dataset,
    calibration: torch.Tensor,
    fp32_logits: np.ndarray,
    budget: float,
) -> list[dict[str, Any]]:
    """fp32 and int8 (X86InductorQuantizer) under torch.compile."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x, y = data.test.x, data.test.y.numpy()
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model.eval(), (x[:4],), dynamic_shapes=({0: batch},)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config()
    )
    prepared = prepare_pt2e(exported, quantizer)  # type: ignore[arg-type]
    with torch.no_grad():
        for i in range(0, len(calibration), 64):
            prepared(calibration[i : i + 64])
    int8 = convert_pt2e(prepared)
    rows = []
    for label, module in (
        ("fp32 torch.compile", model),
        ("anchor: PT2E X86InductorQuantizer", int8),
    ):
        compiled = torch.compile(module)

        def run(batch: np.ndarray, compiled: Any = compiled) -> np.ndarray:
            with torch.no_grad():
                return compiled(torch.from_numpy(batch)).numpy()

        def make_run(threads: int, run: Any = run) -> Callable[[np.ndarray], Any]:
            torch.set_num_threads(threads)
            return run

        logits = predict_batches(run, x.numpy(), batch_size=250)
        latency = time_settings(make_run, x.numpy(), budget)
        torch.set_num_threads(2)
        rows.append(
            {
                "row": label,
                "runtime": "torch.compile",
                "accuracy": float(np.mean(logits.argmax(1) == y)),
                "file_bytes": None,
                "latency": latency,
                "sqnr_db": sqnr_db(fp32_logits, logits)
                if "int8" in label or "PT2E" in label
                else None,
                "_logits": logits,
            }
        )
    return rows


def get_model(name: str, data: Dataset, folder: Path) -> torch.nn.Module:
    path = folder / f"{name}-mnist.safetensors"
    if path.is_file():
        return load_checkpoint(path).model
    kwargs, config = RECIPES[name]
    torch.manual_seed(0)
    model = create_model(name, input_shape=data.input_shape, **kwargs)
    started = time.perf_counter()
    train(model, data, config)
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s", flush=True)
    save_checkpoint(
        model, path, metadata={"data": data.config.to_dict(), "train": config.to_dict()}
    )
    return model.eval()


def benchmark_model(
    name: str, data: Dataset, folder: Path, budget: float, quick: bool
) -> list[dict[str, Any]]:
    model = get_model(name, data, folder)
    calibration = data.train.x[:CALIBRATION_SAMPLES]
    x = data.test.x.numpy()
    fp32_path = export(model, folder / f"{name}.fp32.onnx").path
    fp32 = onnx_row("fp32", fp32_path, data, None, budget)
    rows = [fp32]
    methods = (
        ["minmax", "mse"] if quick else ["minmax", "moving_average", "percentile", "mse", "entropy"]
    )
    for method in methods:
        for tuned in (False, True):
            config = StaticInt8Config(
                calibration=method, cross_layer_equalization=tuned, bias_correction=tuned
            )
            qmodel = compress(model, [config], calibration_data=calibration)
            path = export(qmodel, folder / f"{name}.{method}{'.cle-bc' if tuned else ''}.onnx").path
            row = onnx_row(
                f"slimkit PTQ {method}{' + CLE + bias corr.' if tuned else ''}",
                path,
                data,
                fp32["_logits"],
                budget,
            )
            reference = run_reference(qmodel.graph, x)
            scale = float(qmodel.graph.qparams[qmodel.graph.output].scale[0])
            row["within_1_lsb"] = float(
                np.mean(np.abs(reference - row["_logits"]) / scale <= 1 + 1e-4)
            )
            rows.append(row)
            print(f"  {row['row']}: {100 * row['accuracy']:.2f}%", flush=True)
    qat = compress(model, [QATConfig(epochs=1 if quick else 2, lr=1e-4)], data=data)
    path = export(qat, folder / f"{name}.qat.onnx").path
    row = onnx_row(
        "slimkit QAT (2 epochs)" if not quick else "slimkit QAT (1 epoch)",
        path,
        data,
        fp32["_logits"],
        budget,
    )
    reference = run_reference(qat.graph, x)  # type: ignore[union-attr]
    scale = float(qat.graph.qparams[qat.graph.output].scale[0])  # type: ignore[union-attr]
    row["within_1_lsb"] = float(np.mean(np.abs(reference - row["_logits"]) / scale <= 1 + 1e-4))
    rows.append(row)
    print(f"  {row['row']}: {100 * row['accuracy']:.2f}%", flush=True)
    calib_np = calibration.numpy()
    for method in ["MinMax"] if quick else ["MinMax", "Entropy", "Percentile"]:
        path = ort_anchor(fp32_path, folder / f"{name}.ort-{method.lower()}.onnx", calib_np, method)
        label = f"anchor: ORT quantize_static {method}" + (
            " (defaults)" if method == "MinMax" else ""
        )
        rows.append(onnx_row(label, path, data, fp32["_logits"], budget))
        print(f"  {label}: {100 * rows[-1]['accuracy']:.2f}%", flush=True)
    try:
        path = nncf_anchor(fp32_path, folder / f"{name}.nncf.onnx", calib_np)
        rows.append(onnx_row("anchor: NNCF nncf.quantize", path, data, fp32["_logits"], budget))
        print(f"  NNCF: {100 * rows[-1]['accuracy']:.2f}%", flush=True)
    except ImportError:
        print("  NNCF not installed (pip install nncf): anchor skipped", flush=True)
    try:
        rows += pt2e_rows(model, data, calibration, fp32["_logits"], budget)
        print("  PT2E done", flush=True)
    except Exception as error:  # report, do not hide: the anchor may not support this model
        print(
            f"  PT2E anchor failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}",
            flush=True,
        )
    base = {r["runtime"]: r for r in rows if r["row"].startswith("fp32")}
    for row in rows:
        reference = base.get(row["runtime"])
        row["drop_points"] = 100 * (fp32["accuracy"] - row["accuracy"])
        row["speedup_b64_t1"] = (
            reference["latency"]["b64 t1"] / row["latency"]["b64 t1"] if reference else None
        )
        row["speedup_b1_t1"] = (
            reference["latency"]["b1 t1"] / row["latency"]["b1 t1"] if reference else None
        )
        row["model"] = name
    return rows


def print_table(name: str, rows: list[dict[str, Any]]) -> None:
    header = [
        "row",
        "runtime",
        "acc",
        "Δ pts",
        "bytes",
        *[f"b{b} t{t}" for b, t in SETTINGS],
        "speedup b64t1",
        "SQNR dB",
        "≤1 LSB",
    ]
    table = []
    for r in rows:
        table.append(
            [
                r["row"],
                r["runtime"],
                f"{100 * r['accuracy']:.2f}%",
                f"{-r['drop_points']:+.2f}",
                f"{r['file_bytes']:,}" if r["file_bytes"] else "-",
                *[f"{r['latency'][f'b{b} t{t}']:.3f}" for b, t in SETTINGS],
                f"{r['speedup_b64_t1']:.2f}x" if r["speedup_b64_t1"] else "-",
                f"{r['sqnr_db']:.1f}" if r.get("sqnr_db") is not None else "-",
                f"{100 * r['within_1_lsb']:.2f}%" if "within_1_lsb" in r else "-",
            ]
        )
    print(f"\n### {name} on MNIST (latency: p50 ms per batch, b = batch, t = threads)\n")
    print(markdown_table(header, table))


def verdicts(name: str, rows: list[dict[str, Any]]) -> list[str]:
    fp32 = rows[0]
    ptq = [r for r in rows if r["row"].startswith("slimkit PTQ")]
    anchors = [r for r in rows if r["row"].startswith("anchor") and r["runtime"] == "onnxruntime"]
    qat = next(r for r in rows if r["row"].startswith("slimkit QAT"))
    best_ptq = max(ptq, key=lambda r: r["accuracy"])
    best_anchor = max(
        anchors + [r for r in rows if "PT2E" in r["row"]], key=lambda r: r["accuracy"]
    )
    ort_default = next(r for r in anchors if "MinMax" in r["row"])
    ptq_ms, ort_ms = best_ptq["latency"]["b64 t1"], ort_default["latency"]["b64 t1"]
    lines = [
        f"{name}: best slimkit PTQ ({best_ptq['row']}) loses {best_ptq['drop_points']:.2f} "
        f"points (target <= 0.2); best anchor ({best_anchor['row']}) loses "
        f"{best_anchor['drop_points']:.2f}; difference "
        f"{best_ptq['drop_points'] - best_anchor['drop_points']:+.2f} (target <= +0.1)",
        f"{name}: slimkit QAT loses {qat['drop_points']:.2f} points (target <= 0.1)",
        f"{name}: int8 file {fp32['file_bytes'] / best_ptq['file_bytes']:.2f}x smaller than fp32 "
        "(target >= 3.5x)",
        f"{name}: slimkit int8 latency b64 t1 {ptq_ms:.3f} ms vs ORT quantize_static "
        f"{ort_ms:.3f} ms ({100 * (ptq_ms / ort_ms - 1):+.1f}%, target within 5%)",
    ]
    for setting in ("b1 t1", "b64 t1"):
        ratio = fp32["latency"][setting] / best_ptq["latency"][setting]
        verdict = "faster" if ratio > 1 else "SLOWER"
        lines.append(
            f"{name}: int8 is {verdict} than fp32 in ONNX Runtime at {setting} on this CPU "
            f"({ratio:.2f}x)"
        )
    lsb = [r["within_1_lsb"] for r in rows if "within_1_lsb" in r]
    lines.append(
        f"{name}: ONNX Runtime vs integer reference within 1 LSB: min {100 * min(lsb):.3f}% of "
        "outputs over all slimkit rows (target >= 99.9%)"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--models", default="lenet5,mobilenet_v1_small")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "quantization.json"
    )
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of timing per setting")
    parser.add_argument("--quick", action="store_true", help="fewer rows (for a smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("torch.onnx", "nncf", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(2)
    folder = args.out.parent / "quantization"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {describe_cpu()}", flush=True)
    data = load_dataset(f"mnist:{args.mnist}", seed=0)
    results, lines = {}, []
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        rows = benchmark_model(name, data, folder, args.budget, args.quick)
        results[name] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        print_table(name, rows)
        lines += verdicts(name, rows)
    print()
    print("\n".join(lines))
    write_json_atomic(
        args.out,
        {
            "benchmark": "quantization",
            "environment": environment(),
            "models": results,
            "verdicts": lines,
        },
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Repeat stability of the latency harness on exported files, on whatever machine runs this.

The runtimes benchmark (``benchmarks/runtimes.py``) trains, exports and times in one go, which
needs every exporter installed. This script needs only the runtimes: it times the files that
benchmark wrote (``benchmarks/results/runtimes/<model>/``: ``.onnx``, ``-b<N>.tflite``,
``-b<N>.pte`` and the PyTorch checkpoint, fp32 and slimkit int8) in every runtime installed
here, at batch 1 and 64 and each thread count, each (file, threads) in its own process and each
setting twice in that process (``measure_isolated(..., rounds=2)``), and reports how far the two
p50s lie apart: the acceptance line "repeated p50 varies by less than 5% between two runs in one
process on an idle machine", checked on a machine other than the one that exported the files
(copy the folder over, or run it where the files were made).

    python benchmarks/repeat_stability.py                       # files from runtimes.py
    python benchmarks/repeat_stability.py --threads 1 2 4 --out /tmp/stability.json

A runtime whose package is missing or fails to load is skipped with its error line. PyTorch is
timed from the fp32 checkpoint only (its int8 is slimkit's simulated model, which has no file).
Inputs are seeded random images of ``--input-shape``: the latency of these models does not
depend on the values. Writes the JSON after every file, so an interrupted run keeps what it
timed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.cli.bench import repeat_stability_lines
from slimkit.errors import MissingDependencyError, SlimkitError
from slimkit.io import write_json_atomic
from slimkit.measure import LatencyConfig, describe_cpu, environment
from slimkit.measure.latency import measure_isolated, pinned_cpus
from slimkit.report import markdown_table
from slimkit.runtime import runtime_info

ROOT = Path(__file__).resolve().parents[1]
# runtimes.py registers its depthwise-separable CNN (the checkpoint names it) and sets the line;
# imported here, so also in the timing child processes, which re-import this script
sys.path.insert(0, str(ROOT / "benchmarks"))
_runtimes = importlib.import_module("runtimes")
SUFFIX_RUNTIME = {
    ".safetensors": "pytorch",
    ".onnx": "onnxruntime",
    ".tflite": "litert",
    ".pte": "executorch",
}
FIXED_BATCH = re.compile(r"-b(\d+)$")
ORDER = itemgetter("model", "runtime", "precision", "batch_size", "threads")
CROSSCHECK = "-executorch-xnnpack-pt2e"  # runtimes.py's cross-check file, not a benchmark row


def discover(folder: Path, batch_sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """The files to time: one entry per file, with its runtime, precision and batch sizes."""
    found = []
    for model_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(model_dir.iterdir()):
            runtime = SUFFIX_RUNTIME.get(path.suffix)
            if runtime is None or CROSSCHECK in path.stem:
                continue
            fixed = FIXED_BATCH.search(path.stem)
            served = tuple(b for b in batch_sizes if fixed is None or b == int(fixed.group(1)))
            if not served:
                continue
            precision = "int8" if "-int8" in path.stem else "fp32"
            found.append(
                {
                    "model": model_dir.name,
                    "runtime": runtime,
                    "precision": precision,
                    "path": path,
                    "batch_sizes": served,
                }
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--files",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "runtimes",
        help="folder of model folders written by benchmarks/runtimes.py",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "repeat_stability.json"
    )
    parser.add_argument("--models", nargs="+", help="model folders to time [default: all]")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--input-shape", type=int, nargs="+", default=[1, 28, 28])
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per window at most")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per window at least")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each timing process to the last <threads> CPUs (no moves between cores)",
    )
    parser.add_argument(
        "--limit",
        type=float,
        default=_runtimes.STABILITY,
        help="the relative |Δp50| a setting may show (the line: 5%%)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.files.is_dir():
        print(
            f"error: {args.files} is not a folder; run benchmarks/runtimes.py first (it writes "
            "benchmarks/results/runtimes/) or pass --files",
            file=sys.stderr,
        )
        return 2
    files = discover(args.files, tuple(args.batch_sizes))
    if args.models:
        files = [f for f in files if f["model"] in args.models]
    if not files:
        wanted = f" of models {', '.join(args.models)}" if args.models else ""
        print(
            f"error: no .onnx/.tflite/.pte/.safetensors files{wanted} under {args.files}",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(0)
    inputs = {
        b: rng.standard_normal((b, *args.input_shape)).astype(np.float32) for b in args.batch_sizes
    }
    config = LatencyConfig(time_budget_s=args.budget, min_time_s=args.min_time)
    env = environment()
    versions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for runtime in sorted({f["runtime"] for f in files}):
        runner = runtime_info(runtime).runner
        if runner.available():
            versions[runtime] = runner.version()
        else:
            skipped[runtime] = f"not installed ({runner.install_hint})"
    print(f"CPU: {describe_cpu()}; {os.cpu_count()} CPUs; load {os.getloadavg()}", flush=True)
    print(f"runtimes: {versions}" + (f"; skipped: {skipped}" if skipped else ""), flush=True)

    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []

    def save() -> None:
        write_json_atomic(
            args.out,
            {
                "benchmark": "repeat_stability",
                "environment": env,
                "settings": {
                    "files": str(args.files),
                    "models": sorted({f["model"] for f in files}),
                    "threads": args.threads,
                    "batch_sizes": args.batch_sizes,
                    "budget_s": args.budget,
                    "min_time_s": args.min_time,
                    "limit": args.limit,
                    "pin": args.pin,
                },
                "runtime_versions": versions,
                "skipped": skipped,
                "errors": errors,
                "rows": rows,
                "summary": repeat_stability_lines(rows, args.limit),
            },
        )

    started = time.perf_counter()
    for item in files:
        for threads in args.threads:
            runtime = item["runtime"]
            if runtime in skipped:
                continue
            label = f"{item['model']} {runtime} {item['precision']} t{threads}"
            try:
                timing = measure_isolated(
                    runtime,
                    item["path"],
                    [inputs[b] for b in item["batch_sizes"]],
                    threads=threads,
                    config=config,
                    rounds=2,
                    cpus=pinned_cpus(threads) if args.pin else None,
                )
            except MissingDependencyError as error:  # e.g. a package built for another torch
                skipped[runtime] = str(error).splitlines()[0]
                print(f"  {label}: skipping {runtime}: {skipped[runtime]}", flush=True)
                continue
            except SlimkitError as error:  # this file did not load or run: say so, go on
                errors.append({"file": str(item["path"]), "threads": threads, "error": str(error)})
                print(f"  {label}: {str(error).splitlines()[0]}", flush=True)
                continue
            for b, first, second, gap in zip(
                item["batch_sizes"],
                timing.latency,
                timing.repeats,
                timing.repeat_stability(),
                strict=True,
            ):
                rows.append(
                    {
                        "model": item["model"],
                        "runtime": runtime,
                        "precision": item["precision"],
                        "batch_size": b,
                        "threads": threads,
                        "p50_ms": first.p50_ms,
                        "p50_repeat_ms": second.p50_ms,
                        "repeat_stability": gap,
                        "stable": first.stable,
                        "repeat_stable": second.stable,
                        "drift": first.drift,
                        "repeat_drift": second.drift,
                        "file": item["path"].name,
                        "peak_rss_bytes": timing.peak_rss_bytes,
                        "cpus": list(timing.cpus) if timing.cpus is not None else None,
                    }
                )
                print(
                    f"  {label} b{b}: p50 {first.p50_ms:.4f} / {second.p50_ms:.4f} ms "
                    f"(Δ {100 * gap:.1f}%)",
                    flush=True,
                )
            save()
    seconds = time.perf_counter() - started
    header = ["model", "runtime", "prec", "b", "t", "p50 ms", "again", "Δ", "held"]
    cells = [
        [
            r["model"],
            r["runtime"],
            r["precision"],
            str(r["batch_size"]),
            str(r["threads"]),
            f"{r['p50_ms']:.4f}",
            f"{r['p50_repeat_ms']:.4f}",
            f"{100 * r['repeat_stability']:.1f}%",
            "yes" if r["stable"] and r["repeat_stable"] else "no",
        ]
        for r in sorted(rows, key=ORDER)
    ]
    print()
    print("p50 of two windows in one process (ms per batch); held: both windows' halves agreed")
    print(markdown_table(header, cells))
    print()
    for line in repeat_stability_lines(rows, args.limit):
        print(line)
    for runtime, why in skipped.items():
        print(f"skipped {runtime}: {why}")
    for error in errors:
        print(f"failed {error['file']} t{error['threads']}: {error['error'].splitlines()[0]}")
    save()
    print(f"\n{len(rows)} settings in {seconds:.0f} s; wrote {args.out}")
    return 0 if rows and not errors else 1


if __name__ == "__main__":
    sys.exit(main())

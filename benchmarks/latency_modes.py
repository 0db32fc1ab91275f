"""Latency modes probe: how one model file's per-call latency moves over time in one process.

The runtimes benchmark compares the p50 of two timing windows in one process. When that differs,
this probe shows why: it times one file for a few seconds in 0.5 s blocks and prints, per block,
the median, a few percentiles and the share of fast calls (within 20% of the process's 5th
percentile).
A latency with two modes (e.g. 19 µs and 31 µs calls interleaved, in a share that drifts) has a
p50 that jumps between them; a slow start shows in the first blocks only. Also printed: the
machine's idle state (a halted vCPU is slow to wake) and the CPU each thread ran on last.

    python benchmarks/latency_modes.py executorch \\
        benchmarks/results/runtimes/dwsep-cnn/dwsep-cnn-fp32-b1.pte --threads 2 --batch 1
    python benchmarks/latency_modes.py onnxruntime \\
        benchmarks/results/runtimes/lenet5/lenet5-fp32.onnx --threads 2 --processes 4

The files are the ones ``benchmarks/runtimes.py`` writes. Each process is a fresh interpreter, as
in the benchmark.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK_S = 0.5


def _thread_cpus() -> str:
    """``thread id: last CPU`` for every thread of this process (Linux), else empty."""
    cpus = []
    for stat in sorted(Path(f"/proc/{os.getpid()}/task").glob("*/stat")):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        cpus.append(f"{stat.parent.name}:cpu{fields[36]}")
    return " ".join(cpus)


def probe(runtime: str, path: str, threads: int, batch: int, seconds: float) -> None:
    """Time ``path`` in this process and print one line per block."""
    from slimkit.runtime import load_runtime

    runner = load_runtime(runtime, path, threads=threads)
    shape = runner.input_shape or (1, 28, 28)
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    for _ in range(50):
        runner.run(x)
    blocks = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        times = []
        block_start = time.perf_counter()
        while time.perf_counter() - block_start < BLOCK_S:
            t0 = time.perf_counter_ns()
            runner.run(x)
            times.append((time.perf_counter_ns() - t0) / 1e3)
        blocks.append(np.asarray(times))
    fast = 1.2 * float(np.percentile(np.concatenate(blocks), 5))
    for i, b in enumerate(blocks):
        p10, p50, p90 = np.percentile(b, [10, 50, 90])
        print(
            f"  block {i}: {b.size:6d} calls  p10 {p10:8.1f}  p50 {p50:8.1f}  p90 {p90:8.1f} µs"
            f"  fast calls {100 * float(np.mean(b <= fast)):5.1f}%"
        )
    print(f"  threads: {_thread_cpus()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", help="pytorch, onnxruntime, litert or executorch")
    parser.add_argument("path", help="a model file for that runtime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1, help="batch size (the file's, if fixed)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per process")
    parser.add_argument("--processes", type=int, default=2, help="fresh processes to probe")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        probe(args.runtime, args.path, args.threads, args.batch, args.seconds)
        return 0
    from slimkit.measure import describe_cpu, environment

    print(f"CPU: {describe_cpu()}; idle: {environment()['idle']}")
    command = [sys.executable, __file__, args.runtime, args.path, "--child"]
    command += ["--threads", str(args.threads), "--batch", str(args.batch)]
    command += ["--seconds", str(args.seconds)]
    for process in range(args.processes):
        print(f"process {process}: {args.runtime} {Path(args.path).name}, {args.threads} thread(s)")
        sys.stdout.flush()
        # the runtimes' own log lines go to stderr: kept out of the table, shown on failure
        result = subprocess.run(
            command, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, check=False
        )
        if result.returncode:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            print(f"  failed: {lines[-1] if lines else f'exit code {result.returncode}'}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

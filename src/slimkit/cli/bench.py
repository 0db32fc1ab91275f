"""``slimkit bench``: models × runtimes × precisions × batch sizes × threads, in one table.

For each checkpoint and runtime the files are written with
:func:`slimkit.export.targets.prepare_for_runtime` (one per batch size for LiteRT and ExecuTorch),
checked for parity on the test split (fp32 against eager PyTorch; slimkit's int8 against slimkit's
integer reference executor, a runtime's own quantizer against its simulated model), and timed
with the shared latency harness, by default each (file, threads) in its own process
(:func:`slimkit.measure.latency.measure_isolated`), which also gives the peak memory of a process
that loads and runs the model. :func:`run_bench` is the engine;
``benchmarks/runtimes.py`` uses it too.
"""

from __future__ import annotations

import logging
import pickle
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import BENCH_RUNTIMES, DATA_HELP, PRECISIONS, QUANTIZERS, one_of
from slimkit.cli.options import check_inputs_exist, resolve_data
from slimkit.errors import ConfigError, check_choice

if TYPE_CHECKING:  # torch, numpy and the runtimes load inside the functions that use them
    import numpy as np
    from torch import nn

    from slimkit.data import Dataset
    from slimkit.export.targets import Artifact
    from slimkit.measure import LatencyConfig
    from slimkit.runtime import Runner

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]
MIB = 1024 * 1024


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark: a label, the float model, its data, and its checkpoint if saved."""

    name: str
    model: nn.Module
    data: Dataset
    checkpoint: Path | None = None


def batch_of(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` samples of ``x`` (tiled if ``x`` is shorter), contiguous."""
    import numpy as np

    reps = -(-batch_size // len(x))
    tiled = np.concatenate([x] * reps) if reps > 1 else x
    return np.ascontiguousarray(tiled[:batch_size])


def _slimkit_int8(model: nn.Module, calibration: np.ndarray) -> nn.Module | None:
    """slimkit's static int8 of ``model`` (default config), or None where it cannot be built
    (each runtime then says why and falls back to its own quantizer)."""
    import torch

    from slimkit.techniques.quantize import quantize_static

    try:
        return quantize_static(model.eval(), torch.from_numpy(calibration))
    except ConfigError:
        return None


def _can_send(model: nn.Module | None) -> bool:
    """Whether ``model`` can go through a multiprocessing pipe (PT2E graphs hold local closures)."""
    try:
        pickle.dumps(model)
    except Exception:  # pickling raises AttributeError, TypeError, PicklingError, ...
        return False
    return model is not None


def _time_artifact(
    artifact: Artifact,
    in_memory: nn.Module | None,
    batches: list[np.ndarray],
    threads: int,
    config: LatencyConfig,
    *,
    isolate: bool,
    rounds: int,
    pin: bool = False,
) -> dict[str, Any]:
    """Latency per batch (and memory when isolated) of one artifact at one thread count."""
    from slimkit.measure.latency import measure_isolated, measure_latency, pinned_cpus
    from slimkit.runtime import PyTorchRunner, load_runtime

    if isolate and artifact.path is None and not _can_send(in_memory):
        logger.warning(
            "%s %s: the in-memory model cannot be sent to a child process (not picklable); "
            "timed in this process",
            artifact.runtime,
            artifact.precision,
        )
        isolate = False
    if isolate:
        timing = measure_isolated(
            artifact.runtime,
            artifact.path if artifact.path is not None else "<in-memory>",
            batches,
            threads=threads,
            config=config,
            rounds=rounds,
            model=in_memory if artifact.path is None else None,
            cpus=pinned_cpus(threads) if pin else None,
        )
        return {
            "latency": list(timing.latency),
            "stability": timing.repeat_stability() or [None] * len(batches),
            "repeat_stable": [r.stable for r in timing.repeats] or [None] * len(batches),
            "peak_rss_bytes": timing.peak_rss_bytes,
            "model_rss_bytes": timing.model_rss_bytes,
            "isolated": True,
            "cpus": list(timing.cpus) if timing.cpus is not None else None,
        }
    runner = (
        PyTorchRunner.from_model(in_memory, threads=threads)
        if in_memory is not None
        else load_runtime(artifact.runtime, artifact.path, threads=threads)  # type: ignore[arg-type]
    )
    rounds_stats = [
        [measure_latency(runner.run, x, threads=threads, config=config) for x in batches]
        for _ in range(rounds)
    ]
    stability: list[float | None] = [None] * len(batches)
    repeat_stable: list[bool | None] = [None] * len(batches)
    if rounds == 2:
        stability = [
            abs(b.p50_ms - a.p50_ms) / a.p50_ms for a, b in zip(*rounds_stats, strict=True)
        ]
        repeat_stable = [b.stable for b in rounds_stats[1]]
    return {
        "latency": rounds_stats[0],
        "stability": stability,
        "repeat_stable": repeat_stable,
        "peak_rss_bytes": None,
        "model_rss_bytes": None,
        "isolated": False,
        "cpus": None,
    }


def run_bench(
    models: Sequence[BenchModel],
    runtimes: Sequence[str],
    folder: Path,
    *,
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    latency: LatencyConfig | None = None,
    isolate: bool = True,
    rounds: int = 1,
    calibration_samples: int = 512,
    parity_samples: int | None = None,
    progress: ProgressFn | None = None,
    quantizer: str = "slimkit",
    pin: bool = False,
) -> dict[str, Any]:
    """Export, check and time every (model, runtime, precision); one row per timed setting.

    Args:
        models: the models with their data (test split for parity and timing inputs).
        runtimes: runtime names (pytorch, onnxruntime, litert, executorch).
        folder: where the files are written.
        precisions: ``fp32`` and/or ``int8``.
        batch_sizes: batch sizes to time.
        threads: thread counts to time.
        latency: the harness settings.
        isolate: time each (file, threads) in its own process and record its peak memory.
        rounds: 2 to time every setting twice in the same process (repeat stability).
        calibration_samples: training samples for int8 calibration.
        parity_samples: test samples for parity (None: the whole test split).
        progress: called with a short message before each step.
        quantizer: int8 by ``slimkit`` (its scales in every runtime) or ``runtime`` (each
            runtime's own quantizer, labelled in the rows).
        pin: pin each timing process to as many CPUs as it has threads (the last ones; see
            :func:`slimkit.measure.latency.pinned_cpus`); needs ``isolate``.

    Returns:
        ``{"rows": [...], "artifacts": [...], "runtime_versions": {...}}``, JSON-safe.
    """

    from slimkit.export.targets import RUNTIME_QUANTIZERS, prepare_for_runtime
    from slimkit.measure import LatencyConfig, compare_logits
    from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches, runtime_info

    say = progress or (lambda message: None)
    for runtime in runtimes:
        runtime_info(runtime)
        check_choice("runtime", runtime, tuple(RUNTIME_QUANTIZERS))
    for precision in precisions:
        check_choice("precision", precision, PRECISIONS)
    check_choice("quantizer", quantizer, QUANTIZERS)
    if pin and not isolate:
        raise ConfigError("pinning to CPUs applies to timing processes: use it with isolate=True")
    config = latency or LatencyConfig()
    rows: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    for item in models:
        test = item.data.test
        x_parity = test.head(len(test) if parity_samples is None else parity_samples).numpy()
        calibration = item.data.train.head(calibration_samples).numpy()
        batches = {b: batch_of(x_parity, b) for b in batch_sizes}
        # slimkit's int8 is calibrated once per model and carried to every runtime (the same
        # scales by construction); its integer reference and the fp32 one are computed once
        shared_int8 = (
            _slimkit_int8(item.model, calibration)
            if "int8" in precisions and quantizer == "slimkit"
            else None
        )
        shared_references = {"pytorch-fp32"} | (
            {"slimkit integer reference"} if shared_int8 is not None else set()
        )
        references: dict[str, np.ndarray] = {}
        for runtime in runtimes:
            fp32_p50: dict[tuple[int, int], float] = {}
            for precision in precisions:
                say(f"{item.name}: {runtime} {precision}: export")
                prepared = prepare_for_runtime(
                    item.model,
                    runtime,
                    folder / item.name,
                    stem=item.name,
                    batch_sizes=batch_sizes,
                    precision=precision,
                    calibration_data=calibration,
                    checkpoint=item.checkpoint,
                    input_shape=item.data.input_shape,
                    quantizer=quantizer,
                    quantized=shared_int8,
                )
                say(f"{item.name}: {runtime} {precision}: parity on {len(x_parity)} samples")
                name = prepared.reference_name
                if name in references:
                    reference = references[name]
                else:
                    reference = prepared.reference(x_parity)
                    if name in shared_references:
                        references[name] = reference
                for artifact in prepared.artifacts:
                    runner: Runner
                    if artifact.path is None:
                        assert prepared.in_memory is not None  # an artifact without a file
                        runner = PyTorchRunner.from_model(prepared.in_memory, threads=1)
                    else:
                        runner = load_runtime(runtime, artifact.path, threads=1)
                    parity = compare_logits(
                        reference, predict_batches(runner.run, x_parity), lsb=prepared.lsb
                    )
                    artifacts.append(
                        artifact.to_dict()
                        | {
                            "model": item.name,
                            "parity": parity.to_dict(),
                            "parity_reference": prepared.reference_name,
                            "notes": prepared.notes,
                        }
                    )
                    served = [b for b in batch_sizes if artifact.serves(b)]
                    for thread_count in threads:
                        say(
                            f"{item.name}: {runtime} {precision}: latency at batch "
                            f"{', '.join(map(str, served))}, {thread_count} thread(s)"
                        )
                        timed = _time_artifact(
                            artifact,
                            prepared.in_memory,
                            [batches[b] for b in served],
                            thread_count,
                            config,
                            isolate=isolate,
                            rounds=rounds,
                            pin=pin,
                        )
                        for b, stats, stability, repeat_stable in zip(
                            served,
                            timed["latency"],
                            timed["stability"],
                            timed["repeat_stable"],
                            strict=True,
                        ):
                            key = (b, thread_count)
                            if precision == "fp32":
                                fp32_p50[key] = stats.p50_ms
                            delegation = artifact.delegation
                            rows.append(
                                {
                                    "model": item.name,
                                    "runtime": runtime,
                                    "precision": precision,
                                    "quantizer": artifact.quantizer,
                                    "batch_size": b,
                                    "threads": thread_count,
                                    "p50_ms": stats.p50_ms,
                                    "p90_ms": stats.p90_ms,
                                    "p99_ms": stats.p99_ms,
                                    "stable": stats.stable,
                                    "drift": stats.drift,
                                    "repeats": stats.repeats,
                                    "repeat_stability": stability,
                                    "repeat_stable": repeat_stable,
                                    "speedup_vs_fp32": (
                                        fp32_p50[key] / stats.p50_ms if key in fp32_p50 else None
                                    ),
                                    "file": str(artifact.path) if artifact.path else None,
                                    "file_bytes": artifact.file_bytes,
                                    "peak_rss_bytes": timed["peak_rss_bytes"],
                                    "model_rss_bytes": timed["model_rss_bytes"],
                                    "isolated": timed["isolated"],
                                    "cpus": timed["cpus"],
                                    "max_abs_diff": parity.max_abs_diff,
                                    "argmax_agreement": parity.argmax_agreement,
                                    "within_1_lsb": parity.within_1_lsb,
                                    "parity_reference": prepared.reference_name,
                                    "delegation": delegation.summary() if delegation else None,
                                    "all_delegated": (
                                        delegation.all_delegated if delegation else None
                                    ),
                                }
                            )
    versions = {name: runtime_info(name).runner.version() for name in runtimes}
    return {"rows": rows, "artifacts": artifacts, "runtime_versions": versions}


BENCH_LEGEND = (
    "p50/p99: ms per batch (b = batch size, t = threads; * = the harness's window did not hold "
    "still, its first- and second-half medians differ by more than the tolerance); ×fp32: "
    "speedup over the same runtime's fp32; peak MiB: peak RSS of the process that loaded and ran "
    "the file; max|Δ|/agree: parity on the test split (fp32 vs PyTorch, int8 vs its reference); "
    "≤1 LSB: int8 outputs within one quantization step of slimkit's integer reference; "
    "rep Δ: |Δp50| between two runs in one process"
)


def repeat_stability_lines(rows: Sequence[dict[str, Any]], limit: float = 0.05) -> list[str]:
    """Summary lines of rows timed twice (``rounds=2``): overall, per thread count, flagged.

    A setting meets ``limit`` when the relative gap between its two p50s is below it; a row is
    "flagged" when either window's halves disagreed (``stable``/``repeat_stable`` False). Rows
    need ``repeat_stability`` (None: timed once), ``stable``, ``repeat_stable``, ``threads``,
    ``model``, ``runtime``, ``precision`` and ``batch_size``.
    """
    timed = [r for r in rows if r["repeat_stability"] is not None]
    if not timed:
        return []
    stabilities = [r["repeat_stability"] for r in timed]
    under = sum(s < limit for s in stabilities)
    per_threads = ", ".join(
        f"{t} thread{'s' if t > 1 else ''}: "
        f"{sum(r['repeat_stability'] < limit for r in timed if r['threads'] == t)}"
        f"/{sum(r['threads'] == t for r in timed)}"
        for t in sorted({r["threads"] for r in timed})
    )
    held = [r for r in timed if r["stable"] and r["repeat_stable"]]
    flagged = len(timed) - len(held)
    held_under = sum(r["repeat_stability"] < limit for r in held)
    misses = [r for r in timed if r["repeat_stability"] >= limit]
    lines = [
        f"repeat stability (|Δp50| between two runs in one process): median "
        f"{100 * statistics.median(stabilities):.1f}%, max {100 * max(stabilities):.1f}%, "
        f"{under}/{len(timed)} settings under {100 * limit:.0f}% ({per_threads})",
        f"repeat stability where both windows held still: {held_under}/{len(held)} under "
        f"{100 * limit:.0f}%; {flagged} setting(s) flagged by the harness (a window's halves "
        f"differed by more than its tolerance)",
    ]
    if misses:
        lines.append(
            "over "
            + f"{100 * limit:.0f}%: "
            + "; ".join(
                f"{r['model']} {r['runtime']} {r['precision']} b{r['batch_size']} "
                f"t{r['threads']} {100 * r['repeat_stability']:.1f}%"
                + ("" if r["stable"] and r["repeat_stable"] else " (flagged)")
                for r in misses
            )
        )
    return lines


def bench_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the bench table (one row per timed setting)."""
    from slimkit.report import format_bytes

    header = [
        "model",
        "runtime",
        "prec",
        "b",
        "t",
        "p50 ms",
        "p99 ms",
        "×fp32",
        "file",
        "peak MiB",
        "max|Δ|",
        "agree",
        "≤1 LSB",
        "XNNPACK",
        "rep Δ",
    ]
    cells = []
    for row in rows:
        delegation = row["all_delegated"]
        stability = row["repeat_stability"]
        cells.append(
            [
                row["model"],
                row["runtime"],
                row["precision"],
                str(row["batch_size"]),
                str(row["threads"]),
                f"{row['p50_ms']:.3f}" + ("" if row.get("stable", True) else "*"),
                f"{row['p99_ms']:.3f}",
                f"{row['speedup_vs_fp32']:.2f}" if row["speedup_vs_fp32"] is not None else "-",
                format_bytes(row["file_bytes"]),
                f"{row['peak_rss_bytes'] / MIB:.0f}" if row["peak_rss_bytes"] else "-",
                f"{row['max_abs_diff']:.1e}",
                f"{100 * row['argmax_agreement']:.2f}%",
                "-" if row.get("within_1_lsb") is None else f"{100 * row['within_1_lsb']:.2f}%",
                "-" if delegation is None else ("all" if delegation else "PARTIAL"),
                f"{100 * stability:.1f}%" if stability is not None else "-",
            ]
        )
    return header, cells


@app.command("bench")
def bench_command(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoints (.safetensors) to benchmark."),
    runtime: list[str] = typer.Option(
        list(BENCH_RUNTIMES),
        "--runtime",
        "-r",
        **one_of(BENCH_RUNTIMES),
        help="Runtime (repeatable).",
    ),
    precision: list[str] = typer.Option(
        ["fp32"], "--precision", "-p", **one_of(PRECISIONS), help="Precision (repeatable)."
    ),
    batch_size: list[int] = typer.Option(
        [1, 64], "--batch-size", "-b", help="Batch size (repeatable)."
    ),
    threads: list[int] = typer.Option([1], "--threads", "-t", help="CPU threads (repeatable)."),
    data: str | None = typer.Option(None, help=f"{DATA_HELP} (default: the checkpoint's)."),
    budget: float = typer.Option(1.0, help="Seconds of timing per setting at most."),
    isolate: bool = typer.Option(True, help="Time each file and thread count in its own process."),
    rounds: int = typer.Option(
        1, help="Timing rounds per setting in one process: 2 gives the repeat stability."
    ),
    pin: bool = typer.Option(
        False, help="Pin each timing process to as many CPUs as it has threads (the last ones)."
    ),
    quantizer: str = typer.Option(
        "slimkit",
        **one_of(QUANTIZERS),
        help="int8 by 'slimkit' (its own scales in every runtime) or 'runtime' (each runtime's "
        "own quantizer).",
    ),
    out: Path = typer.Option(Path("runs/bench"), help="Folder for the files and bench.json."),
) -> None:
    """Benchmark checkpoints in several runtimes: latency, speedup, size, memory, parity."""
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    check_inputs_exist(*checkpoints, what="checkpoint")
    from slimkit.cli.display import make_table
    from slimkit.data import load_dataset
    from slimkit.io import write_json_atomic, write_text_atomic
    from slimkit.measure import LatencyConfig, describe_cpu, environment
    from slimkit.report import markdown_table
    from slimkit.train import load_checkpoint

    # torchao (imported by the PT2E quantizers) warns about optional CUDA kernels it cannot load
    logging.getLogger("torchao").setLevel(logging.ERROR)
    console.print(f"CPU: {describe_cpu()}")
    models = []
    for path in checkpoints:
        loaded = load_checkpoint(path)
        models.append(
            BenchModel(
                name=path.stem,
                model=loaded.model,
                data=load_dataset(resolve_data(data, path)),
                checkpoint=path,
            )
        )
    with console.status("benchmarking") as status:
        result = run_bench(
            models,
            runtime,
            out,
            precisions=precision,
            batch_sizes=batch_size,
            threads=threads,
            latency=LatencyConfig(time_budget_s=budget),
            isolate=isolate,
            rounds=rounds,
            progress=lambda message: status.update(message),
            quantizer=quantizer,
            pin=pin,
        )
    header, cells = bench_table(result["rows"])
    console.print(make_table(header, cells, title="p50/p99 in ms per batch"))
    console.print(BENCH_LEGEND)
    summary = out / "bench.json"
    write_json_atomic(summary, {"environment": environment(), **result})
    write_text_atomic(out / "bench.md", markdown_table(header, cells) + "\n")
    console.print(f"results: {summary} and {out / 'bench.md'}")

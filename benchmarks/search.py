"""Search benchmark: slimkit's multi-objective search on MNIST against hand-made baselines.

One fixed trial budget per search (``--trials``, each trial a few epochs); objectives: validation
accuracy (max) and ONNX Runtime latency p50 at batch 64, 1 thread (min). The default space picks
LeNet-5 / an MLP / the MobileNet-v1-style CNN (widths), learning rate and epochs, and the
techniques distillation (teacher: the LeNet-5 baseline trained first), channel pruning and static
int8. Sections (each printed as a table and written to ``benchmarks/results/search.json`` with the
environment; trial folders go under ``benchmarks/results/search/``, which git ignores):

1. front: the Pareto front of the NSGA-II search (seed 0) beside the baselines LeNet-5 fp32,
   LeNet-5 int8 PTQ and the MobileNet-style CNN fp32, all measured by ``evaluate_plan`` (the code
   every trial runs): validation / test accuracy, ORT latency p50, file size; then the acceptance
   check (a model at >= 99.0 % test accuracy that is >= 3x faster than LeNet-5 fp32 or >= 5x
   smaller on disk).
2. hypervolume (``--skip-hypervolume``): of the front (accuracy max vs latency min, a fixed
   reference point) for NSGA-II, TPE and random search, same budget, ``--seeds`` each.
3. throughput (``--skip-throughput``): trials per hour with 1, 2 and 4 local workers on the
   journal file and on PostgreSQL (``--postgres-url``, else a throwaway local cluster when
   PostgreSQL is installed), ``--throughput-trials`` each.

    python benchmarks/search.py --quick                       # smoke run, a few minutes
    python benchmarks/search.py                               # 40 trials x 3 seeds x 3 samplers
    python benchmarks/search.py --skip-throughput --out benchmarks/results/search-front.json
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from slimkit.data import DataConfig, Dataset, load_dataset
from slimkit.data.dataset import parse_data_spec
from slimkit.io import write_json_atomic
from slimkit.measure import describe_cpu, environment
from slimkit.models import create_model
from slimkit.pareto import hypervolume_2d
from slimkit.report import markdown_table
from slimkit.report.table import format_bytes
from slimkit.search import (
    SearchSettings,
    Target,
    TrialPlan,
    evaluate_plan,
    feasible_trials,
    run_search,
    search_front,
)
from slimkit.search import default_space as slimkit_default_space
from slimkit.search.local_postgres import postgres_bin, throwaway_postgres
from slimkit.search.run import ATTR_METRICS, ATTR_PLAN
from slimkit.train import TrainConfig, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = f"mnist:{ROOT.parent / 'shared' / 'data' / 'mnist'}"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "search.json"
SAMPLERS = ("nsga2", "tpe", "random")
ACCURACY_BAR = 0.990
SPEEDUP_BAR = 3.0
SMALLER_BAR = 5.0
BEST_KEYS = ("label", "test_accuracy", "latency_p50_ms", "file_bytes", "speedup", "smaller")

# full-budget defaults, and what --quick changes (explicit flags win over both)
FULL = {
    "trials": 40,
    "seeds": 3,
    "max_train_samples": None,
    "epochs": None,  # searched: see default_space
    "baseline_epochs": (15, 8),  # LeNet-5, MobileNet-style CNN (benchmarks/baseline.py recipes)
    "throughput_trials": 8,
    "throughput_workers": "1,2,4",
    "latency_budget": 1.0,
    "hv_reference": "0.9,5.0",
}
QUICK = {
    "trials": 4,
    "seeds": 1,
    "max_train_samples": 1000,
    "epochs": 1,
    "baseline_epochs": (3, 2),
    "throughput_trials": 4,
    "throughput_workers": "1,2",
    "latency_budget": 0.3,
    "hv_reference": "0.0,5.0",
}


def default_space(epochs: int | None) -> dict[str, Any]:
    """slimkit's default space (three model families, lr/epochs, distil → prune → quantize),
    with the epochs fixed when ``epochs`` is given (the quick run)."""
    space = slimkit_default_space()
    if epochs is not None:
        space["train"]["epochs"] = epochs
    return space


# ---------------------------------------------------------------------------------------------
# environment and PostgreSQL


def lscpu() -> dict[str, str]:
    """``lscpu`` as a dict (empty when it is not installed)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() != "Flags":
            out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------
# baselines


def train_teacher(data: Dataset, folder: Path, epochs: int) -> tuple[torch.nn.Module, Path, float]:
    """LeNet-5 fp32, the baseline and the search's distillation teacher (a checkpoint)."""
    config = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, seed=0)
    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    started = time.perf_counter()
    train(model, data, config)
    seconds = time.perf_counter() - started
    path = save_checkpoint(
        model,
        folder / "lenet5-teacher.safetensors",
        metadata={"data": data.config.to_dict(), "train": config.to_dict()},
    )
    return model.eval(), path, seconds


def measure_baselines(
    data: Dataset,
    teacher: torch.nn.Module,
    target: Target,
    folder: Path,
    epochs: tuple[int, int],
) -> list[dict[str, Any]]:
    """The hand-made baselines, measured by ``evaluate_plan`` exactly as trials are."""
    lenet_train = {"epochs": epochs[0], "batch_size": 128, "lr": 2e-3}
    mobilenet_train = {"epochs": epochs[1], "batch_size": 128, "lr": 3e-3}
    plans = [
        ("LeNet-5 fp32", TrialPlan("lenet5", train=lenet_train), teacher),
        (
            "LeNet-5 int8 PTQ",
            TrialPlan(
                "lenet5",
                train=lenet_train,
                techniques=[{"technique": "static_int8", "calibration": "minmax"}],
            ),
            teacher,
        ),
        ("MobileNet-style CNN fp32", TrialPlan("mobilenet_v1_small", train=mobilenet_train), None),
    ]
    rows = []
    for label, plan, trained in plans:
        stem = label.lower().replace(" ", "-").replace("/", "")
        candidate, metrics = evaluate_plan(
            plan, data, target, folder, name=stem, source="baseline", trained=trained, seed=0
        )
        rows.append(row_of(label, "baseline", plan, metrics, candidate.artifact))
        print(f"  {label}: test {100 * metrics['test_accuracy']:.2f}%", flush=True)
    return rows


def row_of(
    label: str, kind: str, plan: TrialPlan, metrics: dict[str, Any], artifact: str | None
) -> dict[str, Any]:
    return {
        "label": label,
        "kind": kind,
        "plan": plan.to_dict(),
        "val_accuracy": metrics["accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        "latency_p50_ms": metrics["latency"],
        "latency_p90_ms": metrics.get("latency_p90"),
        "file_bytes": metrics["size"],
        "params": metrics.get("params"),
        "macs": metrics.get("macs"),
        "seconds": metrics.get("seconds"),
        "artifact": artifact,
    }


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    plan = TrialPlan.from_dict(trial.user_attrs[ATTR_PLAN])
    row = row_of(
        f"#{trial.number} {plan.describe()}",
        "search",
        plan,
        trial.user_attrs[ATTR_METRICS],
        None,
    )
    row["trial"] = trial.number
    return row


# ---------------------------------------------------------------------------------------------
# searches


def make_settings(
    args: argparse.Namespace, space: dict[str, Any], *, sampler: str, seed: int, trials: int
) -> SearchSettings:
    return SearchSettings(
        space=space,
        objectives=["accuracy", "latency"],
        target={
            "runtime": "onnxruntime",
            "batch_size": 64,
            "threads": 1,
            "latency_budget_s": args.latency_budget,
        },
        trials=trials,
        sampler=sampler,
        seed=seed,
        data=args.data_dict,
        teacher=str(args.teacher),
        out_dir="",  # set by the caller
        study="search",
    )


def run_timed(
    settings: SearchSettings, folder: Path, *, storage: str | None, workers: int, resume: bool
) -> tuple[optuna.Study, float]:
    """Run one search into ``folder`` (fresh unless ``resume``); returns the study and seconds."""
    if folder.exists() and not resume:
        shutil.rmtree(folder)
    settings.out_dir = str(folder)
    started = time.perf_counter()
    study = run_search(settings, storage=storage, workers=workers)
    return study, time.perf_counter() - started


def trial_counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        state.name.lower(): sum(t.state == state for t in trials)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }


def hypervolume(study: optuna.Study, reference: tuple[float, float]) -> float:
    points = [list(t.values) for t in feasible_trials(study)]
    return hypervolume_2d(points, ("max", "min"), reference)


# ---------------------------------------------------------------------------------------------
# checks and tables


def acceptance(rows: list[dict[str, Any]], lenet: dict[str, Any]) -> dict[str, Any]:
    """Best trial at >= 99.0 % test accuracy that is >= 3x faster or >= 5x smaller than LeNet-5."""
    scored = []
    for r in rows:
        speedup = lenet["latency_p50_ms"] / r["latency_p50_ms"]
        smaller = lenet["file_bytes"] / r["file_bytes"]
        scored.append({**r, "speedup": speedup, "smaller": smaller})
    accurate = [r for r in scored if r["test_accuracy"] >= ACCURACY_BAR]
    passing = [r for r in accurate if r["speedup"] >= SPEEDUP_BAR or r["smaller"] >= SMALLER_BAR]
    pool = passing or accurate or scored

    def merit(r: dict[str, Any]) -> tuple[float, float]:
        return (max(r["speedup"] / SPEEDUP_BAR, r["smaller"] / SMALLER_BAR), r["test_accuracy"])

    best = max(pool, key=merit) if pool else None
    return {
        "passed": bool(passing),
        "trials_checked": len(rows),
        "trials_at_accuracy": len(accurate),
        "trials_passing": len(passing),
        "best": None if best is None else {k: best[k] for k in BEST_KEYS},
        "lenet5_fp32": {k: lenet[k] for k in ("test_accuracy", "latency_p50_ms", "file_bytes")},
    }


def acceptance_line(check: dict[str, Any], where: str) -> str:
    best = check["best"]
    lenet = check["lenet5_fp32"]
    verdict = "PASS" if check["passed"] else "FAIL"
    head = (
        f"{verdict} acceptance ({where}): >= {100 * ACCURACY_BAR:.1f}% test accuracy and "
        f">= {SPEEDUP_BAR:.0f}x faster (ORT b64 t1) or >= {SMALLER_BAR:.0f}x smaller than "
        f"LeNet-5 fp32 ({100 * lenet['test_accuracy']:.2f}%, {lenet['latency_p50_ms']:.3f} ms, "
        f"{format_bytes(lenet['file_bytes'])}); {check['trials_at_accuracy']} of "
        f"{check['trials_checked']} trials reach the accuracy, {check['trials_passing']} pass"
    )
    if best is None:
        return head + "; no completed trial"
    return (
        head
        + f"; {'best' if check['passed'] else 'closest'}: {best['label']}: "
        + f"{100 * best['test_accuracy']:.2f}%, {best['latency_p50_ms']:.3f} ms "
        + f"({best['speedup']:.2f}x faster), {format_bytes(best['file_bytes'])} "
        + f"({best['smaller']:.2f}x smaller)"
    )


def front_table(rows: list[dict[str, Any]], lenet: dict[str, Any] | None) -> str:
    header = ["model", "val acc", "test acc", "ORT p50 ms (b64 t1)", "size"]
    if lenet:
        header += ["speedup vs LeNet-5", "smaller vs LeNet-5"]
    table = []
    for r in rows:
        line = [
            f"{r['label']} ({r['kind']})" if r["kind"] == "baseline" else r["label"],
            f"{100 * r['val_accuracy']:.2f}%",
            f"{100 * r['test_accuracy']:.2f}%",
            f"{r['latency_p50_ms']:.3f}",
            format_bytes(r["file_bytes"]),
        ]
        if lenet:
            line += [
                f"{lenet['latency_p50_ms'] / r['latency_p50_ms']:.2f}x",
                f"{lenet['file_bytes'] / r['file_bytes']:.2f}x",
            ]
        table.append(line)
    return markdown_table(header, table)


# ---------------------------------------------------------------------------------------------
# main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="data spec (mnist:PATH)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run")
    parser.add_argument("--trials", type=int, help="finished trials per search (40; quick 4)")
    parser.add_argument("--seeds", type=int, help="seeds per sampler (3; quick 1)")
    parser.add_argument(
        "--max-train-samples", type=int, help="subsample the training split (quick: 1000)"
    )
    parser.add_argument("--epochs", type=int, help="fix the epochs of every trial (quick: 1)")
    parser.add_argument("--workers", type=int, default=1, help="local workers of the searches")
    parser.add_argument("--latency-budget", type=float, help="seconds of timing per candidate")
    parser.add_argument(
        "--hv-reference",
        help="hypervolume reference point ACCURACY,LATENCY_MS (0.9,5.0; quick 0.0,5.0)",
    )
    parser.add_argument("--skip-front", action="store_true", help="no baselines/front/acceptance")
    parser.add_argument("--skip-hypervolume", action="store_true", help="only NSGA-II seed 0")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-trials", type=int, help="trials per throughput run (8)")
    parser.add_argument("--throughput-workers", help="comma-separated worker counts (1,2,4)")
    parser.add_argument("--postgres-url", help="PostgreSQL for the throughput section")
    parser.add_argument("--no-postgres", action="store_true", help="journal file only")
    parser.add_argument("--resume", action="store_true", help="keep and resume earlier run folders")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("torch.onnx", "onnxruntime", "slimkit.search.study"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # train on the cores this process may use (taskset -c 1 keeps a core free for other work)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    env = environment()
    env["lscpu"] = lscpu()
    print(f"CPU: {describe_cpu(env)}", flush=True)
    folder = args.out.parent / "search"
    folder.mkdir(parents=True, exist_ok=True)
    args.data_dict = parse_data_spec(
        args.data, seed=0, max_train_samples=args.max_train_samples
    ).to_dict()
    data = load_dataset(DataConfig(**args.data_dict))
    reference = tuple(float(v) for v in args.hv_reference.split(","))
    assert len(reference) == 2, "--hv-reference takes ACCURACY,LATENCY_MS"
    space = default_space(args.epochs)
    target = Target(batch_size=64, threads=1, latency_budget_s=args.latency_budget)
    started_all = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "search",
        "environment": env,
        "mode": "quick (smoke run, not the full budget)" if args.quick else "full",
        "settings": {
            "data": args.data_dict,
            "trials": args.trials,
            "seeds": args.seeds,
            "workers": args.workers,
            "target": target.to_dict(),
            "objectives": ["accuracy (validation, max)", "latency p50 ms (min)"],
            "space": space,
            "baseline_epochs": list(args.baseline_epochs),
            "hypervolume_reference": {"accuracy": reference[0], "latency_ms": reference[1]},
        },
    }
    lines: list[str] = []

    print(f"LeNet-5 baseline / teacher ({args.baseline_epochs[0]} epochs)...", flush=True)
    teacher, args.teacher, teacher_s = train_teacher(data, folder, args.baseline_epochs[0])
    print(f"  trained in {teacher_s:.0f} s", flush=True)
    baselines: list[dict[str, Any]] = []
    lenet: dict[str, Any] | None = None
    if not args.skip_front:
        print("baselines (evaluate_plan)...", flush=True)
        baselines = measure_baselines(
            data, teacher, target, folder / "baselines", args.baseline_epochs
        )
        lenet = baselines[0]

    # searches: NSGA-II seed 0 is the main search (its front is the table); the others add the
    # hypervolume comparison
    runs: list[dict[str, Any]] = []
    plan = [("nsga2", 0)]
    if not args.skip_hypervolume:
        plan = [(s, seed) for s in SAMPLERS for seed in range(args.seeds)]
    studies: dict[tuple[str, int], optuna.Study] = {}
    for sampler, seed in plan:
        print(f"search {sampler} seed {seed}: {args.trials} trials...", flush=True)
        settings = make_settings(args, space, sampler=sampler, seed=seed, trials=args.trials)
        study, seconds = run_timed(
            settings,
            folder / "runs" / f"{sampler}-seed{seed}",
            storage=None,
            workers=args.workers,
            resume=args.resume,
        )
        studies[(sampler, seed)] = study
        rows = [trial_row(t) for t in feasible_trials(study)]
        run = {
            "sampler": sampler,
            "seed": seed,
            "seconds": seconds,
            "counts": trial_counts(study),
            "hypervolume": hypervolume(study, reference),
            "front": [t.number for t in search_front(study)],
            "trials": rows,
        }
        if lenet is not None:
            run["acceptance"] = acceptance(rows, lenet)
        runs.append(run)
        print(
            f"  {seconds:.0f} s, {run['counts']}, hypervolume {run['hypervolume']:.4f}",
            flush=True,
        )
    result["runs"] = runs

    main_run = runs[0]
    front_rows = [r for r in main_run["trials"] if r["trial"] in main_run["front"]]
    front_rows.sort(key=lambda r: r["latency_p50_ms"])
    print(
        f"\n### Pareto front of the NSGA-II search (seed 0, {args.trials} trials) beside the "
        "baselines\n(ONNX Runtime, batch 64, 1 thread; val = the search's objective, test = "
        "10,000 MNIST test images)\n"
    )
    print(front_table(baselines + front_rows, lenet))
    result["front"] = {"baselines": baselines, "front": front_rows}
    if lenet is not None:
        lines.append(acceptance_line(main_run["acceptance"], "NSGA-II seed 0"))
        others = [r for r in runs[1:] if "acceptance" in r]
        if others:
            passed = sum(r["acceptance"]["passed"] for r in others)
            lines.append(f"  the other {len(others)} searches: {passed} pass the same check")

    if not args.skip_hypervolume:
        header = ["sampler", *[f"seed {s}" for s in range(args.seeds)], "mean", "std"]
        table, means = [], {}
        for sampler in SAMPLERS:
            values = [r["hypervolume"] for r in runs if r["sampler"] == sampler]
            means[sampler] = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            table.append([sampler, *[f"{v:.4f}" for v in values], f"{means[sampler]:.4f}"])
            table[-1].append(f"{std:.4f}")
        print(
            f"\n### Hypervolume (accuracy max vs latency ms min; reference accuracy "
            f"{reference[0]}, latency {reference[1]} ms), {args.trials} trials each\n"
        )
        print(markdown_table(header, table))
        result["hypervolume"] = {
            "reference": {"accuracy": reference[0], "latency_ms": reference[1]},
            "mean": means,
        }
        for sampler in ("nsga2", "tpe"):
            verdict = "PASS" if means[sampler] > means["random"] else "FAIL"
            lines.append(
                f"{verdict} {sampler} beats random on mean hypervolume over {args.seeds} "
                f"seed(s): {means[sampler]:.4f} vs {means['random']:.4f}"
            )

    if not args.skip_throughput:
        result["throughput"] = throughput(args, space, folder, lines)

    if args.quick:
        lines.insert(
            0,
            "quick mode: a smoke run of the script (tiny budget); these verdicts are not results",
        )
    result["verdicts"] = lines
    result["seconds"] = time.perf_counter() - started_all
    print()
    print("\n".join(lines))
    write_json_atomic(args.out, result)
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s in all)")
    return 0


def throughput(
    args: argparse.Namespace, space: dict[str, Any], folder: Path, lines: list[str]
) -> list[dict[str, Any]]:
    """Trials per hour for each worker count on the journal file and on PostgreSQL."""
    counts = [int(w) for w in str(args.throughput_workers).split(",")]
    rows: list[dict[str, Any]] = []

    def measure_storage(kind: str, storage: str | None) -> None:
        for workers in counts:
            print(f"throughput: {kind}, {workers} worker(s)...", flush=True)
            settings = make_settings(
                args, space, sampler="random", seed=0, trials=args.throughput_trials
            )
            settings.study = f"throughput-{kind}-w{workers}-{int(time.time())}"
            study, seconds = run_timed(
                settings,
                folder / "throughput" / f"{kind}-w{workers}",
                storage=storage,
                workers=workers,
                resume=False,
            )
            state = trial_counts(study)
            finished = state["complete"] + state["pruned"]
            trial_s = [
                t.user_attrs[ATTR_METRICS]["seconds"]
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            ]
            rows.append(
                {
                    "storage": kind,
                    "workers": workers,
                    "finished": finished,
                    "counts": state,
                    "seconds": seconds,
                    "trials_per_hour": 3600 * finished / seconds,
                    "mean_trial_seconds": statistics.fmean(trial_s) if trial_s else None,
                }
            )
            print(f"  {seconds:.0f} s, {rows[-1]['trials_per_hour']:.0f} trials/h", flush=True)

    measure_storage("journal", None)
    if args.postgres_url:
        measure_storage("postgresql", args.postgres_url)
    elif not args.no_postgres and postgres_bin() is not None:
        with throwaway_postgres() as url:
            measure_storage("postgresql", url)
    else:
        lines.append("throughput on PostgreSQL skipped (not installed; give --postgres-url)")
    header = ["storage", "workers", "finished", "wall s", "trials / hour", "mean trial s"]
    table = [
        [
            r["storage"],
            str(r["workers"]),
            str(r["finished"]),
            f"{r['seconds']:.1f}",
            f"{r['trials_per_hour']:.0f}",
            f"{r['mean_trial_seconds']:.1f}" if r["mean_trial_seconds"] else "-",
        ]
        for r in rows
    ]
    print(
        f"\n### Throughput ({args.throughput_trials} trials per run, random sampler, wall time "
        f"including worker start-up; {os.cpu_count()} CPUs)\n"
    )
    print(markdown_table(header, table))
    return rows


if __name__ == "__main__":
    sys.exit(main())

"""Distillation benchmark: Hinton et al. 2015's MNIST table at CPU scale, omitted 3s, and digits.

Hinton, Vinyals and Dean 2015 ("Distilling the Knowledge in a Neural Network", §3) train a
784-1200-1200-10 teacher with dropout and ±2 px jitter (67 test errors), a 784-800-800-10 student
without regularization (146 errors), and the same student distilled at T = 20 (74 errors). This
script does the same with Adam and a cosine schedule and far fewer epochs (printed with the
table): the teacher is trained once (seed 0) and reused, its logits on the training split cached;
each student seed starts from the same weights alone and distilled. Then:

- omitted 3s: the student is distilled on the training split without any 3 (it never sees one);
  errors on the 1,010 test 3s are reported before and after adding a bias to the class-3 logit,
  the bias chosen on the validation split (the paper chose +3.5 on the test set);
- digits: a small MLP alone and distilled from a large one (same epochs), over fresh seeds.

It prints the tables beside the paper's numbers and writes ``benchmarks/results/distillation.json``.

    python benchmarks/distillation.py [--mnist PATH] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.data import Dataset, Split, TensorSplit, load_dataset
from slimkit.io import write_json_atomic
from slimkit.measure import describe_cpu, environment
from slimkit.models import create_model
from slimkit.report import markdown_table
from slimkit.techniques.distill import DistillationConfig, distill, predict_logits
from slimkit.train import (
    AugmentConfig,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
PAPER = {
    "teacher": 67,
    "student": 146,
    "distilled": 74,
    "omitted_errors": 206,
    "omitted_threes": 133,
    "shifted_errors": 109,
    "shifted_threes": 14,
    "shift": 3.5,
    "threes": 1010,
}
OMITTED_CLASS = 3


@dataclass(frozen=True)
class Plan:
    """Epochs, seeds and distillation settings of one run."""

    teacher_epochs: int = 50
    student_epochs: int = 15
    seeds: tuple[int, ...] = (0, 1, 2)
    temperature: float = 20.0
    alpha: float = 0.5
    lr: float = 1e-3
    batch_size: int = 128
    max_train_samples: int | None = None
    digits_teacher_epochs: int = 100
    digits_student_epochs: int = 300
    digits_seeds: tuple[int, ...] = tuple(range(100, 110))  # not the seeds used to choose T, α
    digits_temperature: float = 2.0
    digits_alpha: float = 0.9


FULL = Plan()
QUICK = Plan(
    teacher_epochs=2,
    student_epochs=2,
    seeds=(0, 1),
    max_train_samples=6000,
    digits_teacher_epochs=20,
    digits_student_epochs=20,
    digits_seeds=(100, 101),
)


def count_errors(logits: torch.Tensor, split: Split, label: int | None = None) -> int:
    """Misclassified samples of ``split`` (only those of class ``label`` when given)."""
    wrong = logits.argmax(1) != split.y
    if label is not None:
        wrong = wrong & (split.y == label)
    return int(wrong.sum())


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def mlp(data: Dataset, hidden: list[int], seed: int, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)  # the same seed gives the same initial weights
    return create_model("mlp", input_shape=data.input_shape, hidden=hidden, **kwargs)


def get_teacher(data: Dataset, plan: Plan, folder: Path, retrain: bool) -> tuple[nn.Module, float]:
    """The MNIST teacher (dropout, input dropout, ±2 px jitter), trained once and kept on disk."""
    name = f"teacher-e{plan.teacher_epochs}-n{plan.max_train_samples or 'all'}.safetensors"
    path = folder / name
    if path.is_file() and not retrain:
        print(f"  teacher: loaded {path} (--retrain to train it again)")
        return load_checkpoint(path).model, 0.0
    teacher = mlp(data, [1200, 1200], seed=0, dropout=0.5, input_dropout=0.2)
    config = TrainConfig(
        epochs=plan.teacher_epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        seed=0,
        augment=AugmentConfig(shift=2),
    )
    started = time.perf_counter()
    train(teacher, data, config)
    seconds = time.perf_counter() - started
    print(f"  teacher: trained {plan.teacher_epochs} epochs in {seconds:.0f} s", flush=True)
    save_checkpoint(
        teacher, path, metadata={"data": data.config.to_dict(), "train": config.to_dict()}
    )
    return teacher.eval(), seconds


def student_pair(
    data: Dataset, teacher: nn.Module, plan: Plan, seed: int
) -> tuple[nn.Module, nn.Module, dict[str, float]]:
    """The 800-800 student alone and distilled, from the same initial weights."""
    seconds = {}
    alone = mlp(data, [800, 800], seed)
    started = time.perf_counter()
    train(
        alone,
        data,
        TrainConfig(epochs=plan.student_epochs, batch_size=plan.batch_size, lr=plan.lr, seed=seed),
    )
    seconds["alone"] = time.perf_counter() - started
    distilled = mlp(data, [800, 800], seed)
    config = DistillationConfig(
        teacher=teacher,
        temperature=plan.temperature,
        alpha=plan.alpha,
        epochs=plan.student_epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        seed=seed,
    )
    started = time.perf_counter()
    distill(distilled, data, config)
    seconds["distilled"] = time.perf_counter() - started
    return alone.eval(), distilled.eval(), seconds


def mnist_table(data: Dataset, teacher: nn.Module, plan: Plan) -> dict[str, Any]:
    """Test errors of the teacher, the students alone and distilled, and the gap closed."""
    teacher_errors = count_errors(predict_logits(teacher, data.test.x), data.test)
    rows: list[dict[str, Any]] = []
    for seed in plan.seeds:
        alone, distilled, seconds = student_pair(data, teacher, plan, seed)
        row = {
            "seed": seed,
            "alone": count_errors(predict_logits(alone, data.test.x), data.test),
            "distilled": count_errors(predict_logits(distilled, data.test.x), data.test),
            "seconds": seconds,
        }
        gap = row["alone"] - teacher_errors
        row["gap_closed"] = (row["alone"] - row["distilled"]) / gap if gap > 0 else None
        rows.append(row)
        print(
            f"  seed {seed}: alone {row['alone']}, distilled {row['distilled']} errors "
            f"({seconds['alone']:.0f} s + {seconds['distilled']:.0f} s)",
            flush=True,
        )
    alone = spread([r["alone"] for r in rows])
    distilled = spread([r["distilled"] for r in rows])
    gap = alone["mean"] - teacher_errors
    return {
        "teacher_errors": teacher_errors,
        "students": rows,
        "alone": alone,
        "distilled": distilled,
        "gap_closed": (alone["mean"] - distilled["mean"]) / gap if gap > 0 else None,
        "gap_closed_per_seed": spread(
            [r["gap_closed"] for r in rows if r["gap_closed"] is not None] or [0.0]
        ),
    }


def without_class(data: Dataset, label: int) -> Dataset:
    """The data set with every sample of ``label`` removed from train and validation."""
    train_keep = data.train.y != label
    val_keep = data.val.y != label
    return dataclasses.replace(
        data,
        train=TensorSplit(data.train.x[train_keep], data.train.y[train_keep]),
        val=TensorSplit(data.val.x[val_keep], data.val.y[val_keep]),
    )


def omitted_class(data: Dataset, teacher: nn.Module, plan: Plan) -> dict[str, Any]:
    """Distill without any 3 in the transfer set; then raise the class-3 bias (chosen on val)."""
    transfer = without_class(data, OMITTED_CLASS)
    student = mlp(data, [800, 800], plan.seeds[0])
    config = DistillationConfig(
        teacher=teacher,
        temperature=plan.temperature,
        alpha=plan.alpha,
        epochs=plan.student_epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        seed=plan.seeds[0],
    )
    started = time.perf_counter()
    distill(student, transfer, config)
    seconds = time.perf_counter() - started
    val_logits = predict_logits(student, data.val.x)  # the full validation split, 3s included
    test_logits = predict_logits(student, data.test.x)
    shifts = np.round(np.arange(0.0, 10.001, 0.25), 2)
    val_errors = []
    for shift in shifts:
        shifted = val_logits.clone()
        shifted[:, OMITTED_CLASS] += float(shift)
        val_errors.append(count_errors(shifted, data.val))
    best = float(shifts[int(np.argmin(val_errors))])  # the smallest shift with the fewest errors
    shifted_test = test_logits.clone()
    shifted_test[:, OMITTED_CLASS] += best
    result = {
        "transfer_samples": len(transfer.train),
        "threes_in_test": int((data.test.y == OMITTED_CLASS).sum()),
        "errors": count_errors(test_logits, data.test),
        "errors_on_threes": count_errors(test_logits, data.test, OMITTED_CLASS),
        "bias_shift": best,
        "bias_shift_chosen_on": "validation split (with its 3s)",
        "shifted_errors": count_errors(shifted_test, data.test),
        "shifted_errors_on_threes": count_errors(shifted_test, data.test, OMITTED_CLASS),
        "val_errors_by_shift": dict(zip(map(float, shifts), val_errors, strict=True)),
        "seconds": seconds,
    }
    print(
        f"  omitted 3s: {result['errors']} errors ({result['errors_on_threes']} on 3s); "
        f"bias +{best}: {result['shifted_errors']} ({result['shifted_errors_on_threes']} on 3s)",
        flush=True,
    )
    return result


def digits_experiment(plan: Plan) -> dict[str, Any]:
    """A small MLP on digits, alone and distilled from LeNet-5, same (long) epochs, fresh seeds."""
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    teacher = create_model("lenet5", input_shape=data.input_shape)
    config = TrainConfig(
        epochs=plan.digits_teacher_epochs, seed=0, augment=AugmentConfig(mixup_alpha=0.2)
    )
    train(teacher, data, config)
    teacher.eval()
    logits = predict_logits(teacher, data.test.x)
    teacher_accuracy = float((logits.argmax(1) == data.test.y).float().mean())
    rows = []
    for seed in plan.digits_seeds:
        accuracy = {}
        for mode in ("alone", "distilled"):
            student = mlp(data, [32], seed)
            if mode == "alone":
                config = TrainConfig(epochs=plan.digits_student_epochs, lr=1e-2, seed=seed)
                train(student, data, config)
            else:
                distillation = DistillationConfig(
                    teacher=teacher,
                    temperature=plan.digits_temperature,
                    alpha=plan.digits_alpha,
                    epochs=plan.digits_student_epochs,
                    lr=1e-2,
                    seed=seed,
                )
                distill(student, data, distillation)
            logits = predict_logits(student, data.test.x)
            accuracy[mode] = float((logits.argmax(1) == data.test.y).float().mean())
        rows.append({"seed": seed, **accuracy})
    alone = spread([r["alone"] for r in rows])
    distilled = spread([r["distilled"] for r in rows])
    result = {
        "teacher": f"LeNet-5 (mixup 0.2, {plan.digits_teacher_epochs} epochs)",
        "student": "mlp 64-32-10",
        "teacher_accuracy": teacher_accuracy,
        "test_samples": len(data.test),
        "rows": rows,
        "alone": alone,
        "distilled": distilled,
        "improvement_points": 100 * (distilled["mean"] - alone["mean"]),
        "seeds_improved": sum(r["distilled"] > r["alone"] for r in rows),
        "seeds_tied": sum(r["distilled"] == r["alone"] for r in rows),
    }
    print(
        f"  digits: alone {100 * alone['mean']:.2f}%, distilled {100 * distilled['mean']:.2f}% "
        f"(teacher {100 * teacher_accuracy:.2f}%)",
        flush=True,
    )
    return result


def fmt_spread(s: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    return (
        f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} "
        f"[{scale * s['min']:.{digits}f}, {scale * s['max']:.{digits}f}]"
    )


def print_tables(results: dict[str, Any], plan: Plan) -> list[str]:
    table = results["mnist"]
    seeds = ", ".join(map(str, plan.seeds))
    print(
        f"\n### MNIST test errors / 10,000 (teacher {plan.teacher_epochs} epochs, students "
        f"{plan.student_epochs} epochs, seeds {seeds}; mean ± std [min, max])\n"
    )
    rows = [
        [
            "teacher 784-1200-1200-10, dropout, ±2 px jitter",
            str(PAPER["teacher"]),
            str(table["teacher_errors"]),
        ],
        [
            "student 784-800-800-10, no regularization",
            str(PAPER["student"]),
            fmt_spread(table["alone"]),
        ],
        [
            f"same student, distilled at T = {plan.temperature:g} (α = {plan.alpha:g})",
            str(PAPER["distilled"]),
            fmt_spread(table["distilled"]),
        ],
    ]
    print(markdown_table(["model", "paper", "slimkit"], rows))
    paper_closed = (PAPER["student"] - PAPER["distilled"]) / (PAPER["student"] - PAPER["teacher"])
    closed = table["gap_closed"]
    per_seed = table["gap_closed_per_seed"]
    if closed is None:
        verdict = "the teacher makes no fewer errors than the students: no gap to close (FAIL)"
    else:
        verdict = (
            f"{100 * closed:.0f}% of the mean (per seed {100 * per_seed['min']:.0f}%–"
            f"{100 * per_seed['max']:.0f}%); paper {100 * paper_closed:.0f}%; acceptance >= 60%: "
            f"{'PASS' if closed >= 0.6 else 'FAIL'}"
        )
    lines = [f"gap closed: {verdict}"]
    omitted = results["omitted_three"]
    print(f"\n### Omitted 3s (transfer set of {omitted['transfer_samples']} images, no 3)\n")
    print(
        markdown_table(
            [
                "",
                "paper errors",
                "paper on 3s",
                "slimkit errors",
                f"slimkit on {omitted['threes_in_test']} 3s",
            ],
            [
                [
                    "distilled, no 3 in the transfer set",
                    str(PAPER["omitted_errors"]),
                    str(PAPER["omitted_threes"]),
                    str(omitted["errors"]),
                    str(omitted["errors_on_threes"]),
                ],
                [
                    f"class-3 bias +{PAPER['shift']} (paper, on test) / "
                    f"+{omitted['bias_shift']:g} (slimkit, on validation)",
                    str(PAPER["shifted_errors"]),
                    str(PAPER["shifted_threes"]),
                    str(omitted["shifted_errors"]),
                    str(omitted["shifted_errors_on_threes"]),
                ],
            ],
        )
    )
    digits = results["digits"]
    print(
        f"\n### digits: {digits['student']} alone vs distilled from {digits['teacher']} "
        f"(teacher {100 * digits['teacher_accuracy']:.2f}%), {plan.digits_student_epochs} epochs "
        f"each, T = {plan.digits_temperature:g}, α = {plan.digits_alpha:g}, "
        f"{len(plan.digits_seeds)} seeds, test accuracy % on {digits['test_samples']} images\n"
    )
    print(
        markdown_table(
            ["student", "test accuracy %"],
            [
                ["alone", fmt_spread(digits["alone"], 100, 2)],
                ["distilled", fmt_spread(digits["distilled"], 100, 2)],
            ],
        )
    )
    improves = "improves" if digits["improvement_points"] > 0 else "does NOT improve"
    lines.append(
        f"digits: distillation {improves} the mean test accuracy by "
        f"{digits['improvement_points']:+.2f} points "
        f"({digits['seeds_improved']} of {len(digits['rows'])} seeds better, "
        f"{digits['seeds_tied']} tied)"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run: subset, few epochs")
    parser.add_argument("--retrain", action="store_true", help="train the teacher even if kept")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every epoch")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "distillation.json"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="    %(message)s"
    )
    torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL
    folder = args.out.parent / "distillation"
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"CPU: {describe_cpu()}; {args.threads} threads; load average {load_before[0]:.2f}")
    data = load_dataset(f"mnist:{args.mnist}", seed=0, max_train_samples=plan.max_train_samples)
    teacher, teacher_seconds = get_teacher(data, plan, folder, args.retrain)
    results: dict[str, Any] = {"mnist": mnist_table(data, teacher, plan)}
    results["mnist"]["teacher_train_seconds"] = teacher_seconds
    results["omitted_three"] = omitted_class(data, teacher, plan)
    results["digits"] = digits_experiment(plan)
    lines = print_tables(results, plan)
    total = time.perf_counter() - started
    load_after = os.getloadavg()
    how = "teacher loaded" if teacher_seconds == 0 else "teacher trained"
    lines.append(
        f"total {total / 60:.1f} min ({how}), load average {load_before[0]:.2f} at start, "
        f"{load_after[0]:.2f} at the end"
    )
    if args.quick:
        lines.append("--quick: a smoke run on a subset with 2 epochs; its numbers say nothing")
    print()
    print("\n".join(lines))
    write_json_atomic(
        args.out,
        {
            "benchmark": "distillation",
            "quick": args.quick,
            "plan": dataclasses.asdict(plan),
            "threads": args.threads,
            "paper": PAPER,
            "environment": environment(),
            "load_average": {"start": load_before, "end": load_after},
            "seconds": total,
            **results,
            "verdicts": lines,
        },
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

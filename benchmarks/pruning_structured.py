"""Structured-pruning section of ``benchmarks/pruning.py`` (imported by it).

LeNet-5 and the MobileNet-v1-style CNN on MNIST: slimkit channel pruning of 25%, 50% and 75% of
the channels of every prunable group (L1 importance), each fine-tuned for the same budget (2
epochs), against the dense model: test accuracy, MACs, parameters, and ONNX Runtime latency (batch
1 and 64, 1 and 2 threads) measured side by side in one run. Anchor: Torch-Pruning's
``DependencyGraph``-based ``MagnitudePruner`` at 50% with the same fine-tuning budget (where it
installs), plus which zoo models each pruner handles.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit.data import Dataset
from slimkit.export import export
from slimkit.measure import LatencyConfig, count_costs, measure_latency
from slimkit.models import create_model, list_models
from slimkit.runtime import load_runtime, predict_batches
from slimkit.techniques.prune.structured import prune_channels
from slimkit.train import TrainConfig, load_checkpoint, save_checkpoint, train

SETTINGS = [(1, 1), (1, 2), (64, 1), (64, 2)]
RATIOS = (0.25, 0.5, 0.75)
DENSE_RECIPES = {
    "lenet5": TrainConfig(epochs=15, batch_size=128, lr=2e-3, seed=0),
    "mobilenet_v1_small": TrainConfig(epochs=8, batch_size=128, lr=3e-3, seed=0),
}
FINE_TUNE = TrainConfig(epochs=2, batch_size=128, lr=1e-3, seed=0)


def _dense(name: str, data: Dataset, folder: Path, reuse: list[Path]) -> torch.nn.Module:
    for candidate in [folder / f"{name}-mnist.safetensors", *reuse]:
        if candidate.is_file() and candidate.name.startswith(name + "-mnist"):
            return load_checkpoint(candidate).model
    torch.manual_seed(0)
    model = create_model(name, input_shape=data.input_shape)
    train(model, data, DENSE_RECIPES[name])
    save_checkpoint(
        model, folder / f"{name}-mnist.safetensors", metadata={"data": data.config.to_dict()}
    )
    return model.eval()


def _measure(
    label: str, model: torch.nn.Module, data: Dataset, folder: Path, budget: float
) -> dict[str, Any]:
    path = export(model, folder / f"{label}.onnx", input_shape=data.input_shape).path
    x = data.test.x.numpy()
    logits = predict_batches(load_runtime("onnxruntime", path, threads=2).run, x)
    latency = {}
    config = LatencyConfig(time_budget_s=budget)
    for threads in (1, 2):
        runner = load_runtime("onnxruntime", path, threads=threads)
        for batch, t in SETTINGS:
            if t == threads:
                latency[f"b{batch} t{t}"] = measure_latency(
                    runner.run, x[:batch], threads=t, config=config
                ).p50_ms
    cost = count_costs(model, data.input_shape)
    return {
        "accuracy": float(np.mean(logits.argmax(1) == data.test.y.numpy())),
        "macs": cost.macs,
        "params": cost.params,
        "file_bytes": path.stat().st_size,
        "latency": latency,
    }


def _torch_pruning(
    model: torch.nn.Module, ratio: float, input_shape: tuple[int, ...]
) -> torch.nn.Module:
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    example = torch.zeros((1, *input_shape))
    last = [m for m in pruned.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(
        pruned,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[last],
    )
    pruner.step()
    return pruned


def coverage(input_shape: tuple[int, ...]) -> list[dict[str, str]]:
    """Which zoo models each pruner handles at 50% (error text where it fails)."""
    rows = []
    for name in list_models():
        if name in ("mobilenet_v1", "mobilenet_v2"):
            continue  # 224x224 models for counting
        try:
            model = create_model(name, input_shape=input_shape).eval()
        except Exception as error:
            rows.append({"model": name, "slimkit": f"n/a ({error})", "torch_pruning": "n/a"})
            continue
        row = {"model": name}
        for label, fn in (
            ("slimkit", lambda m: prune_channels(m, ratio=0.5, input_shape=input_shape)),
            ("torch_pruning", lambda m: _torch_pruning(m, 0.5, input_shape)),
        ):
            try:
                pruned = fn(model)
                pruned(torch.zeros((2, *input_shape)))
                row[label] = (
                    "ok"
                    if count_costs(pruned, input_shape).macs < count_costs(model, input_shape).macs
                    else "no change"
                )
            except Exception as error:
                row[label] = f"fails: {type(error).__name__}: {str(error).splitlines()[0][:90]}"
        rows.append(row)
    return rows


def structured_section(
    data: Dataset,
    folder: Path,
    *,
    budget: float = 1.5,
    quick: bool = False,
    reuse: list[Path] | None = None,
    fine_tune_epochs: int = FINE_TUNE.epochs,
) -> dict[str, Any]:
    """Run the structured-pruning comparison; returns rows and prints progress."""
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"rows": [], "coverage": []}
    ratios = (0.5,) if quick else RATIOS
    epochs = 1 if quick else fine_tune_epochs
    fine_tune = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=0)
    results["fine_tune_epochs"] = epochs
    for name in ("lenet5", "mobilenet_v1_small"):
        dense = _dense(name, data, folder, reuse or [])
        base = _measure(f"{name}-dense", dense, data, folder, budget)
        results["rows"].append({"model": name, "method": "dense", "ratio": 0.0, **base})
        print(f"  {name} dense: {100 * base['accuracy']:.2f}%", flush=True)
        for ratio in ratios:
            for method in ("slimkit", "torch_pruning") if ratio == 0.5 else ("slimkit",):
                started = time.perf_counter()
                try:
                    if method == "slimkit":
                        pruned = prune_channels(dense, ratio=ratio, importance="l1")
                    else:
                        pruned = _torch_pruning(dense, ratio, data.input_shape)
                except ImportError:
                    print(
                        "  torch-pruning not installed (pip install torch-pruning): anchor skipped"
                    )
                    continue
                train(pruned, data, fine_tune)
                row = _measure(
                    f"{name}-{method}-{int(100 * ratio)}", pruned.eval(), data, folder, budget
                )
                row.update(
                    {
                        "model": name,
                        "method": method,
                        "ratio": ratio,
                        "seconds": time.perf_counter() - started,
                        "drop_points": 100 * (base["accuracy"] - row["accuracy"]),
                        "speedup": {k: base["latency"][k] / v for k, v in row["latency"].items()},
                    }
                )
                results["rows"].append(row)
                print(
                    f"  {name} {method} {int(100 * ratio)}%: {100 * row['accuracy']:.2f}%, "
                    f"b64 t1 speedup {row['speedup']['b64 t1']:.2f}x",
                    flush=True,
                )
    results["coverage"] = coverage((1, 28, 28))
    return results


def structured_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for printing."""
    header = [
        "model",
        "method",
        "removed",
        "acc",
        "Δ pts",
        "MACs",
        "params",
        *[f"b{b} t{t}" for b, t in SETTINGS],
        "speedup b64 t1",
    ]
    rows = []
    for r in results["rows"]:
        rows.append(
            [
                r["model"],
                r["method"],
                f"{int(100 * r['ratio'])}%",
                f"{100 * r['accuracy']:.2f}%",
                f"{-r.get('drop_points', 0.0):+.2f}",
                f"{r['macs']:,}",
                f"{r['params']:,}",
                *[f"{r['latency'][f'b{b} t{t}']:.3f}" for b, t in SETTINGS],
                f"{r['speedup']['b64 t1']:.2f}x" if "speedup" in r else "1.00x",
            ]
        )
    return header, rows

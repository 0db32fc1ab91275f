"""Attention-head section of ``benchmarks/pruning.py`` (imported by it).

The small ViT of the zoo with 4 heads per block on MNIST: dense, then half of every block's
heads removed (L1 and Taylor importance), half of all heads ranked across blocks (Taylor,
normalized per block), and half the heads plus half the MLP hidden units
(head pruning, then channel pruning), each fine-tuned for the same budget: test accuracy, MACs,
parameters and ONNX Runtime latency (batch 1 and 64, 1 and 2 threads), side by side in one run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pruning_structured import _measure
from slimkit.data import Dataset
from slimkit.models import create_model
from slimkit.techniques.prune import heads_by_layer, prune_channels, prune_heads
from slimkit.train import TrainConfig, load_checkpoint, save_checkpoint, train

MODEL = ("vit_small", {"num_heads": 4})
DENSE = TrainConfig(epochs=8, batch_size=128, lr=2e-3, seed=0)


def _dense(data: Dataset, folder: Path) -> torch.nn.Module:
    path = folder / "vit_small-4heads-mnist.safetensors"
    if path.is_file():
        return load_checkpoint(path).model
    torch.manual_seed(0)
    name, kwargs = MODEL
    model = create_model(name, input_shape=data.input_shape, **kwargs)
    train(model, data, DENSE)
    save_checkpoint(model, path, metadata={"data": data.config.to_dict()})
    return model.eval()


def heads_section(
    data: Dataset, folder: Path, *, budget: float = 1.5, fine_tune_epochs: int = 2
) -> dict[str, Any]:
    """Run the head-pruning comparison; returns rows and prints progress."""
    folder.mkdir(parents=True, exist_ok=True)
    fine_tune = TrainConfig(epochs=fine_tune_epochs, batch_size=128, lr=1e-3, seed=0)
    dense = _dense(data, folder)
    base = _measure("vit-dense", dense, data, folder, budget)
    rows: list[dict[str, Any]] = [
        {"model": "vit_small", "method": "dense", "heads": heads_by_layer(dense), **base}
    ]
    print(f"  vit_small dense: {100 * base['accuracy']:.2f}%", flush=True)
    variants = {
        "heads 50% (l1)": lambda: prune_heads(dense, ratio=0.5, importance="l1"),
        "heads 50% (taylor)": lambda: prune_heads(dense, ratio=0.5, importance="taylor", data=data),
        "heads 50% global (taylor)": lambda: prune_heads(
            dense, ratio=0.5, importance="taylor", data=data, ranking="global"
        ),
        "heads 50% + MLP 50% (l1)": lambda: prune_channels(
            prune_heads(dense, ratio=0.5), ratio=0.5, importance="l1"
        ),
    }
    for label, make in variants.items():
        started = time.perf_counter()
        pruned = make()
        before_tuning = _measure(f"vit-{len(rows)}-no-ft", pruned.eval(), data, folder, 0.05)
        train(pruned, data, fine_tune)
        row = _measure(f"vit-{len(rows)}", pruned.eval(), data, folder, budget)
        row.update(
            {
                "model": "vit_small",
                "method": label,
                "heads": heads_by_layer(pruned),
                "accuracy_before_fine_tuning": before_tuning["accuracy"],
                "seconds": time.perf_counter() - started,
                "drop_points": 100 * (base["accuracy"] - row["accuracy"]),
                "speedup": {k: base["latency"][k] / v for k, v in row["latency"].items()},
            }
        )
        rows.append(row)
        print(
            f"  {label}: {100 * row['accuracy']:.2f}% (before fine-tuning "
            f"{100 * before_tuning['accuracy']:.2f}%), b64 t1 speedup "
            f"{row['speedup']['b64 t1']:.2f}x",
            flush=True,
        )
    return {"rows": rows, "fine_tune_epochs": fine_tune_epochs, "dense_epochs": DENSE.epochs}

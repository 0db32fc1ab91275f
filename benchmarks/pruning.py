"""Pruning benchmark: unstructured pruning and Deep Compression, channel and attention-head pruning.

Unstructured section (LeNet-300-100 on MNIST, one run, side by side): the dense baseline; magnitude
pruning at 90% and 95% (global threshold, gradual schedule of Zhu & Gupta 2017 during 8 epochs of
fine-tuning); the full Deep Compression pipeline of Han et al. 2016 (per-layer pruning 92/91/74%
with the same fine-tuning → 6-bit weight clustering with 3 epochs of centroid fine-tuning →
Huffman coding), with the accuracy after each stage. For each: test accuracy (10,000
MNIST test images) and bytes at every storage stage (dense fp32; non-zeros with relative indices;
clustered; Huffman), each the size of a real ``slimkit.sparse`` file, beside the dense safetensors
checkpoint; the Deep Compression model is reloaded from its file (bit-exact) and checked in ONNX
Runtime. Han et al. report 40× at 1.64% → 1.58% error; the acceptance here is ≥ 30× smaller than
the fp32 weights with ≤ 0.2 points of accuracy lost.

Structured section: see :func:`structured_section`; heads section: :func:`heads_section`.

    python benchmarks/pruning.py [--mnist PATH] [--section unstructured|structured|heads|all]
                                 [--threads 1] [--reuse] [--fine-tune-epochs 2]
                                 [--out benchmarks/results/pruning.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.data import Dataset, load_dataset
from slimkit.export import export
from slimkit.io import write_json_atomic
from slimkit.measure import compare_logits, describe_cpu, environment
from slimkit.models import create_model
from slimkit.report import markdown_table
from slimkit.runtime import load_runtime, predict_batches
from slimkit.techniques import compress, config_to_dict
from slimkit.techniques.cluster import ClusteringConfig
from slimkit.techniques.prune import (
    STAGES,
    GradualSchedule,
    MagnitudePruningConfig,
    compression_stages,
    global_sparsity,
    load_sparse,
    save_sparse,
    sparsity_by_layer,
)
from slimkit.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
DENSE_RECIPE = TrainConfig(
    epochs=20, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=1e-4, seed=0
)
# fine-tuning: SGD (Nesterov momentum 0.9), cosine to 0 over 8 epochs (843 steps each at batch 64);
# the gradual schedule prunes during the first 2,000 steps (~2.4 epochs), the rest recovers
FINE_TUNE: dict[str, Any] = {"epochs": 8, "lr": 0.02, "weight_decay": 1e-4, "optimizer": "sgd"}
SCHEDULE = GradualSchedule(initial_sparsity=0.0, begin_step=0, frequency=200, n_updates=10)
# (label, the model it starts from, the techniques applied to it)
UNSTRUCTURED: list[tuple[str, str, list[Any]]] = [
    ("pruned-90", "dense", [MagnitudePruningConfig(sparsity=0.90, schedule=SCHEDULE, **FINE_TUNE)]),
    ("pruned-95", "dense", [MagnitudePruningConfig(sparsity=0.95, schedule=SCHEDULE, **FINE_TUNE)]),
    (
        "deep-compression (pruned)",
        "dense",
        [  # Han et al. 2016, Table 2: 8% / 9% / 26% of the weights of LeNet-300-100 left
            MagnitudePruningConfig(
                sparsity=0.92,
                granularity="layer",
                layer_sparsity={"layers.1": 0.92, "layers.3": 0.91, "layers.5": 0.74},
                schedule=SCHEDULE,
                **FINE_TUNE,
            )
        ],
    ),
    (  # 6 bits per weight as Han et al. for LeNet; centroid fine-tuning with Adam
        "deep-compression",
        "deep-compression (pruned)",
        [ClusteringConfig(bits=6, epochs=3, lr=1e-4, optimizer="adam")],
    ),
]
ACCEPT_RATIO, ACCEPT_DROP = 30.0, 0.002


def dense_baseline(data: Dataset, folder: Path, reuse: bool) -> tuple[nn.Module, float | None]:
    """The dense LeNet-300-100 (baseline recipe), trained or reloaded."""
    checkpoint = folder / "lenet300_100-dense.safetensors"
    if reuse and checkpoint.is_file():
        return load_checkpoint(checkpoint).model, None
    started = time.perf_counter()
    torch.manual_seed(DENSE_RECIPE.seed)  # initialisation uses the global generator
    model = create_model("lenet300_100", input_shape=data.input_shape)
    train(model, data, DENSE_RECIPE)
    save_checkpoint(model, checkpoint, metadata={"train": DENSE_RECIPE.to_dict()})
    return model.eval(), time.perf_counter() - started


def bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same keys and the same bits in every tensor (float32 compared as int32 patterns)."""
    return list(a) == list(b) and all(
        torch.equal(v.view(torch.int32), b[k].view(torch.int32))
        if v.dtype == torch.float32
        else torch.equal(v, b[k])
        for k, v in a.items()
    )


def onnx_parity(model: nn.Module, data: Dataset, path: Path) -> dict[str, Any]:
    """Export to ONNX and compare ONNX Runtime's logits with PyTorch's on the test split."""
    result = export(model, path)
    x = data.test.x.numpy()
    with torch.no_grad():
        reference = model(data.test.x).numpy()
    runtime = predict_batches(load_runtime("onnxruntime", result.path).run, x)
    parity = compare_logits(reference, runtime)
    return {"onnx_bytes": result.file_bytes, "passes": parity.passes(), **parity.to_dict()}


def unstructured_section(args: argparse.Namespace) -> dict[str, Any]:
    """Dense vs magnitude pruning 90% / 95% vs Deep Compression on LeNet-300-100 (MNIST)."""
    folder = args.out.parent / "pruning"
    data = load_dataset(f"mnist:{args.mnist}", seed=0)
    dense, seconds = dense_baseline(data, folder, args.reuse)
    dense_accuracy = evaluate(dense, data.test)[1]
    print(f"dense: test accuracy {100 * dense_accuracy:.2f}%", flush=True)
    results: dict[str, Any] = {}
    models: dict[str, tuple[nn.Module, list[Any], float | None]] = {"dense": (dense, [], seconds)}
    for label, base, configs in UNSTRUCTURED:
        started = time.perf_counter()
        model = compress(models[base][0], configs, data=data)
        models[label] = (model, [*models[base][1], *configs], time.perf_counter() - started)
        print(f"{label}: done in {models[label][2]:.0f} s", flush=True)

    rows, stage_tables = [], {}
    scratch = tempfile.TemporaryDirectory()  # dense-size checkpoints and ONNX files, measured only
    for label, (model, configs, seconds) in models.items():
        name = "lenet300_100-" + label.replace(" (", "-").replace(")", "")
        accuracy = evaluate(model, data.test)[1]
        stages = compression_stages(model)
        checkpoint = save_checkpoint(model, Path(scratch.name) / f"{name}.safetensors")
        entry = {
            "techniques": [config_to_dict(c) for c in configs],
            "seconds": seconds,
            "test_accuracy": accuracy,
            "accuracy_drop_points": 100 * (dense_accuracy - accuracy),
            "sparsity": global_sparsity(model),
            "sparsity_by_layer": sparsity_by_layer(model),
            "safetensors_bytes": checkpoint.stat().st_size,
            "stages": stages.to_dict(),
        }
        if label != "dense":  # the file of the last stage, reloaded: the model comes back exact
            sparse_file = save_sparse(model, folder / f"{name}.sparse")
            restored = load_sparse(folder / f"{name}.sparse").model
            entry["sparse_file_bytes"] = sparse_file.file_bytes
            entry["reloaded_bit_exact"] = bit_equal(model.state_dict(), restored.state_dict())
        if label == "deep-compression":
            onnx_path = Path(scratch.name) / f"{name}.onnx"
            entry["onnx_parity"] = onnx_parity(restored, data, onnx_path)
            entry["reloaded_test_accuracy"] = evaluate(restored, data.test)[1]
            stage_tables[label] = stages.table()
        results[label] = entry
        rows.append(
            [
                label,
                f"{100 * accuracy:.2f}%",
                f"{100 * (accuracy - dense_accuracy):+.2f}",
                f"{100 * entry['sparsity']:.1f}%",
                f"{entry['safetensors_bytes']:,}",
                *(f"{stages.file_bytes(s):,}" for s in STAGES),
                f"{stages.ratio('huffman'):.1f}x",
            ]
        )
    header = [
        "model",
        "test acc",
        "Δ points",
        "sparsity",
        "safetensors B",
        *(f"{s} B" for s in STAGES),
        "× vs fp32",
    ]
    print()
    print("LeNet-300-100 on MNIST: bytes of real slimkit.sparse files per storage stage")
    print(markdown_table(header, rows))
    for label, (stage_header, stage_rows) in stage_tables.items():
        print(f"\n{label}: per tensor (payload bytes; 'file' adds the JSON header)")
        print(markdown_table(stage_header, stage_rows))
    deep = results["deep-compression"]
    ratio = deep["stages"]["stages"]["huffman"]["ratio_vs_fp32"]
    drop = deep["accuracy_drop_points"] / 100
    accepted = ratio >= ACCEPT_RATIO and drop <= ACCEPT_DROP and deep["reloaded_bit_exact"]
    print(
        f"\nDeep Compression: {ratio:.1f}x smaller than the fp32 weights (file bytes), accuracy "
        f"{100 * dense_accuracy:.2f}% → {100 * deep['test_accuracy']:.2f}%; acceptance (≥ "
        f"{ACCEPT_RATIO:.0f}x, ≤ {100 * ACCEPT_DROP:.1f} points lost, bit-exact reload): "
        f"{'yes' if accepted else 'NO'}; ONNX Runtime parity: "
        f"{'yes' if deep['onnx_parity']['passes'] else 'NO'}"
    )
    scratch.cleanup()
    return {"models": results, "table": {"header": header, "rows": rows}, "accepted": accepted}


def structured_section(args: argparse.Namespace) -> dict[str, Any] | None:
    """Structured channel pruning at 25/50/75% of channels vs dense (LeNet-5, MobileNet-style).

    The work is in ``benchmarks/pruning_structured.py``; dense checkpoints of the baseline and
    quantization benchmarks are reused when present.
    """
    from pruning_structured import structured_section as run
    from pruning_structured import structured_table

    data = load_dataset(f"mnist:{args.mnist}", seed=0)
    results_dir = args.out.parent
    reuse = [
        results_dir / "baseline" / "lenet5-mnist.safetensors",
        results_dir / "quantization" / "lenet5-mnist.safetensors",
        results_dir / "quantization" / "mobilenet_v1_small-mnist.safetensors",
    ]
    results = run(
        data,
        results_dir / "pruning_structured",
        reuse=reuse,
        fine_tune_epochs=args.fine_tune_epochs,
    )
    header, rows = structured_table(results)
    print("\nStructured pruning (ONNX Runtime latency: p50 ms per batch, b = batch, t = threads)\n")
    print(markdown_table(header, rows))
    print("\nWhich zoo models each pruner handles (50% of channels):\n")
    print(
        markdown_table(
            ["model", "slimkit", "Torch-Pruning"],
            [[c["model"], c["slimkit"], c["torch_pruning"]] for c in results["coverage"]],
        )
    )
    accepted = True
    for row in results["rows"]:
        if row["method"] == "slimkit" and row["ratio"] == 0.5:
            ok = row["speedup"]["b64 t1"] >= 1.6 and row["drop_points"] <= 1.0
            accepted = accepted and ok
            print(
                f"{row['model']}: 50% of channels: {row['speedup']['b64 t1']:.2f}x lower latency "
                f"at batch 64, 1 thread (target >= 1.6x), {row['drop_points']:.2f} points lost "
                f"(target <= 1.0): {'yes' if ok else 'NO'}"
            )
    return {**results, "accepted": accepted}


def heads_section(args: argparse.Namespace) -> dict[str, Any]:
    """Attention-head pruning of the small ViT (4 heads per block) vs dense.

    The work is in ``benchmarks/pruning_heads.py``.
    """
    from pruning_heads import heads_section as run
    from pruning_structured import SETTINGS

    data = load_dataset(f"mnist:{args.mnist}", seed=0)
    results = run(data, args.out.parent / "pruning_heads", fine_tune_epochs=args.fine_tune_epochs)
    header = [
        "method",
        "heads/block",
        "acc",
        "before FT",
        "Δ pts",
        "MACs",
        "params",
        *[f"b{b} t{t}" for b, t in SETTINGS],
        "speedup b64 t1",
    ]
    cells = [
        [
            r["method"],
            "/".join(str(h) for h in r["heads"].values()),
            f"{100 * r['accuracy']:.2f}%",
            f"{100 * r['accuracy_before_fine_tuning']:.2f}%"
            if "accuracy_before_fine_tuning" in r
            else "",
            f"{-r['drop_points']:+.2f}" if "drop_points" in r else "0",
            f"{r['macs']:,}",
            f"{r['params']:,}",
            *[f"{r['latency'][f'b{b} t{t}']:.3f}" for b, t in SETTINGS],
            f"{r['speedup']['b64 t1']:.2f}x" if "speedup" in r else "1.00x",
        ]
        for r in results["rows"]
    ]
    print(
        f"\nAttention-head pruning, ViT-small on MNIST ({results['fine_tune_epochs']} fine-tuning "
        "epochs; ONNX Runtime p50 ms per batch, b = batch, t = threads)\n"
    )
    print(markdown_table(header, cells))
    return results


SECTIONS = {
    "unstructured": unstructured_section,
    "structured": structured_section,
    "heads": heads_section,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST files"
    )
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "pruning.json"
    )
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads")
    parser.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=2,
        help="fine-tuning epochs after channel or head pruning",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the dense checkpoint of an earlier run"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    print(f"CPU: {describe_cpu()}; {args.threads} thread(s)", flush=True)
    # sections not run now keep their results from an earlier run
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    sections: dict[str, Any] = dict(previous.get("sections", {}))
    names = list(SECTIONS) if args.section == "all" else [args.section]
    accepted = True
    for name in names:
        started = time.perf_counter()
        result = SECTIONS[name](args)
        if result is None:
            print(f"\n{name} section: not written yet (skipped)")
            continue
        accepted = accepted and bool(result.get("accepted", True))
        sections[name] = {
            **result,
            "environment": environment(),
            "threads": args.threads,
            "seconds": time.perf_counter() - started,
        }
    write_json_atomic(args.out, {"benchmark": "pruning", "sections": sections})
    print(f"\nwrote {args.out}")
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())

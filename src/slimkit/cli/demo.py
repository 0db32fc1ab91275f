"""``slimkit demo``: the main job on the embedded digits data, end to end.

data → model → train → checkpoint → compress (int8, channel pruning, both) → export to ONNX →
parity → measure in PyTorch and ONNX Runtime → table in the terminal, JSON and Markdown in the run
folder. Every candidate is measured in the runtime, side by side in one run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import typer

from slimkit.cli.app import app, console
from slimkit.cli.display import TrainProgress, print_records, progress_bar
from slimkit.data import load_dataset
from slimkit.export import export
from slimkit.io import write_json_atomic, write_text_atomic
from slimkit.measure import LatencyConfig, count_costs, describe_cpu, environment, measure
from slimkit.models import DEFAULT_MODEL, create_model
from slimkit.report import markdown_table, records_table
from slimkit.techniques import compress
from slimkit.techniques.prune.structured import ChannelPruningConfig
from slimkit.techniques.quantize import StaticInt8Config
from slimkit.train import TrainConfig, evaluate, save_checkpoint, train


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), help="Run folder."),
    model: str = typer.Option(DEFAULT_MODEL, help="Registered model name."),
    epochs: int = typer.Option(TrainConfig.epochs, help="Training epochs."),
    seed: int = typer.Option(0, help="Seed of split, initialisation and shuffling."),
    threads: int = typer.Option(1, help="CPU threads for the latency measurements."),
) -> None:
    """Train, export and measure the default model on the embedded digits data."""
    console.print(f"CPU: {describe_cpu()}")
    data = load_dataset("digits", seed=seed)
    torch.manual_seed(seed)  # initialisation uses the global generator
    net = create_model(model, input_shape=data.input_shape, num_classes=data.num_classes)
    with progress_bar() as progress:
        train(
            net,
            data,
            TrainConfig(epochs=epochs, seed=seed),
            callbacks=[TrainProgress(progress, f"train {model}")],
        )
    _, test_accuracy = evaluate(net, data.test)
    checkpoint = save_checkpoint(
        net,
        out / f"{model}.safetensors",
        metadata={"data": data.config.to_dict(), "test_accuracy": test_accuracy},
    )
    with console.status("exporting to ONNX"):
        exported = export(
            net,
            out / f"{model}.onnx",
            metadata={
                "slimkit.data": json.dumps(data.config.to_dict()),
                "slimkit.checkpoint": str(checkpoint),
            },
        )
    records = []
    latency = LatencyConfig(time_budget_s=2.0)
    for runtime, artifact in (("pytorch", checkpoint), ("onnxruntime", exported.path)):
        with console.status(f"measuring in {runtime}") as status:
            records.append(
                measure(
                    artifact,
                    data,
                    runtime=runtime,
                    batch_sizes=(1, 64),
                    threads=(threads,),
                    reference=net if runtime != "pytorch" else None,
                    latency=latency,
                    name=f"{model} fp32",
                    progress=lambda m: status.update(m),
                )
            )
    candidates: list[tuple[str, list[Any]]] = [
        ("int8 (PTQ, mse)", [StaticInt8Config(calibration="mse")]),
        ("pruned 50%", [ChannelPruningConfig(ratio=0.5, epochs=10, lr=3e-3, seed=seed)]),
        (
            "pruned 50% + int8",
            [
                ChannelPruningConfig(ratio=0.5, epochs=10, lr=3e-3, seed=seed),
                StaticInt8Config(calibration="mse"),
            ],
        ),
    ]
    for label, configs in candidates:
        with console.status(f"{label}: compressing") as status:
            float_configs = [c for c in configs if not isinstance(c, StaticInt8Config)]
            int8_configs = [c for c in configs if isinstance(c, StaticInt8Config)]
            float_model = compress(net, float_configs, data=data) if float_configs else net
            compressed = (
                compress(float_model, int8_configs, data=data) if int8_configs else float_model
            )
            name = (
                label.replace(" ", "-")
                .replace("%", "")
                .replace("(", "")
                .replace(")", "")
                .replace(",", "")
            )
            path = export(
                compressed, out / f"{model}.{name}.onnx", input_shape=data.input_shape
            ).path
            status.update(f"{label}: measuring in onnxruntime")
            record = measure(
                path,
                data,
                runtime="onnxruntime",
                batch_sizes=(1, 64),
                threads=(threads,),
                reference=compressed,
                latency=latency,
                name=f"{model} {label}",
            )
        cost = count_costs(float_model, data.input_shape)  # int8 keeps the float layers' shapes
        records.append(dataclasses.replace(record, params=cost.params, macs=cost.macs))
    print_records(records, title=f"{model} on digits: latency p50 in ms per batch")
    header, rows = records_table(records)
    env = environment()
    write_json_atomic(
        out / "records.json", {"environment": env, "records": [r.to_dict() for r in records]}
    )
    write_text_atomic(
        out / "report.md",
        "\n".join(
            [
                f"# slimkit demo: {model} on digits",
                "",
                f"Measured on {describe_cpu(env)}; latency is the median ms per batch.",
                "",
                markdown_table(header, rows),
                "",
            ]
        ),
    )
    console.print(
        f"run folder: {out}  (records.json, report.md, {checkpoint.name}, {exported.path.name})"
    )

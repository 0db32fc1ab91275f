"""``slimkit prune``: magnitude pruning (and optionally weight clustering) of a checkpoint, stored
in the ``slimkit.sparse`` format with the Deep Compression size accounting.

Prunes the checkpoint's model by magnitude (global or per layer, at once or on the gradual
schedule during fine-tuning), optionally clusters the surviving weights into ``2^bits`` shared
values with centroid fine-tuning, writes the result as a ``.sparse`` file (relative indices,
codebooks, Huffman coding) and prints the accuracy and the bytes of every storage stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import DATA_HELP, GRANULARITIES, one_of
from slimkit.cli.options import check_inputs_exist, load_data, resolve_data, threads_option


@app.command("prune")
def prune_command(
    checkpoint: Path = typer.Argument(..., help="A slimkit checkpoint (.safetensors)."),
    sparsity: float = typer.Option(0.9, help="Fraction of the weights in scope set to zero."),
    granularity: str = typer.Option(
        "global",
        **one_of(GRANULARITIES),
        help="One magnitude threshold for all layers in scope (global) or one per layer.",
    ),
    scope: list[str] = typer.Option(
        None, "--scope", help="Module-name glob to prune (repeatable; default: every layer)."
    ),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Module-name glob to skip (repeatable)."
    ),
    epochs: int = typer.Option(0, help="Fine-tuning epochs with the masks held."),
    lr: float = typer.Option(0.01, help="Fine-tuning learning rate (SGD, Nesterov momentum)."),
    gradual: int = typer.Option(
        0, help="Zhu & Gupta gradual schedule: this many mask updates during fine-tuning (0: off)."
    ),
    frequency: int = typer.Option(100, help="Optimizer steps between two gradual updates."),
    cluster_bits: int = typer.Option(
        0, help="Cluster the surviving weights into 2^bits values per layer (0: no clustering)."
    ),
    cluster_epochs: int = typer.Option(0, help="Centroid fine-tuning epochs (Adam)."),
    cluster_lr: float = typer.Option(1e-4, help="Centroid fine-tuning learning rate."),
    data: str | None = typer.Option(None, help=f"{DATA_HELP} (default: the checkpoint's)."),
    out: Path | None = typer.Option(
        None, help="Output .sparse file (default: beside the checkpoint, named for the techniques)."
    ),
    threads: int | None = threads_option(),
) -> None:
    """Prune (and cluster) a checkpoint; write a .sparse file and print the size of each stage."""
    check_inputs_exist(checkpoint, what="checkpoint")
    from slimkit.cli.display import TrainProgress, make_table, progress_bar
    from slimkit.io import write_json_atomic
    from slimkit.techniques import compress, config_to_dict
    from slimkit.techniques.cluster import ClusteringConfig
    from slimkit.techniques.prune import (
        GradualSchedule,
        MagnitudePruningConfig,
        compression_stages,
        global_sparsity,
        save_sparse,
    )
    from slimkit.threads import use_threads
    from slimkit.train import evaluate, load_checkpoint

    use_threads(threads)
    schedule = GradualSchedule(frequency=frequency, n_updates=gradual) if gradual else None
    configs: list[Any] = [
        MagnitudePruningConfig(
            sparsity=sparsity,
            granularity=granularity,
            scope=tuple(scope) if scope else None,
            exclude=tuple(exclude or ()),
            schedule=schedule,
            epochs=epochs,
            lr=lr,
        )
    ]
    if cluster_bits:
        configs.append(ClusteringConfig(bits=cluster_bits, epochs=cluster_epochs, lr=cluster_lr))
    loaded = load_checkpoint(checkpoint)
    data_config = resolve_data(data, checkpoint)
    dataset = load_data(data_config)
    with progress_bar() as progress:
        compressed = compress(
            loaded.model,
            configs,
            data=dataset,
            callbacks=[TrainProgress(progress, "fine-tune")],
        )
    dense_accuracy = evaluate(loaded.model, dataset.test)[1]
    accuracy = evaluate(compressed, dataset.test)[1]
    stages = compression_stages(compressed)
    names = "+".join(config_to_dict(c)["technique"] for c in configs)
    out = out or checkpoint.with_name(f"{checkpoint.stem}.{names}.sparse")
    techniques = [config_to_dict(c) for c in configs]
    written = save_sparse(
        compressed,
        out,
        spec=loaded.spec,
        metadata={"data": data_config.to_dict(), "techniques": techniques},
    )
    sparsity_reached = global_sparsity(compressed)
    summary = {
        "checkpoint": str(checkpoint),
        "techniques": techniques,
        "accuracy_dense": dense_accuracy,
        "accuracy": accuracy,
        "sparsity": sparsity_reached,
        "file": str(written.path),
        "file_bytes": written.file_bytes,
        "payload_bytes": written.payload_bytes,
        "stages": stages.to_dict(),
    }
    summary_path = write_json_atomic(out.with_name(out.name + ".json"), summary)
    header, rows = stages.table()
    console.print(make_table(header, rows, title="bytes per storage stage (Deep Compression)"))
    console.print(
        make_table(
            ["techniques", "dense acc", "acc", "Δ points", "sparsity", "file B", "× vs fp32"],
            [
                [
                    names,
                    f"{100 * dense_accuracy:.2f}%",
                    f"{100 * accuracy:.2f}%",
                    f"{100 * (accuracy - dense_accuracy):+.2f}",
                    f"{100 * sparsity_reached:.1f}%",
                    f"{written.file_bytes:,}",
                    f"{stages.ratio('huffman'):.1f}x",
                ]
            ],
            title=f"{loaded.spec.name} on {dataset.name} test split",
        )
    )
    console.print(f"model:   {written.path}\nsummary: {summary_path}")

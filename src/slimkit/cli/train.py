"""``slimkit train``: fit a registered model on a data set and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from slimkit.cli.app import app, console
from slimkit.cli.display import TrainProgress, make_table, progress_bar
from slimkit.cli.options import parse_key_values
from slimkit.data import load_dataset, parse_data_spec
from slimkit.io import write_json_atomic
from slimkit.measure import count_costs
from slimkit.models import DEFAULT_MODEL, create_model, model_spec_of
from slimkit.train import TrainConfig, evaluate, save_checkpoint, train


@app.command("train")
def train_command(
    data: str = typer.Option(
        "digits", help="Data spec: digits, mnist:PATH, fashion-mnist:PATH, idx:PATH."
    ),
    model: str = typer.Option(DEFAULT_MODEL, help="Registered model name (see `slimkit models`)."),
    model_arg: list[str] = typer.Option(
        None, "--model-arg", help="Model argument KEY=VALUE (repeatable)."
    ),
    epochs: int = typer.Option(TrainConfig.epochs, help="Training epochs."),
    batch_size: int = typer.Option(TrainConfig.batch_size, help="Samples per step."),
    lr: float = typer.Option(TrainConfig.lr, help="Peak learning rate."),
    optimizer: str = typer.Option(TrainConfig.optimizer, help="adam, adamw or sgd."),
    weight_decay: float = typer.Option(TrainConfig.weight_decay, help="Weight decay."),
    schedule: str = typer.Option(TrainConfig.schedule, help="cosine, step or constant."),
    label_smoothing: float = typer.Option(TrainConfig.label_smoothing, help="Label smoothing."),
    patience: int | None = typer.Option(None, help="Early stopping patience in epochs."),
    seed: int = typer.Option(0, help="Seed of the data split, initialisation and shuffling."),
    val_fraction: float = typer.Option(
        0.1, help="Fraction of training data held out for validation."
    ),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    threads: int | None = typer.Option(
        None, help="PyTorch CPU threads (default: PyTorch's choice)."
    ),
    out: Path | None = typer.Option(
        None, help="Checkpoint path [default: runs/train/MODEL-DATA.safetensors]."
    ),
) -> None:
    """Train a model and save it as a checkpoint (weights + model spec), with a JSON summary."""
    data_config = parse_data_spec(data, seed=seed, val_fraction=val_fraction)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        label_smoothing=label_smoothing,
        early_stopping_patience=patience,
        seed=seed,
        device=device,
        threads=threads,
    )
    kwargs = parse_key_values(model_arg)
    with console.status(f"loading {data_config.to_spec()}"):
        dataset = load_dataset(data_config)
    torch.manual_seed(seed)  # initialisation uses the global generator
    net = create_model(
        model, input_shape=dataset.input_shape, num_classes=dataset.num_classes, **kwargs
    )
    cost = count_costs(net, dataset.input_shape)
    console.print(
        f"[bold]{model}[/] on [bold]{dataset.name}[/]: {cost.params:,} parameters, "
        f"{cost.macs:,} MACs; "
        f"{len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test)} test samples"
    )
    with progress_bar() as progress:
        result = train(net, dataset, config, callbacks=[TrainProgress(progress, f"train {model}")])
    _, test_accuracy = evaluate(net, dataset.test)
    out = out or Path("runs") / "train" / f"{model}-{dataset.name}.safetensors"
    summary = {
        "model": model_spec_of(net).to_dict(),  # type: ignore[union-attr]
        "data": data_config.to_dict(),
        "train": result.to_dict(),
        "test_accuracy": test_accuracy,
        "params": cost.params,
        "macs": cost.macs,
    }
    save_checkpoint(
        net,
        out,
        metadata={
            "data": data_config.to_dict(),
            "test_accuracy": test_accuracy,
            "train": config.to_dict(),
        },
    )
    summary_path = write_json_atomic(out.with_name(out.stem + ".train.json"), summary)
    console.print(
        make_table(
            ["model", "data", "params", "MACs", "epochs", "best val acc", "test acc", "time"],
            [
                [
                    model,
                    dataset.name,
                    f"{cost.params:,}",
                    f"{cost.macs:,}",
                    str(len(result.history)),
                    f"{100 * result.best_val_accuracy:.2f}%",
                    f"{100 * test_accuracy:.2f}%",
                    f"{result.seconds:.1f} s",
                ]
            ],
        )
    )
    console.print(f"checkpoint: {out}\nsummary:    {summary_path}")

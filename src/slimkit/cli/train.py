"""``slimkit train``: fit a registered model on a data set and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import (
    DATA_HELP,
    DEFAULT_DATA,
    DEFAULT_MODEL,
    DEVICES,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    TRAIN_DEFAULTS,
    one_of,
)
from slimkit.cli.options import load_data, parse_key_values, threads_option


@app.command("train")
def train_command(
    data: str = typer.Option(DEFAULT_DATA, help=f"{DATA_HELP}."),
    model: str = typer.Option(
        DEFAULT_MODEL,
        **one_of(MODELS, metavar="NAME"),
        help=f"Registered model: {', '.join(MODELS)} (`slimkit models` shows their sizes).",
    ),
    model_arg: list[str] = typer.Option(
        None, "--model-arg", help="Model argument KEY=VALUE (repeatable)."
    ),
    epochs: int = typer.Option(TRAIN_DEFAULTS["epochs"], help="Training epochs."),
    batch_size: int = typer.Option(TRAIN_DEFAULTS["batch_size"], help="Samples per step."),
    lr: float = typer.Option(TRAIN_DEFAULTS["lr"], help="Peak learning rate."),
    optimizer: str = typer.Option(
        TRAIN_DEFAULTS["optimizer"], **one_of(OPTIMIZERS), help="Optimizer."
    ),
    weight_decay: float = typer.Option(TRAIN_DEFAULTS["weight_decay"], help="Weight decay."),
    schedule: str = typer.Option(
        TRAIN_DEFAULTS["schedule"],
        **one_of(SCHEDULES),
        help="Learning-rate schedule: cosine to 0, step (x0.1 at 50% and 75%) or constant.",
    ),
    label_smoothing: float = typer.Option(
        TRAIN_DEFAULTS["label_smoothing"], help="Label smoothing."
    ),
    patience: int | None = typer.Option(
        None, help="Early stopping patience in epochs (default: off)."
    ),
    seed: int = typer.Option(0, help="Seed of the data split, initialisation and shuffling."),
    val_fraction: float = typer.Option(
        0.1, help="Fraction of training data held out for validation."
    ),
    device: str = typer.Option("cpu", **one_of(DEVICES), help="auto: CUDA when present."),
    threads: int | None = threads_option(),
    out: Path | None = typer.Option(
        None, help="Checkpoint path (default: runs/train/MODEL-DATA.safetensors)."
    ),
) -> None:
    """Train a model and save it as a checkpoint (weights + model spec), with a JSON summary."""
    import torch

    from slimkit.cli.display import TrainProgress, make_table, progress_bar
    from slimkit.data import parse_data_spec
    from slimkit.io import write_json_atomic
    from slimkit.measure import count_costs
    from slimkit.models import create_model, model_spec_of
    from slimkit.threads import use_threads
    from slimkit.train import TrainConfig, evaluate, save_checkpoint, train

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
        threads=use_threads(threads),
    )
    kwargs = parse_key_values(model_arg)
    dataset = load_data(data_config)
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

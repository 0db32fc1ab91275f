"""``slimkit models``: the registry with parameters and MACs; ``--summary`` per layer."""

from __future__ import annotations

import typer

from slimkit.cli.app import app, console
from slimkit.cli.display import make_table
from slimkit.cli.options import parse_key_values, parse_shape
from slimkit.measure import count_costs
from slimkit.models import create_model, list_models, model_info


@app.command("models")
def models_command(
    name: str | None = typer.Argument(None, help="Show one model (with --summary: per layer)."),
    input_shape: str = typer.Option("1x28x28", help="Input shape CxHxW to count MACs at."),
    num_classes: int = typer.Option(10, help="Number of classes."),
    summary: bool = typer.Option(False, "--summary", help="Per-layer table of one model."),
    model_arg: list[str] = typer.Option(None, "--model-arg", help="Model argument KEY=VALUE."),
) -> None:
    """List registered models with parameters and MACs at an input size."""
    shape = parse_shape(input_shape)
    kwargs = parse_key_values(model_arg)
    names = [name] if name else list_models()
    rows = []
    for model_name in names:
        cost = count_costs(
            create_model(
                model_name, input_shape=shape, num_classes=num_classes, **(kwargs if name else {})
            ),
            shape,
        )
        if summary and name:
            layer_rows = [
                [
                    layer.name,
                    layer.type,
                    "x".join(map(str, layer.output_shape)),
                    f"{layer.params:,}",
                    f"{layer.macs:,}",
                ]
                for layer in cost.layers
            ]
            layer_rows.append(["total", "", "", f"{cost.params:,}", f"{cost.macs:,}"])
            console.print(
                make_table(
                    ["layer", "type", "output", "params", "MACs"],
                    layer_rows,
                    title=f"{model_name} at {input_shape}",
                )
            )
            return
        rows.append(
            [model_name, f"{cost.params:,}", f"{cost.macs:,}", model_info(model_name).description]
        )
    console.print(
        make_table(
            ["model", "params", "MACs", "description"],
            rows,
            title=f"models at input {input_shape}, {num_classes} classes",
        )
    )

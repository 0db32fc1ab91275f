"""``slimkit models``: the registry with parameters and MACs; ``--summary`` per layer.

Models that cannot be built or run at the requested input size (a vision transformer whose patches
do not tile the image, say) are listed with a note instead of stopping the listing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import DEFAULT_DATA, DEFAULT_DATA_SHAPE, MODELS
from slimkit.cli.options import parse_key_values, parse_shape, threads_option
from slimkit.errors import ModelError, SlimkitError

if TYPE_CHECKING:
    from slimkit.measure import ModelCost


def model_costs(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    kwargs: dict[str, Any],
    *,
    include_batchnorm: bool = True,
) -> ModelCost:
    """Build ``name`` and count it at ``input_shape``; any failure is a one-line ModelError."""
    from slimkit.measure import count_costs
    from slimkit.models import create_model

    model = create_model(name, input_shape=input_shape, num_classes=num_classes, **kwargs)
    try:
        return count_costs(model, input_shape, include_batchnorm=include_batchnorm)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        shape = "x".join(map(str, input_shape))
        raise ModelError(f"model {name!r} cannot run on {shape} inputs: {first_line}") from error


@app.command("models")
def models_command(
    name: str | None = typer.Argument(
        None,
        metavar="NAME",
        help=f"Show one model (with --summary: per layer): {', '.join(MODELS)}.",
    ),
    input_shape: str = typer.Option(
        DEFAULT_DATA_SHAPE,
        help=f"Input shape CxHxW to count MACs at; the default is the {DEFAULT_DATA} data's "
        "(MNIST: 1x28x28).",
    ),
    num_classes: int = typer.Option(10, help="Number of classes."),
    summary: bool = typer.Option(False, "--summary", help="Per-layer table of one model."),
    model_arg: list[str] = typer.Option(None, "--model-arg", help="Model argument KEY=VALUE."),
    batchnorm_params: bool = typer.Option(
        True,
        "--batchnorm-params/--no-batchnorm-params",
        help="Count batch-norm scale and shift as parameters (the MobileNets paper does not).",
    ),
    threads: int | None = threads_option(),
) -> None:
    """List registered models with parameters and MACs at an input size."""
    from slimkit.cli.display import make_table
    from slimkit.models import list_models, model_info
    from slimkit.threads import use_threads

    shape = parse_shape(input_shape)
    kwargs = parse_key_values(model_arg)
    if kwargs and not name:
        raise ModelError("--model-arg needs a model name: slimkit models NAME --model-arg K=V")
    if summary and not name:
        raise ModelError("--summary needs a model name: slimkit models NAME --summary")
    use_threads(threads)  # each model runs one forward pass to count its MACs
    if name:
        cost = model_costs(name, shape, num_classes, kwargs, include_batchnorm=batchnorm_params)
        if summary:
            _print_summary(name, input_shape, cost)
            return
        rows = [[name, f"{cost.params:,}", f"{cost.macs:,}", model_info(name).description]]
    else:
        rows = []
        for model_name in list_models():
            try:
                cost = model_costs(
                    model_name, shape, num_classes, {}, include_batchnorm=batchnorm_params
                )
            except SlimkitError as error:
                rows.append([model_name, "-", "-", f"not at this input size: {error}"])
                continue
            description = model_info(model_name).description
            rows.append([model_name, f"{cost.params:,}", f"{cost.macs:,}", description])
    what = "" if batchnorm_params else ", parameters without batch norm"
    console.print(
        make_table(
            ["model", "params", "MACs", "description"],
            rows,
            title=f"models at input {input_shape}, {num_classes} classes{what}",
        )
    )


def _print_summary(name: str, input_shape: str, cost: ModelCost) -> None:
    from slimkit.cli.display import make_table

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
            title=f"{name} at {input_shape}",
        )
    )

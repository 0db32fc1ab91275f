"""``slimkit measure``: accuracy, latency, size and parity of model files in their runtimes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import DATA_HELP, RUNTIMES, one_of
from slimkit.cli.options import check_inputs_exist, onnx_metadata, resolve_data
from slimkit.errors import ConfigError

if TYPE_CHECKING:
    from rich.status import Status

    from slimkit.measure import MeasureRecord
    from slimkit.progress import ProgressEvent


def runtime_for(path: Path) -> str:
    """The runtime that loads ``path`` by its suffix (``.onnx`` → onnxruntime, ...)."""
    from slimkit.export import exporter_info, list_formats
    from slimkit.runtime import list_runtimes, runtime_info

    if path.suffix == ".safetensors":
        return "pytorch"
    for name in list_runtimes():
        fmt = runtime_info(name).format
        if fmt in list_formats() and exporter_info(fmt).suffix == path.suffix:
            return name
    raise ConfigError(
        f"cannot tell the runtime of {path} from its suffix {path.suffix!r}; pass --runtime "
        f"({', '.join(list_runtimes())})"
    )


def reference_checkpoint(path: Path, explicit: Path | None) -> Path | None:
    """``--checkpoint`` if given, else the checkpoint an exported file was made from."""
    if explicit is not None:
        return explicit
    if path.suffix == ".safetensors":
        return path
    recorded = onnx_metadata(path).get("slimkit.checkpoint") if path.suffix == ".onnx" else None
    try:
        return Path(recorded) if recorded and Path(recorded).is_file() else None
    except (OSError, ValueError):  # a corrupt path in the metadata (a NUL byte, too long)
        return None


def _show(status: Status, file: str, event: ProgressEvent) -> None:
    if event.done < (event.total or 0):  # the last event says "done": the table follows
        status.update(f"{file}: {event.info}")


@app.command("measure")
def measure_command(
    files: list[Path] = typer.Argument(
        ..., help="Model files: .onnx, .tflite, .pte, or .safetensors checkpoints."
    ),
    runtime: str | None = typer.Option(
        None,
        **one_of(RUNTIMES),
        help="Runtime that loads the files (default: by file suffix: .onnx onnxruntime, "
        ".tflite litert, .pte executorch, .safetensors pytorch).",
    ),
    data: str | None = typer.Option(
        None, help=f"{DATA_HELP} (default: the data recorded in the file)."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        help="PyTorch reference for parity and MACs (default: the checkpoint an .onnx file "
        "records, if it is there).",
    ),
    batch_size: list[int] = typer.Option(
        [1, 64], "--batch-size", "-b", help="Batch size (repeatable)."
    ),
    threads: list[int] = typer.Option([1], "--threads", "-t", help="CPU threads (repeatable)."),
    budget: float = typer.Option(3.0, help="Seconds of timing per setting at most."),
    out: Path = typer.Option(
        Path("runs/measure/measure.json"), help="Where to write the JSON records."
    ),
) -> None:
    """Measure model files: test accuracy, latency p50/p90, bytes, params, MACs, parity."""
    check_inputs_exist(*files, checkpoint)
    from slimkit.cli.display import print_records
    from slimkit.data import load_dataset
    from slimkit.io import write_json_atomic
    from slimkit.measure import LatencyConfig, describe_cpu, environment, measure
    from slimkit.train import load_checkpoint

    records: list[MeasureRecord] = []
    latency = LatencyConfig(time_budget_s=budget)
    console.print(f"CPU: {describe_cpu()}")
    for path in files:
        name = runtime or runtime_for(path)
        reference_path = reference_checkpoint(path, checkpoint)
        reference = load_checkpoint(reference_path).model if reference_path else None
        data_config = resolve_data(data, path, reference_path)
        dataset = load_dataset(data_config)
        with console.status(f"measuring {path.name} in {name}") as status:
            record = measure(
                path,
                dataset,
                runtime=name,
                batch_sizes=batch_size,
                threads=threads,
                reference=reference if name != "pytorch" else None,
                latency=latency,
                progress=functools.partial(_show, status, path.name),
            )
        records.append(record)
    print_records(records, title="latency p50 in ms per batch")
    write_json_atomic(
        out, {"environment": environment(), "records": [r.to_dict() for r in records]}
    )
    console.print(f"records: {out}")

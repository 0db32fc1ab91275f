"""``slimkit export``: write a checkpoint's model for a runtime, and check parity there."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import DATA_HELP, EXPORT_RUNTIMES, one_of
from slimkit.cli.options import check_inputs_exist, resolve_data, threads_option
from slimkit.errors import ConfigError, ExportError

PARITY_ATOL = 1e-4
INT8_WITHIN_1_LSB = 0.999  # share of int8 outputs within one step of slimkit's integer reference
INT8_AGREEMENT = 0.995
CALIBRATION = 256  # training samples an int8 exporter calibrates on
PARITY_SAMPLES = 10_000  # test samples of the parity check (all of MNIST's test split)


def default_output(
    checkpoint: Path, runtime: str, suffix: str, *, batch_size: int, int8: bool
) -> Path:
    """The file name that says what the export is: precision, fixed batch size, target."""
    parts = [checkpoint.stem]
    if runtime == "tflite-micro":
        parts.append("tflm")
    elif int8:
        parts.append("int8")
    if batch_size != 1:
        parts.append(f"b{batch_size}")
    return checkpoint.with_name(".".join(parts) + suffix)


def check_output(out: Path | None, default: Path, checkpoint: Path, force: bool) -> Path:
    """``--out`` (never the checkpoint, never an existing file without ``--force``) or the default.

    The default name is the same only for the same export, which it replaces.
    """
    if out is None:
        return default
    if out.resolve() == checkpoint.resolve():
        raise ConfigError(f"--out {out} is the checkpoint itself; give another file name")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it, or give another --out")
    return out


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A slimkit checkpoint (.safetensors)."),
    runtime: str = typer.Option(
        "onnxruntime",
        **one_of(EXPORT_RUNTIMES),
        help="Target runtime (tflite-micro: int8, with C files).",
    ),
    batch_size: int = typer.Option(
        1, "--batch-size", "-b", help="Fixed batch size of .tflite/.pte files (one per size)."
    ),
    out: Path | None = typer.Option(
        None, help="Output file (default: beside the checkpoint, named for what it is)."
    ),
    data: str | None = typer.Option(
        None, help=f"{DATA_HELP}, for calibration and parity (default: the checkpoint's)."
    ),
    parity: bool = typer.Option(
        True, help="Check the exported file against PyTorch on the test split."
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="slimkit's static int8 (min-max, per channel, calibrated on 256 training samples): "
        "the same scales and int8 weights in every runtime; parity against slimkit's integer "
        "reference. (tflite-micro is int8 anyway.)",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    threads: int | None = threads_option(),
) -> None:
    """Export a checkpoint for a runtime and check that the runtime computes the same logits.

    The file is named for what it is, beside the checkpoint: m.onnx, m.int8.onnx, m.tflite,
    m.b64.tflite, m.int8.b64.pte, m.tflm.tflite (+ .h/.c); an existing file needs --force.
    """
    check_inputs_exist(checkpoint, what="checkpoint")
    from slimkit.cli.display import make_table
    from slimkit.data import load_dataset
    from slimkit.export import (
        EdgeExportResult,
        McuExportResult,
        export,
        exporter_info,
        list_formats,
    )
    from slimkit.io import write_json_atomic
    from slimkit.measure import compare_logits
    from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches, runtime_info
    from slimkit.techniques.quantize import quantize_static, run_reference
    from slimkit.threads import use_threads
    from slimkit.train import load_checkpoint

    count = use_threads(threads)
    info = runtime_info(runtime)
    if info.format not in list_formats():
        raise ConfigError(
            f"runtime {runtime!r} runs {info.format} files directly; there is nothing to export "
            f"(formats that export: {', '.join(list_formats())})"
        )
    loaded = load_checkpoint(checkpoint)
    parameters = inspect.signature(exporter_info(info.format).function).parameters
    out = check_output(
        out,
        default_output(
            checkpoint,
            runtime,
            exporter_info(info.format).suffix,
            batch_size=batch_size if "batch_size" in parameters else 1,
            int8=int8,
        ),
        checkpoint,
        force,
    )
    data_config = resolve_data(data, checkpoint)
    metadata = {
        "slimkit.data": json.dumps(data_config.to_dict()),
        "slimkit.checkpoint": str(checkpoint),
    }
    options: dict[str, Any] = {"metadata": metadata}
    if "batch_size" in parameters:
        options["batch_size"] = batch_size
    model, quantized = loaded.model, None
    if int8 and "calibration_data" not in parameters:
        calibration = load_dataset(data_config).train.head(CALIBRATION)
        with console.status("calibrating slimkit's int8"):
            quantized = quantize_static(loaded.model.eval(), calibration)
        model = quantized
    elif "calibration_data" in parameters:  # int8 exporters calibrate on the training split
        options["calibration_data"] = load_dataset(data_config).train.head(CALIBRATION).numpy()
    with console.status(f"exporting to {info.format}"):
        result = export(model, out, format=info.format, **options)
    summary: dict[str, object] = {
        "export": result.to_dict(),
        "runtime": runtime,
        "checkpoint": str(checkpoint),
    }
    ok = True
    rows = [[str(out), info.format, f"{result.file_bytes:,}"]]
    header = ["file", "format", "bytes"]
    if parity:
        with console.status(f"parity check in {runtime}"):
            dataset = load_dataset(data_config)
            x = dataset.test.head(PARITY_SAMPLES).numpy()
            # an exporter may name the runtime to check against on the same file (int8 files)
            reference_runtime = getattr(result, "parity_reference", None)
            atol = float(getattr(result, "parity_atol", PARITY_ATOL))
            min_agreement = float(getattr(result, "parity_min_agreement", 1.0))
            lsb = None
            if quantized is not None:  # slimkit's int8: its integer reference is the oracle
                reference_runtime = "slimkit integer reference"
                reference = run_reference(quantized.graph, x)
                graph = quantized.graph
                lsb = float(graph.qparams[graph.output].scale[0])
            elif reference_runtime is not None:
                runner = load_runtime(reference_runtime, out, threads=count)
                reference = predict_batches(runner.run, x)
            else:
                runner = PyTorchRunner.from_model(loaded.model, threads=count)
                reference = predict_batches(runner.run, x)
            candidate = predict_batches(load_runtime(runtime, out, threads=count).run, x)
            check = compare_logits(reference, candidate, lsb=lsb)
        summary["parity"] = check.to_dict() | {
            "reference": reference_runtime or "pytorch",
            "atol": atol,
            "min_agreement": min_agreement,
        }
        if check.within_1_lsb is not None:
            ok = (
                check.within_1_lsb >= INT8_WITHIN_1_LSB and check.argmax_agreement >= INT8_AGREEMENT
            )
        else:
            ok = check.passes(atol=atol, min_agreement=min_agreement)
        header += ["max |Δ logit|", "argmax agree"]
        rows[0] += [f"{check.max_abs_diff:.2e}", f"{100 * check.argmax_agreement:.2f}%"]
        if check.within_1_lsb is not None:
            header.append("≤ 1 LSB")
            rows[0].append(f"{100 * check.within_1_lsb:.2f}%")
        header.append("parity")
        rows[0].append("[green]ok[/]" if ok else "[red]FAILED[/]")
    console.print(make_table(header, rows))
    if isinstance(result, EdgeExportResult) and result.delegation is not None:
        console.print(f"delegation: {result.delegation.summary()}")
    if isinstance(result, McuExportResult):
        console.print(result.summary())
    summary_path = write_json_atomic(out.with_name(out.name + ".json"), summary)
    console.print(f"summary: {summary_path}")
    if parity and not ok:
        limit = (
            f"{100 * (check.within_1_lsb or 0):.2f}% within one int8 step of slimkit's integer "
            f"reference (limit {100 * INT8_WITHIN_1_LSB:.1f}%)"
            if check.within_1_lsb is not None
            else f"max |Δ logit| {check.max_abs_diff:.2e} (limit {atol:.0e})"
        )
        raise ExportError(
            f"parity check failed for {out}: {limit}, argmax agreement "
            f"{100 * check.argmax_agreement:.2f}%"
        )

"""``slimkit compress`` and ``slimkit quantize``: apply techniques to a checkpoint, export, check.

``compress`` takes technique configs from a YAML recipe (``techniques:`` list of
``{technique: NAME, option: value, ...}``) or from ``--technique NAME --option KEY=VALUE``;
``quantize`` is the short form for the int8 techniques. Both write the compressed model for the
runtime, check it there against the PyTorch simulation (and, for static int8, against the integer
reference), and print accuracy, size and parity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import CALIBRATIONS, DATA_HELP, QUANTIZE_MODES, TECHNIQUES, one_of
from slimkit.cli.options import (
    check_inputs_exist,
    load_data,
    parse_key_values,
    resolve_data,
    threads_option,
)
from slimkit.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from slimkit.progress import ProgressEvent


def read_technique_recipe(path: Path) -> list[Any]:
    """Technique configs from a YAML file with a ``techniques:`` list (safe loader, no code)."""
    import yaml

    from slimkit.techniques import config_from_dict

    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(
            f"recipe {path} is not valid YAML: {str(error).splitlines()[0]}"
        ) from error
    items = document.get("techniques") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f"recipe {path} needs a non-empty 'techniques:' list of "
            "{technique: NAME, ...} entries"
        )
    configs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "technique" not in item:
            raise ConfigError(
                f"recipe {path}: techniques[{index}] must be a mapping with a 'technique' key"
            )
        try:
            configs.append(config_from_dict(item))
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"recipe {path}: techniques[{index}]: {error}") from error
    return configs


def run_compress(
    checkpoint: Path,
    configs: list[Any],
    data_spec: str | None,
    out: Path | None,
    threads: int | None = None,
) -> None:
    """Shared body of ``compress`` and ``quantize``."""
    import numpy as np

    from slimkit.cli.display import TrainProgress, make_table, progress_bar
    from slimkit.export import export
    from slimkit.io import write_json_atomic
    from slimkit.measure import accuracy_of, compare_logits
    from slimkit.runtime import PyTorchRunner, load_runtime, predict_batches
    from slimkit.techniques import compress, config_to_dict
    from slimkit.techniques.quantize import QuantizedModel, run_reference
    from slimkit.threads import use_threads
    from slimkit.train import load_checkpoint

    count = use_threads(threads)
    loaded = load_checkpoint(checkpoint)
    data_config = resolve_data(data_spec, checkpoint)
    dataset = load_data(data_config)
    names = "+".join(config_to_dict(c)["technique"] for c in configs)
    with progress_bar() as progress:
        tasks: dict[str, TaskID] = {}

        def report(event: ProgressEvent) -> None:
            if event.stage == "train":  # the fine-tuning: TrainProgress shows it by steps
                return
            if event.stage not in tasks:
                tasks[event.stage] = progress.add_task(event.stage, total=event.total, info="")
            progress.update(tasks[event.stage], completed=event.done, info=event.info)

        compressed = compress(
            loaded.model,
            configs,
            data=dataset,
            progress=report,
            callbacks=[TrainProgress(progress, "fine-tune")],
        )
    out = out or checkpoint.with_name(f"{checkpoint.stem}.{names}.onnx")
    float_path = out.with_name(f"{checkpoint.stem}.fp32.onnx")
    metadata = {
        "slimkit.data": json.dumps(data_config.to_dict()),
        "slimkit.techniques": json.dumps([config_to_dict(c) for c in configs]),
    }
    with console.status("exporting"):
        float_result = export(loaded.model, float_path, metadata=metadata)
        result = export(compressed, out, metadata=metadata)
    x, y = dataset.test.head(len(dataset.test)).numpy(), dataset.test.y.numpy()
    with console.status("checking in onnxruntime"):
        fp32_logits = predict_batches(PyTorchRunner.from_model(loaded.model, threads=count).run, x)
        simulated = predict_batches(PyTorchRunner.from_model(compressed, threads=count).run, x)
        runtime = load_runtime("onnxruntime", result.path, threads=count)
        runtime_logits = predict_batches(runtime.run, x)
    parity = compare_logits(simulated, runtime_logits)
    summary: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "techniques": [config_to_dict(c) for c in configs],
        "export": result.to_dict(),
        "fp32_export": float_result.to_dict(),
        "accuracy_fp32": accuracy_of(fp32_logits, y),
        "accuracy_simulated": accuracy_of(simulated, y),
        "accuracy_runtime": accuracy_of(runtime_logits, y),
        "parity_vs_simulation": parity.to_dict(),
    }
    row = [
        names,
        f"{100 * summary['accuracy_fp32']:.2f}%",
        f"{100 * summary['accuracy_runtime']:.2f}%",
        f"{100 * (summary['accuracy_runtime'] - summary['accuracy_fp32']):+.2f}",
        f"{float_result.file_bytes:,}",
        f"{result.file_bytes:,}",
        f"{float_result.file_bytes / result.file_bytes:.2f}x",
        f"{100 * parity.argmax_agreement:.2f}%",
    ]
    header = [
        "techniques",
        "fp32 acc",
        "onnxruntime acc",
        "Δ points",
        "fp32 bytes",
        "bytes",
        "smaller",
        "agree (sim)",
    ]
    if isinstance(compressed, QuantizedModel):
        reference = run_reference(compressed.graph, x)
        scale = float(compressed.graph.qparams[compressed.graph.output].scale[0])
        lsb = np.abs(reference - runtime_logits) / scale
        summary["within_one_lsb_of_integer_reference"] = float(np.mean(lsb <= 1 + 1e-4))
        header.append("≤1 LSB vs integer ref")
        row.append(f"{100 * summary['within_one_lsb_of_integer_reference']:.2f}%")
    console.print(
        make_table(header, [row], title=f"{loaded.spec.name} on {dataset.name} test split")
    )
    summary_path = write_json_atomic(out.with_name(out.name + ".json"), summary)
    console.print(f"model:   {out}\nsummary: {summary_path}")


@app.command("compress")
def compress_command(
    checkpoint: Path = typer.Argument(..., help="A slimkit checkpoint (.safetensors)."),
    recipe: Path | None = typer.Option(None, help="YAML file with a 'techniques:' list."),
    technique: str | None = typer.Option(
        None,
        **one_of(TECHNIQUES, metavar="NAME"),
        help=f"One technique (instead of --recipe): {', '.join(TECHNIQUES)}.",
    ),
    option: list[str] = typer.Option(
        None, "--option", "-o", help="Technique option KEY=VALUE (repeatable)."
    ),
    data: str | None = typer.Option(None, help=f"{DATA_HELP} (default: the checkpoint's)."),
    out: Path | None = typer.Option(
        None, help="Output .onnx file (default: beside the checkpoint, named for the techniques)."
    ),
    threads: int | None = threads_option(),
) -> None:
    """Apply techniques (from a recipe or --technique) to a checkpoint and export the result."""
    if (recipe is None) == (technique is None):
        raise ConfigError(
            f"give either --recipe FILE or --technique NAME (techniques: {', '.join(TECHNIQUES)})"
        )
    check_inputs_exist(checkpoint, what="checkpoint")
    from slimkit.techniques import config_from_dict

    if recipe is not None:
        configs = read_technique_recipe(recipe)
    else:
        configs = [
            config_from_dict({"technique": technique, **parse_key_values(option, "--option")})
        ]
    run_compress(checkpoint, configs, data, out, threads)


@app.command("quantize")
def quantize_command(
    checkpoint: Path = typer.Argument(..., help="A slimkit checkpoint (.safetensors)."),
    mode: str = typer.Option(
        "static",
        **one_of(QUANTIZE_MODES),
        help="int8 technique: post-training (static), QAT, dynamic activations, or weights only.",
    ),
    calibration: str = typer.Option(
        "minmax", **one_of(CALIBRATIONS), help="Activation range observer (static and QAT)."
    ),
    per_channel: bool = typer.Option(True, help="Per-output-channel weight scales."),
    cle: bool = typer.Option(False, "--cle", help="Cross-layer equalization first (static)."),
    bias_correction: bool = typer.Option(
        False, "--bias-correction", help="Bias correction (static)."
    ),
    epochs: int = typer.Option(3, help="QAT epochs."),
    calibration_samples: int = typer.Option(512, help="Calibration inputs (static and QAT)."),
    data: str | None = typer.Option(None, help=f"{DATA_HELP} (default: the checkpoint's)."),
    out: Path | None = typer.Option(
        None, help="Output .onnx file (default: beside the checkpoint, named for the technique)."
    ),
    threads: int | None = threads_option(),
) -> None:
    """int8 quantization of a checkpoint, exported to ONNX with slimkit's own scales."""
    check_inputs_exist(checkpoint, what="checkpoint")
    from slimkit.techniques import config_from_dict

    options: dict[str, Any] = {"per_channel": per_channel}
    if mode == "static":
        options |= {
            "technique": "static_int8",
            "calibration": calibration,
            "cross_layer_equalization": cle,
            "bias_correction": bias_correction,
            "calibration_samples": calibration_samples,
        }
    elif mode == "qat":
        options |= {
            "technique": "qat_int8",
            "calibration": calibration,
            "epochs": epochs,
            "calibration_samples": calibration_samples,
        }
    elif mode in ("dynamic", "weight-only"):
        options |= {"technique": "dynamic_int8" if mode == "dynamic" else "weight_only_int8"}
    else:
        raise ConfigError(f"--mode must be one of static, qat, dynamic, weight-only; got {mode!r}")
    run_compress(checkpoint, [config_from_dict(options)], data, out, threads)

"""``slimkit distill``: train a student from a teacher checkpoint (Hinton et al. 2015)."""

from __future__ import annotations

from pathlib import Path

import typer

from slimkit.cli.app import app, console
from slimkit.cli.choices import DATA_HELP, DEVICES, DISTILL_DEFAULTS, OPTIMIZERS, SCHEDULES, one_of
from slimkit.cli.options import (
    check_inputs_exist,
    load_data,
    parse_key_values,
    resolve_data,
    threads_option,
)
from slimkit.errors import ConfigError


@app.command("distill")
def distill_command(
    teacher: Path = typer.Option(..., help="Teacher checkpoint (.safetensors)."),
    student: str = typer.Option(
        ..., help="Student: a registered model name (see `slimkit models`) or a checkpoint."
    ),
    student_arg: list[str] = typer.Option(
        None, "--student-arg", help="Student model argument KEY=VALUE (repeatable)."
    ),
    data: str | None = typer.Option(None, help=f"{DATA_HELP} (default: the teacher's)."),
    temperature: float = typer.Option(DISTILL_DEFAULTS["temperature"], help="Temperature T > 0."),
    alpha: float = typer.Option(
        DISTILL_DEFAULTS["alpha"],
        help="Weight of the soft-target loss in [0, 1] (1 - alpha: labels).",
    ),
    epochs: int = typer.Option(DISTILL_DEFAULTS["epochs"], help="Training epochs of the student."),
    lr: float = typer.Option(DISTILL_DEFAULTS["lr"], help="Peak learning rate."),
    batch_size: int = typer.Option(DISTILL_DEFAULTS["batch_size"], help="Samples per step."),
    optimizer: str = typer.Option(
        DISTILL_DEFAULTS["optimizer"], **one_of(OPTIMIZERS), help="Optimizer."
    ),
    weight_decay: float = typer.Option(DISTILL_DEFAULTS["weight_decay"], help="Weight decay."),
    schedule: str = typer.Option(
        DISTILL_DEFAULTS["schedule"],
        **one_of(SCHEDULES),
        help="Learning-rate schedule: cosine to 0, step (x0.1 at 50% and 75%) or constant.",
    ),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing of the hard targets."),
    hint: list[str] = typer.Option(
        None, "--hint", help="FitNets hint STUDENT_LAYER:TEACHER_LAYER (repeatable)."
    ),
    shift: int = typer.Option(0, help="Random shifts of up to this many pixels."),
    mixup_alpha: float = typer.Option(0.0, help="Mixup Beta(alpha, alpha); 0 disables it."),
    cutmix_alpha: float = typer.Option(0.0, help="CutMix Beta(alpha, alpha); 0 disables it."),
    cache: bool = typer.Option(
        True, help="Cache the teacher's logits when the inputs do not change between epochs."
    ),
    seed: int = typer.Option(0, help="Seed of the student's initialisation and training."),
    device: str = typer.Option("cpu", **one_of(DEVICES), help="auto: CUDA when present."),
    threads: int | None = threads_option(),
    out: Path | None = typer.Option(
        None, help="Checkpoint path (default: runs/distill/STUDENT-DATA.safetensors)."
    ),
) -> None:
    """Distill a teacher checkpoint into a student and save the student as a checkpoint."""
    check_inputs_exist(teacher, what="teacher checkpoint")
    if Path(student).suffix == ".safetensors":
        check_inputs_exist(Path(student), what="student checkpoint")
    import torch

    from slimkit.cli.display import TrainProgress, make_table, progress_bar
    from slimkit.io import write_json_atomic
    from slimkit.measure import count_costs
    from slimkit.models import create_model, model_spec_of
    from slimkit.techniques import config_to_dict
    from slimkit.techniques.distill import DistillationConfig, coerce_hint, distill
    from slimkit.threads import use_threads
    from slimkit.train import AugmentConfig, evaluate, load_checkpoint, save_checkpoint

    augment = AugmentConfig(shift=shift, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    config = DistillationConfig(
        teacher=str(teacher.resolve()),
        temperature=temperature,
        alpha=alpha,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        label_smoothing=label_smoothing,
        augment=augment if augment.changes_inputs else None,
        hints=tuple(coerce_hint(h) for h in hint or []),
        cache_teacher_logits=cache,
        seed=seed,
        device=device,
    )
    use_threads(threads)
    teacher_model = load_checkpoint(teacher).model
    data_config = resolve_data(data, teacher, seed=seed)
    dataset = load_data(data_config)
    kwargs = parse_key_values(student_arg, "--student-arg")
    if Path(student).suffix == ".safetensors":
        if kwargs:
            raise ConfigError("--student-arg applies to a model name, not to a checkpoint")
        student_model = load_checkpoint(student).model
        name = Path(student).stem
    else:
        torch.manual_seed(seed)  # initialisation uses the global generator
        num_classes = kwargs.pop("num_classes", dataset.num_classes)
        student_model = create_model(
            student, input_shape=dataset.input_shape, num_classes=num_classes, **kwargs
        )
        name = student
    teacher_cost = count_costs(teacher_model, dataset.input_shape)
    student_cost = count_costs(student_model, dataset.input_shape)
    console.print(
        f"teacher [bold]{teacher.name}[/] ({teacher_cost.params:,} parameters) → student "
        f"[bold]{name}[/] ({student_cost.params:,} parameters) on [bold]{dataset.name}[/], "
        f"T={temperature:g}, alpha={alpha:g}"
    )
    with progress_bar() as progress:
        result = distill(
            student_model, dataset, config, callbacks=[TrainProgress(progress, f"distill {name}")]
        )
    _, teacher_accuracy = evaluate(teacher_model, dataset.test)
    _, test_accuracy = evaluate(student_model, dataset.test)
    out = out or Path("runs") / "distill" / f"{name}-{dataset.name}.safetensors"
    technique = config_to_dict(config)
    spec = model_spec_of(student_model)
    save_checkpoint(
        student_model,
        out,
        metadata={
            "data": data_config.to_dict(),
            "distillation": technique,
            "test_accuracy": test_accuracy,
        },
    )
    summary = {
        "teacher": {
            "checkpoint": str(teacher),
            "test_accuracy": teacher_accuracy,
            "params": teacher_cost.params,
        },
        "student": {
            "model": spec.to_dict() if spec is not None else None,
            "test_accuracy": test_accuracy,
            "params": student_cost.params,
        },
        "data": data_config.to_dict(),
        "distillation": technique,
        "train": result.to_dict(),
    }
    summary_path = write_json_atomic(out.with_name(out.stem + ".distill.json"), summary)
    rows = [
        ["teacher", teacher.name, f"{teacher_cost.params:,}", f"{100 * teacher_accuracy:.2f}%"],
        ["student", name, f"{student_cost.params:,}", f"{100 * test_accuracy:.2f}%"],
    ]
    console.print(
        make_table(
            ["role", "model", "params", "test acc"],
            rows,
            title=f"distilled in {len(result.history)} epochs, {result.seconds:.1f} s",
        )
    )
    console.print(f"checkpoint: {out}\nsummary:    {summary_path}")

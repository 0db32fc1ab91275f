"""``slimkit search run FILE``, ``slimkit search show RUN`` and ``slimkit worker``.

``search run`` starts or resumes a search (``--workers N`` local processes); ``worker`` joins a
study from another machine (``--storage postgresql://...``); ``search show`` lists the trials and
the Pareto front of a run folder or a study.

Every setting (file, sampler, trials, workers, storage URL) is checked before data is loaded or a
model trained. Ctrl-C prints one line and exits 130; the interrupted trials are retried when the
same command runs again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from slimkit.cli.app import app, console, error_console
from slimkit.cli.choices import SAMPLERS, STORAGE_WAIT_S, one_of
from slimkit.cli.options import check_inputs_exist, threads_option
from slimkit.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from slimkit.search.run import SearchSettings

search_app = typer.Typer(
    help="Multi-objective search (Optuna): run, resume, show.", no_args_is_help=True
)
app.add_typer(search_app, name="search")

STORAGE_HELP = (
    "Study storage: a SQLAlchemy URL (postgresql://user@host/db); "
    "default: the run folder's journal file."
)
WAIT_HELP = "Seconds to wait out a database outage before stopping (exit 1)."
SEARCH_THREADS = (
    ", shared by the --workers (each computes on threads / workers); latency is timed on the "
    "file's target threads"
)
WORKER_THREADS = "; latency is timed on the study's target threads"
INTERRUPTED = (
    "interrupted: finished trials are kept; run the same command again to finish "
    "(interrupted trials are retried)"
)


def _interrupted() -> typer.Exit:
    error_console.print(f"[yellow]{INTERRUPTED}[/]", highlight=False, soft_wrap=True)
    return typer.Exit(130)


def _check_run_options(storage: str | None, workers: int, wait_s: float) -> None:
    """Refuse bad command-line settings before anything is loaded."""
    if storage is not None:
        from slimkit.search.validate import check_storage_url

        check_storage_url(storage, "--storage")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1; got {workers}")
    if not wait_s >= 0:
        raise ConfigError(f"--storage-wait must be a number of seconds >= 0; got {wait_s}")


def _quiet_optuna() -> None:
    from slimkit.logs import route_optuna_logs

    route_optuna_logs()  # Optuna's records through slimkit's filter: shown with --debug


def run_with_progress(
    settings: SearchSettings,
    storage: str | None,
    workers: int,
    wait_s: float = STORAGE_WAIT_S,
    threads: int | None = None,
) -> optuna.Study:
    """Run a search with one bar of finished trials (ETA) and a status line per stage."""
    from slimkit.cli.display import progress_bar
    from slimkit.search import run_search

    with progress_bar() as progress:
        task = progress.add_task("trials", total=settings.trials, info="")

        def on_event(kind: str, counts: Mapping[str, int]) -> None:
            progress.update(
                task,
                completed=counts["finished"],
                info=f"{counts['finished']} finished, {counts['running']} running, "
                f"{counts['failed']} failed",
            )

        def say(message: str) -> None:
            progress.update(task, info=message)

        study = run_search(
            settings,
            storage=storage,
            workers=workers,
            say=say,
            on_event=on_event,
            wait_s=wait_s,
            threads=threads,
        )
        progress.update(task, completed=settings.trials)
    return study


@search_app.command("run")
def search_run(
    file: Path = typer.Argument(..., help="Search YAML (space, objectives, constraints, target)."),
    out: Path = typer.Option(Path("runs/search"), help="Run folder (study journal, trial files)."),
    trials: int = typer.Option(None, help="Number of finished trials (overrides the file)."),
    workers: int = typer.Option(1, help="Local worker processes."),
    storage: str = typer.Option(None, help=STORAGE_HELP),
    study: str = typer.Option(None, help="Study name (default: the file's, else 'search')."),
    sampler: str = typer.Option(
        None, **one_of(SAMPLERS), help="Sampler (default: the file's, else nsga2)."
    ),
    seed: int = typer.Option(None, help="Sampler seed (overrides the file)."),
    storage_wait: float = typer.Option(STORAGE_WAIT_S, help=WAIT_HELP),
    threads: int | None = threads_option(SEARCH_THREADS),
) -> None:
    """Start a search, or resume it: finished trials are kept, killed ones retried."""
    _check_run_options(storage, workers, storage_wait)
    check_inputs_exist(file, what="search file")
    from slimkit.search.spec import settings_from_file

    _quiet_optuna()
    settings = settings_from_file(
        file, out_dir=str(out), trials=trials, study=study, sampler=sampler, seed=seed
    )
    started = time.perf_counter()
    try:
        result = run_with_progress(settings, storage, workers, storage_wait, threads)
    except KeyboardInterrupt:
        raise _interrupted() from None
    console.print(f"search finished in {time.perf_counter() - started:.0f} s")
    show_study(result)
    console.print(f"run folder: {out}  (study.journal, trials/, front/)")


@search_app.command("show")
def search_show(
    run: Path = typer.Argument(Path("runs/search"), help="Run folder of the search."),
    storage: str = typer.Option(None, help=STORAGE_HELP),
    study: str = typer.Option("search", help="Study name."),
    all_trials: bool = typer.Option(False, "--all", help="List every trial, not only the front."),
) -> None:
    """List the Pareto front (or every trial) of a search."""
    from slimkit.search.study import create_or_load_study, open_storage

    _quiet_optuna()
    backend = open_storage(storage, run) if storage else _existing_journal(run)
    show_study(create_or_load_study(study, backend, [], None), all_trials=all_trials)


def _existing_journal(run: Path) -> Any:
    from slimkit.search.study import open_storage

    if not (run / "study.journal").is_file():
        raise typer.BadParameter(f"{run} has no study.journal; pass the run folder or --storage")
    return open_storage(None, run)


@search_app.command("default-space")
def search_default_space() -> None:
    """Print the default search space (used when a search or recipe gives none) as YAML."""
    import yaml

    from slimkit.search import default_space

    text = yaml.safe_dump({"space": default_space()}, sort_keys=False, default_flow_style=None)
    console.print(text, markup=False, highlight=False)


@app.command("worker")
def worker_command(
    study: str = typer.Option(..., help="Study name to join."),
    storage: str = typer.Option(..., help="Shared storage URL (e.g. postgresql://...)."),
    out: Path = typer.Option(
        None,
        help="Where this machine writes trial files (default: the study's own folder).",
    ),
    storage_wait: float = typer.Option(STORAGE_WAIT_S, help=WAIT_HELP),
    threads: int | None = threads_option(WORKER_THREADS),
) -> None:
    """Join a search from another machine (or process): run trials until its budget is done."""
    from slimkit.search import load_settings, work
    from slimkit.search.study import create_or_load_study, open_storage
    from slimkit.threads import use_threads

    _quiet_optuna()
    _check_run_options(storage, 1, storage_wait)
    backend = open_storage(storage, None, wait_s=storage_wait)
    settings = load_settings(
        create_or_load_study(study, backend, [], None), str(out) if out else None
    )
    use_threads(threads)
    try:
        done = work(settings, storage, wait_s=storage_wait)
    except KeyboardInterrupt:
        raise _interrupted() from None
    console.print(f"worker finished: {done} trial(s) run here")


def _cell(value: Any, fmt: str = "{:.4f}") -> str:
    return "—" if value is None else fmt.format(value)


def _note(trial: optuna.trial.FrozenTrial) -> str:
    from slimkit.search.study import ATTR_ERROR, ATTR_REUSE_OF

    attrs = trial.user_attrs
    if ATTR_REUSE_OF in attrs:
        return f"same plan as trial {attrs[ATTR_REUSE_OF]} (reused)"
    return str(attrs.get(ATTR_ERROR) or attrs.get("slimkit.stopped") or "")[:60]


def show_study(study: optuna.Study, *, all_trials: bool = False) -> None:
    """Print the front (or all trials) as a table."""
    from optuna.trial import TrialState

    from slimkit.cli.display import make_table
    from slimkit.report.table import format_bytes
    from slimkit.search import search_front
    from slimkit.search.run import ATTR_CANDIDATE, ATTR_METRICS, ATTR_PLAN
    from slimkit.search.space import TrialPlan

    front = {t.number for t in search_front(study)}
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        if not all_trials and t.number not in front:
            continue
        metrics = t.user_attrs.get(ATTR_METRICS) or {}
        candidate = t.user_attrs.get(ATTR_CANDIDATE) or {}
        plan = t.user_attrs.get(ATTR_PLAN) or {}
        label = candidate.get("name") or ""
        what = TrialPlan.from_dict(plan).describe() if plan else ""
        rows.append(
            [
                str(t.number),
                t.state.name.lower() + (" ★" if t.number in front else ""),
                what or label,
                _cell(metrics.get("accuracy")),
                _cell(metrics.get("test_accuracy")),
                _cell(metrics.get("latency"), "{:.3f}"),
                format_bytes(metrics["size"]) if metrics.get("size") else "—",
                _note(t),
            ]
        )
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    title = (
        f"study {study.study_name}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        + f"; front: {len(front)} (★)"
    )
    console.print(
        make_table(
            ["trial", "state", "candidate", "val acc", "test acc", "p50 ms", "size", "note"],
            rows,
            title=title,
        )
    )

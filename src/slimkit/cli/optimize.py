"""``slimkit optimize RECIPE`` and ``slimkit demo``: the main job, from a recipe to a report.

``demo`` runs the digits recipe that ships inside the package (``slimkit/recipes/digits.yaml``,
also at ``recipes/digits.yaml`` in the repository) on the embedded data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from slimkit.cli.app import app, console
from slimkit.cli.options import check_inputs_exist, threads_option

if TYPE_CHECKING:
    from slimkit.pipeline import Recipe

RECIPE_THREADS = "; latency is timed on the recipe's target threads"


def run_recipe(recipe: Recipe, out: Path | None, fresh: bool, threads: int | None = None) -> None:
    """Run a recipe with one progress bar (units: baseline, candidates, trials) and the table."""
    from slimkit.cli.display import progress_bar
    from slimkit.cli.report import print_report
    from slimkit.logs import route_optuna_logs
    from slimkit.measure import describe_cpu
    from slimkit.pipeline import optimize
    from slimkit.pipeline.optimize import remove_run_folder
    from slimkit.threads import use_threads

    route_optuna_logs()  # Optuna's records through slimkit's filter: shown with --debug
    folder = out or Path("runs") / recipe.name
    if fresh:
        remove_run_folder(folder)
    count = use_threads(threads)
    console.print(
        f"CPU: {describe_cpu()}; computing on {count} thread(s), latency timed on "
        f"{recipe.target.threads}"
    )
    started = time.perf_counter()
    total = 1 + len(recipe.candidates) + (recipe.search["trials"] if recipe.search else 0)
    with progress_bar() as progress:
        task = progress.add_task(recipe.name, total=total, info="")
        offset = 1 + len(recipe.candidates)

        def say(message: str) -> None:
            progress.update(task, info=escape(message))

        def advance(stage: str, done: int, _total: int) -> None:
            progress.update(task, completed=done)

        def on_event(kind: str, counts: Mapping[str, int]) -> None:
            progress.update(task, completed=offset + counts["finished"])

        try:
            report = optimize(
                recipe, out=folder, say=say, advance=advance, on_event=on_event, threads=count
            )
        except KeyboardInterrupt:
            progress.stop()
            console.print(
                f"[bold red]interrupted[/]: finished work is kept in {folder}; "
                "its report is marked incomplete. Run the same command again to continue."
            )
            raise typer.Exit(130) from None
        progress.update(task, completed=total)
    print_report(report)
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    console.print(f"report: {escape(str(folder / 'report.html'))}  (and report.md, report.json)")


@app.command("optimize")
def optimize_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    out: Path = typer.Option(None, help="Run folder (default: runs/NAME)."),
    fresh: bool = typer.Option(
        False, "--fresh", help="Delete the run folder (one slimkit made) and start over."
    ),
    allow_module: list[str] = typer.Option(
        [],
        "--allow-module",
        help="An installed package whose functions the recipe may name (repeatable); "
        "functions in .py files of the recipe's folder or the current directory need none.",
    ),
    threads: int | None = threads_option(RECIPE_THREADS),
) -> None:
    """Baseline → candidates → search → export → measure → report, resumable."""
    check_inputs_exist(recipe, what="recipe")
    from slimkit.pipeline import Recipe

    run_recipe(Recipe.from_file(recipe, allow_modules=allow_module), out, fresh, threads)


def packaged_recipe(name: str) -> Path:
    """Path of a recipe shipped inside the package."""
    return Path(str(resources.files("slimkit") / "recipes" / f"{name}.yaml"))


@app.command("demo")
def demo_command(
    out: Path = typer.Option(
        Path("runs/digits"),
        help="Run folder (the recipe's own: `slimkit optimize recipes/digits.yaml` resumes it).",
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the run folder and start over."),
    threads: int | None = threads_option(RECIPE_THREADS),
) -> None:
    """The main job on the embedded digits data: the digits recipe, end to end."""
    from slimkit.pipeline import Recipe

    run_recipe(Recipe.from_file(packaged_recipe("digits")), out, fresh, threads)

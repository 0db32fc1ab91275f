"""``optimize``: baseline → fixed candidates → search → report, into a resumable run folder.

Run folder layout (``runs/NAME/``)::

    recipe.json            the recipe and its fingerprint (a different recipe is refused)
    baseline.safetensors   the trained baseline (reused on resume)
    candidates/NAME.json   one finished candidate each (written atomically, skipped on resume)
    artifacts/             the exported model files
    search/                the study journal and the trials' files
    report.json/.md/.html  the report (+ plots), rewritten after every stage

Every finished piece of work is on disk before the next starts, so a killed run re-run with the
same recipe continues where it stopped; Ctrl-C writes a report marked incomplete.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState
from torch import nn

from slimkit.data import DataConfig, Dataset, load_dataset
from slimkit.errors import ConfigError
from slimkit.io import WriteError, write_json_atomic
from slimkit.measure import environment
from slimkit.models import create_model
from slimkit.pipeline.recipe import CandidateSpec, Recipe, build_user_model
from slimkit.report import Report, write_report
from slimkit.report.candidates import Candidate
from slimkit.search import SearchSettings, run_search
from slimkit.search.evaluate import evaluate_plan
from slimkit.search.run import ATTR_CANDIDATE
from slimkit.search.space import DISTILLATION, TrialPlan, default_space
from slimkit.train import TrainConfig, load_checkpoint, save_checkpoint, train

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
Advance = Callable[[str, int, int], None]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "candidate"


class RunFolder:
    """The run folder: creation with clear errors, the recipe check, candidate files."""

    def __init__(self, path: Path, recipe: Recipe) -> None:
        self.path = path
        try:
            (path / "candidates").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(
                f"cannot create run folder {path}: {error.strerror or error} "
                "(choose another --out, or fix its permissions / free disk space)"
            ) from error
        marker = path / "recipe.json"
        if marker.is_file():
            stored = json.loads(marker.read_text("utf-8"))
            if stored.get("fingerprint") != recipe.fingerprint():
                raise ConfigError(
                    f"run folder {path} holds a run of a different recipe "
                    f"({stored.get('name')!r}, fingerprint {stored.get('fingerprint')}); "
                    "use another --out / recipe name, or --fresh to start this folder over"
                )
        else:
            write_json_atomic(
                marker,
                {"name": recipe.name, "fingerprint": recipe.fingerprint(), "recipe": recipe.source},
            )

    def candidate_file(self, name: str) -> Path:
        return self.path / "candidates" / f"{_slug(name)}.json"

    def load_candidate(self, name: str) -> Candidate | None:
        path = self.candidate_file(name)
        return Candidate.from_dict(json.loads(path.read_text("utf-8"))) if path.is_file() else None

    def save_candidate(self, candidate: Candidate) -> None:
        write_json_atomic(self.candidate_file(candidate.name), candidate.to_dict())


def _baseline_model(recipe: Recipe, data: Dataset, folder: RunFolder, say: Say) -> nn.Module:
    source = recipe.model
    if source.checkpoint is not None:
        say(f"baseline: loading {source.checkpoint}")
        return load_checkpoint(source.checkpoint).model
    saved = folder.path / "baseline.safetensors"
    torch.manual_seed(recipe.seed)
    if source.zoo is not None:
        if saved.is_file():
            say("baseline: reusing the trained checkpoint")
            return load_checkpoint(saved).model
        model = create_model(
            source.zoo, input_shape=data.input_shape, num_classes=data.num_classes, **source.args
        )
    else:
        assert source.function is not None
        model = build_user_model(source.function, source.args, data.input_shape, data.num_classes)
        if saved.is_file():
            from safetensors.torch import load_model

            load_model(model, str(saved))
            return model.eval()
    config = TrainConfig.from_dict({**recipe.train, "seed": recipe.seed})
    say(f"baseline: training {source.describe()} ({config.epochs} epochs)")
    train(model, data, config)
    if source.zoo is not None:
        save_checkpoint(model, saved, metadata={"data": data.config.to_dict()})
    else:
        from safetensors.torch import save_model

        tmp = saved.with_suffix(".tmp")
        save_model(model, str(tmp))
        tmp.replace(saved)
    return model.eval()


def _baseline_name(recipe: Recipe) -> str:
    source = recipe.model
    return source.zoo or source.function or "checkpoint"


def _run_candidate(
    spec: CandidateSpec,
    recipe: Recipe,
    data: Dataset,
    baseline: nn.Module,
    folder: RunFolder,
    say: Say,
) -> Candidate:
    distill = [t for t in spec.techniques if t["technique"] == DISTILLATION]
    rest = [t for t in spec.techniques if t["technique"] != DISTILLATION]
    distillation = {k: v for k, v in distill[0].items() if k != "technique"} if distill else None
    trains_own_model = spec.model is not None or distillation is not None
    if trains_own_model:
        model_source = spec.model or recipe.model
        if model_source.zoo is None:
            raise ConfigError(
                f"candidate {spec.name!r}: a candidate with its own model (or distillation) "
                "needs a zoo model name"
            )
        plan = TrialPlan(
            model_source.zoo,
            dict(model_source.args),
            {**recipe.train, **(spec.train or {})},
            distillation,
            rest,
        )
        trained = None
    else:
        plan = TrialPlan(
            _baseline_name(recipe), dict(recipe.model.args), dict(recipe.train), None, rest
        )
        trained = copy.deepcopy(baseline)
    candidate, _ = evaluate_plan(
        plan,
        data,
        recipe.target,
        folder.path / "artifacts",
        name=_slug(spec.name),
        source="technique",
        teacher=baseline,
        seed=recipe.seed,
        say=say,
        trained=trained,
    )
    candidate.name = spec.name
    return candidate


def _search_settings(recipe: Recipe, folder: RunFolder) -> SearchSettings:
    search = dict(recipe.search or {})
    teacher = None
    if recipe.model.checkpoint:
        teacher = recipe.model.checkpoint
    elif recipe.model.zoo:
        teacher = str(folder.path / "baseline.safetensors")
    return SearchSettings(
        space=search.get("space") or default_space(distill=teacher is not None),
        objectives=recipe.source.get("objectives") or ["accuracy", "latency"],
        constraints=list(recipe.source.get("constraints") or []),
        target=recipe.target.to_dict(),
        trials=int(search.get("trials", 10)),
        sampler=search.get("sampler", "nsga2"),
        pruner=search.get("pruner", "auto"),
        seed=int(search.get("seed", recipe.seed)),
        data=recipe.data,
        teacher=teacher,
        out_dir=str(folder.path / "search"),
        study=recipe.name,
    )


def _search_candidates(study: Any) -> list[Candidate]:
    out = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        body = trial.user_attrs.get(ATTR_CANDIDATE)
        if body:
            candidate = Candidate.from_dict(body)
            candidate.name = f"trial {trial.number}"
            candidate.source = "search"
            out.append(candidate)
    return out


def mark_feasibility(candidate: Candidate, recipe: Recipe) -> None:
    """Record in ``details`` whether the candidate meets the recipe's constraints (and which not).

    The constraints are checked on what the report shows: test accuracy, latency p50, file size,
    MACs, parameters, arena and flash bytes.
    """
    if not recipe.objectives.constraints or not candidate.measured:
        return
    details = candidate.details
    metrics = {
        "accuracy": candidate.accuracy,
        "latency": candidate.latency_p50_ms,
        "size": candidate.file_bytes,
        "macs": candidate.macs,
        "params": candidate.params,
        "arena": details.get("arena_bytes"),
        "flash": details.get("flash_bytes"),
    }
    broken = [c.text for c in recipe.objectives.constraints if not c.satisfied(metrics)]
    details["feasible"] = not broken
    details["constraints_broken"] = broken


def optimize(
    recipe: Recipe | Mapping[str, Any] | str | Path,
    *,
    out: str | Path | None = None,
    runs_dir: str | Path = "runs",
    say: Say | None = None,
    advance: Advance | None = None,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
) -> Report:
    """Run a recipe end to end (or continue it) and return the report object.

    Args:
        recipe: a :class:`Recipe`, a recipe dict, or the path of a YAML recipe.
        out: the run folder (default ``runs_dir/NAME``).
        say: progress messages; ``advance(stage, done, total)`` after each finished unit;
            ``on_event`` gets the search's trial counts.

    Example:
        >>> report = optimize("recipes/digits.yaml")  # doctest: +SKIP
        >>> report.front("latency")  # doctest: +SKIP
    """
    if isinstance(recipe, str | Path):
        recipe = Recipe.from_file(recipe)
    elif not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    # import the plotting stack before any long work: a Ctrl-C that lands inside a first,
    # lazy import would leave matplotlib half-imported for the final (incomplete) report
    import matplotlib.figure  # noqa: F401

    tell = say or (lambda message: None)
    step = advance or (lambda stage, done, total: None)
    folder = RunFolder(Path(out) if out is not None else Path(runs_dir) / recipe.name, recipe)
    stages: list[dict[str, Any]] = [
        {"name": "baseline", "status": "pending"},
        {"name": "candidates", "status": "pending"},
    ]
    if recipe.search:
        stages.append({"name": "search", "status": "pending"})
    stages.append({"name": "report", "status": "pending"})
    candidates: list[Candidate] = []
    report = Report(
        name=recipe.name,
        recipe=dict(recipe.source),
        runtime=recipe.target.runtime,
        batch_size=recipe.target.batch_size,
        threads=recipe.target.threads,
        environment=environment(),
        candidates=candidates,
        stages=stages,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    current = stages[0]
    total = (
        1 + len(recipe.candidates) + (int(recipe.search.get("trials", 10)) if recipe.search else 0)
    )
    try:
        data = load_dataset(DataConfig.from_dict(recipe.data))
        # baseline
        baseline_model = _baseline_model(recipe, data, folder, tell)
        base = folder.load_candidate("baseline")
        if base is None:
            base, _ = evaluate_plan(
                TrialPlan(_baseline_name(recipe), dict(recipe.model.args), dict(recipe.train)),
                data,
                recipe.target,
                folder.path / "artifacts",
                name="baseline",
                source="baseline",
                seed=recipe.seed,
                say=tell,
                trained=copy.deepcopy(baseline_model),
            )
            folder.save_candidate(base)
        candidates.append(base)
        current["status"] = "done"
        step("baseline", 1, total)
        write_report(report, folder.path)
        # fixed candidates
        current = stages[1]
        for index, spec in enumerate(recipe.candidates):
            done = folder.load_candidate(spec.name)
            if done is None:
                try:
                    done = _run_candidate(spec, recipe, data, baseline_model, folder, tell)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as error:  # one failed candidate is reported, not fatal
                    logger.warning("candidate %s failed: %s", spec.name, error)
                    done = Candidate(
                        spec.name,
                        source="technique",
                        techniques=spec.techniques,
                        error=f"{type(error).__name__}: {error}".splitlines()[0][:500],
                    )
                folder.save_candidate(done)
            candidates.append(done)
            step("candidates", 2 + index, total)
        current["status"] = "done"
        write_report(report, folder.path)
        # search
        if recipe.search:
            current = stages[2]
            settings = _search_settings(recipe, folder)
            study = run_search(
                settings,
                storage=recipe.search.get("storage"),
                workers=int(recipe.search.get("workers", 1)),
                say=tell,
                on_event=on_event,
            )
            candidates.extend(_search_candidates(study))
            current["status"] = "done"
        for candidate in candidates:
            mark_feasibility(candidate, recipe)
        if recipe.objectives.constraints:
            texts = ", ".join(c.text for c in recipe.objectives.constraints)
            breaking = [c.name for c in candidates if c.details.get("feasible") is False]
            report.notes.append(
                f"constraints: {texts}; breaking them (never on a front): "
                f"{', '.join(breaking) or 'none'}"
            )
        current = stages[-1]
        report.complete = True
        current["status"] = "done"
        write_report(report, folder.path)
    except KeyboardInterrupt:
        current["status"] = "interrupted"
        report.complete = False
        report.notes.append("interrupted (Ctrl-C): finished work is kept; re-run to continue")
        write_report(report, folder.path)
        raise
    except Exception:
        current["status"] = "failed"
        report.complete = False
        write_report(report, folder.path)
        raise
    return report

"""The search itself: settings → study → trials (local workers or remote) → the Pareto front.

:class:`SearchSettings` is everything a worker needs; it is stored in the study, so a worker on
another machine needs only the storage URL and the study name (``slimkit worker``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from slimkit.data import DataConfig, Dataset, load_dataset
from slimkit.errors import ConfigError, check_choice
from slimkit.measure.counters import count_costs
from slimkit.models import create_model
from slimkit.pareto import pareto_mask
from slimkit.search.evaluate import Target, TrialStopped, evaluate_plan
from slimkit.search.objectives import Objectives
from slimkit.search.space import SearchSpace
from slimkit.search.stopping import FinishedCurve, ParetoStoppingRule
from slimkit.search.study import (
    ATTR_SETTINGS,
    WorkerLimits,
    create_or_load_study,
    open_storage,
    run_worker,
)

logger = logging.getLogger(__name__)

SAMPLERS = ("nsga2", "tpe", "random")
PRUNERS = ("auto", "median", "successive_halving", "hyperband", "pareto", "none")
ATTR_PLAN = "slimkit.plan"
ATTR_METRICS = "slimkit.metrics"
ATTR_CANDIDATE = "slimkit.candidate"
ATTR_CURVE = "slimkit.curve"
ATTR_COST = "slimkit.train_cost"
ATTR_CONSTRAINTS = "slimkit.constraints"
ATTR_FEASIBLE = "slimkit.feasible"


@dataclass
class SearchSettings:
    """A search: space, objectives, target, budget, and where data, teacher and files are."""

    space: dict[str, Any]
    objectives: list[str] | dict[str, Any] = field(default_factory=lambda: ["accuracy", "latency"])
    constraints: list[str] = field(default_factory=list)
    target: dict[str, Any] = field(default_factory=dict)
    trials: int = 20
    sampler: str = "nsga2"
    pruner: str = "auto"
    seed: int = 0
    data: dict[str, Any] = field(default_factory=lambda: {"source": "digits"})
    teacher: str | None = None
    out_dir: str = "runs/search"
    study: str = "search"

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("pruner", self.pruner, PRUNERS)
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be an int >= 1; got {self.trials!r}")
        self.parsed_space = SearchSpace.from_dict(self.space)
        self.parsed_objectives = Objectives.from_config(self.objectives, self.constraints)
        self.parsed_target = Target(**self.target)
        if self.parsed_space.uses_distillation and self.teacher is None:
            raise ConfigError(
                "the space can choose distillation but no teacher was given (teacher: CKPT)"
            )

    def to_dict(self) -> dict[str, Any]:
        """What is stored in the study (plus the fingerprints that detect a changed space)."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        body["space_fingerprint"] = self.parsed_space.fingerprint()
        body["directions"] = self.parsed_objectives.directions
        body["objectives"] = self.parsed_objectives.to_dict()
        body["raw_objectives"] = self.objectives
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSettings:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k in names}
        body["objectives"] = data.get("raw_objectives", body.get("objectives"))
        return cls(**body)


def make_sampler(settings: SearchSettings, worker_index: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE or random; each worker gets its own seed (else workers repeat each other)."""
    seed = settings.seed * 1000 + worker_index
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=max(4, min(10, settings.trials // 4)),
            multivariate=True,
        )
    # a population of a fifth of the budget (at least 4) gives NSGA-II generations to evolve
    return optuna.samplers.NSGAIISampler(
        seed=seed,
        population_size=max(4, settings.trials // 5),
    )


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner | None:
    """Optuna's pruner for one objective; None for the Pareto rule or no early stopping."""
    pruner = settings.pruner
    scalar = settings.parsed_objectives.is_scalar
    if pruner in ("median", "successive_halving", "hyperband") and not scalar:
        raise ConfigError(
            f"pruner {pruner!r} ranks one value, so it needs a single objective; use "
            "pruner: pareto (or auto) for a multi-objective search"
        )
    if pruner == "auto":
        pruner = "median" if scalar else "pareto"
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return None


def _recipe_key(plan: Mapping[str, Any]) -> str:
    """The post-training part of a plan (techniques and options), as comparable text."""
    return json.dumps(plan.get("techniques") or [], sort_keys=True, default=str)


class TrialRunner:
    """The objective function: one trial = sample a plan, evaluate it, store its full record."""

    def __init__(
        self,
        settings: SearchSettings,
        study: optuna.Study,
        data: Dataset,
        *,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.study = study
        self.data = data
        self.say = say
        pruner = settings.pruner
        self.rule = (
            ParetoStoppingRule()
            if pruner == "pareto" or (pruner == "auto" and not settings.parsed_objectives.is_scalar)
            else None
        )

    def finished_curves(self) -> list[FinishedCurve]:
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            curve, cost = t.user_attrs.get(ATTR_CURVE), t.user_attrs.get(ATTR_COST)
            plan = t.user_attrs.get(ATTR_PLAN) or {}
            if curve and cost:
                out.append(FinishedCurve(curve, cost["macs"], cost["params"], _recipe_key(plan)))
        return out

    def __call__(self, trial: optuna.Trial) -> list[float]:
        settings = self.settings
        plan = settings.parsed_space.sample(trial)
        trial.set_user_attr(ATTR_PLAN, plan.to_dict())
        model = create_model(
            plan.model,
            input_shape=self.data.input_shape,
            num_classes=self.data.num_classes,
            **plan.model_kwargs,
        )
        cost = count_costs(model, self.data.input_shape)
        trial.set_user_attr(ATTR_COST, {"macs": cost.macs, "params": cost.params})
        curve: list[float] = []

        def on_epoch(epoch: int, accuracy: float) -> None:
            curve.append(accuracy)
            if settings.parsed_objectives.is_scalar:
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    raise TrialStopped(f"pruned at epoch {epoch}")
            elif self.rule is not None and self.rule.should_stop(
                epoch,
                accuracy,
                cost.macs,
                cost.params,
                self.finished_curves(),
                recipe=_recipe_key(plan.to_dict()),
            ):
                raise TrialStopped(f"dominated at the end, stopped at epoch {epoch}")

        try:
            candidate, metrics = evaluate_plan(
                plan,
                self.data,
                settings.parsed_target,
                Path(settings.out_dir) / "trials",
                name=f"trial-{trial.number:04d}",
                teacher=settings.teacher,
                seed=settings.seed,
                on_epoch=on_epoch,
                say=self.say,
            )
        except TrialStopped as stopped:
            trial.set_user_attr(ATTR_CURVE, curve)
            trial.set_user_attr("slimkit.stopped", str(stopped))
            raise optuna.TrialPruned(str(stopped)) from None
        candidate.trial = trial.number
        objectives = settings.parsed_objectives
        violations = objectives.violations(metrics)
        trial.set_user_attr(ATTR_CURVE, curve)
        trial.set_user_attr(ATTR_METRICS, metrics)
        trial.set_user_attr(ATTR_CANDIDATE, candidate.to_dict())
        trial.set_user_attr(ATTR_CONSTRAINTS, violations)
        for constraint, violation in zip(objectives.constraints, violations, strict=True):
            # the samplers (NSGA-II, TPE) read these: feasible when <= 0
            trial.set_constraint(constraint.text, violation if math.isfinite(violation) else 1e30)
        trial.set_user_attr(ATTR_FEASIBLE, all(v <= 0 for v in violations))
        return objectives.values(metrics)


def open_search(settings: SearchSettings, storage: str | None) -> optuna.Study:
    """Create or reopen the settings' study (a changed space or objective is refused)."""
    backend = open_storage(storage, settings.out_dir)
    return create_or_load_study(
        settings.study, backend, settings.parsed_objectives.directions, settings.to_dict()
    )


def load_settings(study: optuna.Study, out_dir: str | None = None) -> SearchSettings:
    """The settings a study was started with (``out_dir`` overrides where files go)."""
    stored = study.user_attrs.get(ATTR_SETTINGS)
    if not stored:
        raise ConfigError(f"study {study.study_name!r} was not created by slimkit search")
    settings = SearchSettings.from_dict(stored)
    if out_dir is not None:
        settings.out_dir = out_dir
    return settings


def work(
    settings: SearchSettings,
    storage: str | None,
    *,
    worker_index: int = 0,
    say: Callable[[str], None] | None = None,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
    limits: WorkerLimits | None = None,
) -> int:
    """Run one worker on the settings' study until its budget is finished."""
    backend = open_storage(storage, settings.out_dir)
    study = optuna.load_study(
        study_name=settings.study,
        storage=backend,
        sampler=make_sampler(settings, worker_index),
        pruner=make_pruner(settings),
    )
    data = load_dataset(DataConfig(**settings.data))
    runner = TrialRunner(settings, study, data, say=say)
    return run_worker(
        study, runner, limits or WorkerLimits(trials=settings.trials), on_event=on_event
    )


def _child_worker(settings: dict[str, Any], storage: str | None, index: int, threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-missing noise
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work(SearchSettings.from_dict(settings), storage, worker_index=index)


def run_search(
    settings: SearchSettings,
    *,
    storage: str | None = None,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
) -> optuna.Study:
    """Run (or resume) a search with ``workers`` local processes; returns the study.

    Worker 0 runs in this process (it drives ``say``/``on_event``); the others are spawned.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1; got {workers!r}")
    study = open_search(settings, storage)
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_child_worker, args=(settings.to_dict(), storage, index, threads), daemon=False
        )
        for index in range(1, workers)
    ]
    for child in children:
        child.start()
    try:
        torch.set_num_threads(threads)
        work(settings, storage, worker_index=0, say=say, on_event=on_event)
    finally:
        for child in children:
            child.join()
    export_front(study, settings)
    return study


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that satisfy every constraint."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(ATTR_FEASIBLE, True) and t.values is not None
    ]


def search_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front: non-dominated feasible trials, in trial order."""
    trials = feasible_trials(study)
    senses = [
        "max" if d == optuna.study.StudyDirection.MAXIMIZE else "min" for d in study.directions
    ]
    mask = pareto_mask([list(t.values) for t in trials], senses)
    return [t for t, keep in zip(trials, mask, strict=True) if keep]


def export_front(study: optuna.Study, settings: SearchSettings) -> list[Path]:
    """Copy the front's exported models into ``OUT/front/``."""
    folder = Path(settings.out_dir) / "front"
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for trial in search_front(study):
        artifact = (trial.user_attrs.get(ATTR_CANDIDATE) or {}).get("artifact")
        if artifact and Path(artifact).is_file():
            target = folder / Path(artifact).name
            shutil.copy2(artifact, target)
            copied.append(target)
    return copied

"""The search itself: settings → study → trials (local workers or remote) → the Pareto front.

:class:`SearchSettings` is everything a worker needs; it is stored in the study, so a worker on
another machine needs only the storage URL and the study name (``slimkit worker``).

Seeds. The sampler is seeded per *trial* (sampling.py): trial N draws with the seed
``trial_seed(settings.seed, N)`` (NumPy's ``SeedSequence([seed, N])``), recorded on the trial as
``slimkit.sampler_seed``. Trial numbers are unique in a study, so every worker process, local or
remote, and every re-run of a search draws from its own stream, while one search started afresh
with one worker repeats itself exactly. (Seeding per worker, as before, gave every
``slimkit worker`` and every re-run the same stream: they proposed the same trials.)

Duplicates. Before a trial trains, the study is looked up for a COMPLETE trial with the same
sampled plan (model, its arguments, training, techniques); if there is one, the trial is not
evaluated: it copies that trial's values and records (metrics, candidate, curve, constraints) and
is marked ``slimkit.reuse_of = N``. A reused trial counts as finished (it is COMPLETE), so a search
ends with exactly the requested trials even in a space smaller than its budget, and no
configuration is evaluated twice; the front, ``feasible_trials`` and the stopping rule leave
reused trials out (they would only repeat their original). When two workers draw the same plan at
once, the lower-numbered trial evaluates it and the other waits for it (see
:func:`slimkit.search.study.find_twin`). Training is seeded with ``settings.seed`` in every trial,
so a reused result is the one the duplicate would have produced.

Interruptions. Local workers (processes.py) mark their trial for a retry and exit quietly (status
130) on SIGINT or SIGTERM; the parent stops them when it stops (Ctrl-C or an error), and they
stop when it dies. Interrupted trials are retried on the next run, never counted as failures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from slimkit.data import DataConfig, Dataset, load_dataset
from slimkit.errors import ConfigError, SlimkitError, check_choice
from slimkit.measure.counters import count_costs
from slimkit.models import ModelSpec, build_model
from slimkit.models.registry import allow_user_code, user_code_rules
from slimkit.pareto import pareto_mask
from slimkit.search.evaluate import Target, TrialStopped, evaluate_plan
from slimkit.search.objectives import Objectives
from slimkit.search.processes import start_children, stop_children
from slimkit.search.sampling import seeded_sampler, trial_seed
from slimkit.search.space import SearchSpace
from slimkit.search.stopping import FinishedCurve, ParetoStoppingRule
from slimkit.search.study import (
    ATTR_REUSE_OF,
    ATTR_SETTINGS,
    DEFAULT_WAIT_S,
    ENVIRONMENT_ERRNOS,
    RunFolderError,
    WorkerLimits,
    create_or_load_study,
    find_twin,
    open_storage,
    run_worker,
)
from slimkit.threads import compute_threads, threads_per_worker

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
ATTR_SAMPLER_SEED = "slimkit.sampler_seed"
# what a reused trial copies from the trial that evaluated its plan
REUSED_ATTRS = (
    ATTR_PLAN,
    ATTR_METRICS,
    ATTR_CANDIDATE,
    ATTR_CURVE,
    ATTR_COST,
    ATTR_CONSTRAINTS,
    ATTR_FEASIBLE,
)


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
    # where the space's user functions ("module:function") may come from: the folders of the
    # recipe (besides the current directory) and the packages allowed by name
    code_roots: list[str] = field(default_factory=lambda: list(user_code_rules()[0]))
    allow_modules: list[str] = field(default_factory=lambda: list(user_code_rules()[1]))

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("pruner", self.pruner, PRUNERS)
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be an int >= 1; got {self.trials!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an int >= 0; got {self.seed!r}")
        with allow_user_code(self.code_roots, self.allow_modules):
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


def make_sampler(settings: SearchSettings) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE or random, seeded per trial (see the module docstring)."""
    return seeded_sampler(settings.sampler, settings.seed, trials=settings.trials)


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


def _canonical(plan: Mapping[str, Any]) -> str:
    # through JSON first, as the storage keeps it (tuples become lists, keys strings)
    return json.dumps(json.loads(json.dumps(plan, default=str)), sort_keys=True)


def plan_key(trial: FrozenTrial) -> str | None:
    """A trial's whole sampled plan as comparable text (None until it is sampled)."""
    plan = trial.user_attrs.get(ATTR_PLAN)
    return None if plan is None else _canonical(plan)


class TrialRunner:
    """The objective function: one trial = sample a plan, evaluate it, store its full record."""

    def __init__(
        self,
        settings: SearchSettings,
        study: optuna.Study,
        data: Dataset,
        *,
        say: Callable[[str], None] | None = None,
        limits: WorkerLimits | None = None,
    ) -> None:
        self.settings = settings
        self.study = study
        self.data = data
        self.say = say
        self.limits = limits or WorkerLimits(trials=settings.trials)
        pruner = settings.pruner
        self.rule = (
            ParetoStoppingRule()
            if pruner == "pareto" or (pruner == "auto" and not settings.parsed_objectives.is_scalar)
            else None
        )

    def finished_curves(self) -> list[FinishedCurve]:
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if ATTR_REUSE_OF in t.user_attrs:
                continue  # the same curve as its original
            curve, cost = t.user_attrs.get(ATTR_CURVE), t.user_attrs.get(ATTR_COST)
            plan = t.user_attrs.get(ATTR_PLAN) or {}
            if curve and cost:
                out.append(FinishedCurve(curve, cost["macs"], cost["params"], _recipe_key(plan)))
        return out

    def reuse(self, trial: optuna.Trial, twin: FrozenTrial) -> list[float]:
        """Copy the result of ``twin`` (same plan, COMPLETE) instead of evaluating again."""
        original = twin.user_attrs.get(ATTR_REUSE_OF, twin.number)
        for key in REUSED_ATTRS:
            if key in twin.user_attrs:
                trial.set_user_attr(key, twin.user_attrs[key])
        trial.set_user_attr(ATTR_REUSE_OF, original)
        violations = twin.user_attrs.get(ATTR_CONSTRAINTS) or []
        constraints = self.settings.parsed_objectives.constraints
        for constraint, violation in zip(constraints, violations, strict=False):
            trial.set_constraint(constraint.text, violation if math.isfinite(violation) else 1e30)
        logger.info(
            "trial %d: the same plan as trial %d; its result reused", trial.number, original
        )
        if self.say:
            self.say(f"trial-{trial.number:04d}: same plan as trial {original}, reused")
        return list(twin.values)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        settings = self.settings
        trial.set_user_attr(ATTR_SAMPLER_SEED, trial_seed(settings.seed, trial.number))
        plan = settings.parsed_space.sample(trial)
        trial.set_user_attr(ATTR_PLAN, plan.to_dict())
        twin = find_twin(
            self.study,
            trial.number,
            _canonical(plan.to_dict()),
            plan_key,
            grace_s=self.limits.grace_s,
            poll_s=self.limits.poll_s,
        )
        if twin is not None and twin.values is not None:
            return self.reuse(trial, twin)
        model = build_model(  # a zoo name or a user's "module:function"
            ModelSpec(
                plan.model, self.data.input_shape, self.data.num_classes, dict(plan.model_kwargs)
            )
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


def open_search(
    settings: SearchSettings, storage: str | None, *, wait_s: float = DEFAULT_WAIT_S
) -> optuna.Study:
    """Create or reopen the settings' study (a changed space or objective is refused)."""
    backend = open_storage(storage, settings.out_dir, wait_s=wait_s)
    objectives = settings.parsed_objectives
    return create_or_load_study(
        settings.study,
        backend,
        objectives.directions,
        settings.to_dict(),
        metric_names=objectives.metric_names,
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
    wait_s: float = DEFAULT_WAIT_S,
) -> int:
    """Run one worker on the settings' study until its budget is finished.

    ``wait_s`` is the longest database outage the worker waits out (see
    :mod:`slimkit.search.reconnect`). ``worker_index`` only names the worker in logs.
    """
    limits = limits or WorkerLimits(trials=settings.trials)
    backend = open_storage(storage, settings.out_dir, wait_s=wait_s)
    study = optuna.load_study(
        study_name=settings.study,
        storage=backend,
        sampler=make_sampler(settings),
        pruner=make_pruner(settings),
    )
    data = load_dataset(DataConfig(**settings.data))
    runner = TrialRunner(settings, study, data, say=say, limits=limits)
    logger.debug("worker %d (pid %d) joins study %s", worker_index, os.getpid(), settings.study)
    try:
        with allow_user_code(settings.code_roots, settings.allow_modules):
            return run_worker(study, runner, limits, on_event=on_event, workdir=settings.out_dir)
    except OSError as error:  # a journal write failed: the trial stays RUNNING, retried later
        if error.errno not in ENVIRONMENT_ERRNOS or isinstance(error, SlimkitError):
            raise
        raise RunFolderError(
            f"cannot write to the run folder {settings.out_dir}: {error.strerror}; free space "
            "or make it writable, then run again: finished trials are kept, the interrupted "
            "one is retried"
        ) from error


def run_search(
    settings: SearchSettings,
    *,
    storage: str | None = None,
    workers: int = 1,
    say: Callable[[str], None] | None = None,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    threads: int | None = None,
) -> optuna.Study:
    """Run (or resume) a search with ``workers`` local processes; returns the study.

    Worker 0 runs in this process (it drives ``say``/``on_event``); the others are spawned, and
    stopped (their trials retried later) when this one ends with an error or an interruption.
    The workers share ``threads`` (None: the count in effect, else every CPU this process may
    use): each computes on ``threads // workers`` (at least 1; see :mod:`slimkit.threads`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1; got {workers!r}")
    study = open_search(settings, storage, wait_s=wait_s)
    each = threads_per_worker(threads, workers)
    children = start_children(settings.to_dict(), storage, workers, each, wait_s)
    try:
        with compute_threads(each):
            work(settings, storage, worker_index=0, say=say, on_event=on_event, wait_s=wait_s)
        for child in children:
            child.join()
            if child.exitcode:
                logger.warning("worker process %d ended with status %d", child.pid, child.exitcode)
    except BaseException:
        stop_children(children)
        raise
    export_front(study, settings)
    return study


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that satisfy every constraint (a reused trial only through its original)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(ATTR_FEASIBLE, True)
        and t.values is not None
        and ATTR_REUSE_OF not in t.user_attrs
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

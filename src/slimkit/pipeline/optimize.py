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

import contextlib
import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState
from torch import nn

from slimkit.data import DataConfig, Dataset, load_dataset
from slimkit.data.dataset import data_record
from slimkit.errors import ConfigError, SlimkitError
from slimkit.io import WriteError, write_atomic, write_json_atomic, write_text_atomic
from slimkit.measure import environment
from slimkit.models import create_model, model_spec_of
from slimkit.models.registry import allow_user_code
from slimkit.pipeline.recipe import CandidateSpec, ModelSource, Recipe, build_user_model
from slimkit.progress import Progress, ProgressEvent, ProgressFn, reporting
from slimkit.report import Report, write_report
from slimkit.report.candidates import Candidate
from slimkit.search import SearchSettings, run_search
from slimkit.search.evaluate import evaluate_plan
from slimkit.search.interruptions import (
    caused_by_interrupt,
    environment_problem,
    environment_text,
    noting_interrupts,
)
from slimkit.search.run import ATTR_CANDIDATE
from slimkit.search.space import (
    DISTILLATION,
    SearchSpace,
    TrialPlan,
    check_values,
    default_space,
)
from slimkit.search.study import RunFolderError
from slimkit.threads import compute_threads
from slimkit.train import (
    EpochProgress,
    TrainConfig,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
    train,
)
from slimkit.train.weights import load_weights

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
Advance = Callable[[str, int, int], None]


MARKER = ".slimkit-run"


def file_stem(name: str) -> str:
    """A file name for a candidate: readable, and distinct for every distinct name.

    ``dyn (a)`` and ``dyn [a]`` share a readable part, so the stem ends with a short hash of the
    exact name (``baseline`` keeps its plain name).
    """
    if name == "baseline":
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "candidate"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def remove_run_folder(path: Path) -> None:
    """Delete a run folder, only if slimkit made it (it holds the marker file)."""
    if not path.exists():
        return
    if not (path / MARKER).is_file():
        raise ConfigError(
            f"{path} is not a slimkit run folder (it has no {MARKER} file), so --fresh will not "
            "delete it; choose another --out, or remove the folder yourself"
        )
    import shutil

    shutil.rmtree(path)


class RunFolder:
    """The run folder: creation with clear errors, the recipe check, candidate files."""

    def __init__(self, path: Path, recipe: Recipe) -> None:
        self.path = path
        fresh = not path.exists() or not any(path.iterdir())
        try:
            (path / "candidates").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(
                f"cannot create run folder {path}: {error.strerror or error} "
                "(choose another --out, or fix its permissions / free disk space)"
            ) from error
        marker = path / "recipe.json"
        if marker.is_file():
            stored = _read_json(marker)
            if stored.get("fingerprint") != recipe.fingerprint():
                raise ConfigError(
                    f"run folder {path} holds a run of a different recipe "
                    f"({stored.get('name')!r}, fingerprint {stored.get('fingerprint')}); "
                    "use another --out / recipe name, or --fresh to start this folder over"
                )
        else:
            if fresh:
                write_text_atomic(path / MARKER, "made by slimkit optimize\n")
            write_json_atomic(
                marker,
                {"name": recipe.name, "fingerprint": recipe.fingerprint(), "recipe": recipe.source},
            )

    def candidate_file(self, name: str) -> Path:
        return self.path / "candidates" / f"{file_stem(name)}.json"

    def load_candidate(self, name: str) -> Candidate | None:
        """The finished candidate ``name``, or None to (re)run it.

        A candidate that failed because of the machine (a full disk, ...) is run again.
        """
        path = self.candidate_file(name)
        if not path.is_file():
            return None
        candidate = Candidate.from_dict(_read_json(path))
        if candidate.name != name:
            return None
        if candidate.error and environment_text(candidate.error):
            logger.warning(
                "candidate %s failed for a reason of the machine; running it again", name
            )
            return None
        return candidate

    def save_candidate(self, candidate: Candidate) -> None:
        write_json_atomic(self.candidate_file(candidate.name), candidate.to_dict())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{path} cannot be read ({type(error).__name__}); was it edited by hand? Restore it, "
            "or start the run over with --fresh"
        ) from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path} is not a slimkit record; restore it or use --fresh")
    return body


def _baseline_model(recipe: Recipe, data: Dataset, folder: RunFolder, say: Say) -> nn.Module:
    """The trained baseline: loaded, reused from the run folder, or trained (resumably)."""
    source = recipe.model
    if source.checkpoint is not None:
        say(f"baseline: loading {source.checkpoint}")
        return load_checkpoint(source.checkpoint).model
    saved = folder.path / "baseline.safetensors"
    torch.manual_seed(recipe.seed)
    if source.module is not None:  # optimize(recipe, model=...): the trained module, as it is
        say(f"baseline: {source.describe()} as given")
        return _save_baseline(source, copy.deepcopy(source.module).eval(), data, saved)
    if source.weights is not None:  # the user's trained weights are the baseline, as they are
        say(f"baseline: loading {source.describe()}")
        return _save_baseline(
            source, load_weights(_build(recipe, data), source.weights), data, saved
        )
    if source.zoo is not None and saved.is_file():
        say("baseline: reusing the trained checkpoint")
        return load_checkpoint(saved).model
    model = _build(recipe, data)
    if saved.is_file():  # a user function's trained weights
        from safetensors.torch import load_model

        load_model(model, str(saved))
        return model.eval()
    config = TrainConfig.from_dict({**recipe.train, "seed": recipe.seed})
    state = folder.path / "baseline.train-state.pt"
    doing = "resuming" if state.is_file() else "training"
    say(f"baseline: {doing} {source.describe()} ({config.epochs} epochs)")
    train(model, data, config, resume_file=state, callbacks=[EpochProgress(_epochs_to(say))])
    _save_baseline(source, model, data, saved)
    state.unlink(missing_ok=True)
    return model.eval()


def _build(recipe: Recipe, data: Dataset) -> nn.Module:
    """The recipe's zoo model or user function, built for the data (untrained)."""
    source = recipe.model
    if source.zoo is not None:
        return create_model(
            source.zoo, input_shape=data.input_shape, num_classes=data.num_classes, **source.args
        )
    assert source.function is not None
    return build_user_model(
        source.function, source.args, data.input_shape, data.num_classes, code=recipe.code
    )


def _save_baseline(source: ModelSource, model: nn.Module, data: Dataset, saved: Path) -> nn.Module:
    """Write the baseline to the run folder as a slimkit checkpoint (a user function's records
    the function and its args, so export, quantize and a distillation teacher rebuild it); a
    module given in Python without a spec is written as plain safetensors weights."""
    if model_spec_of(model) is not None:
        save_checkpoint(model, saved, metadata={"data": data_record(data)})
    else:
        from safetensors.torch import save_model

        write_atomic(saved, lambda tmp: save_model(model.to("cpu"), str(tmp)))
    return model.eval()


def _epochs_to(say: Say) -> ProgressFn:
    """The baseline's epochs as messages: ``baseline: epoch 3/30 loss 0.41 val 97.10%``."""

    def report(event: ProgressEvent) -> None:
        if event.done:
            say(f"baseline: epoch {event.done}/{event.total} {event.info}")

    return report


def _check_module(module: nn.Module, data: Dataset) -> None:
    """A model given in Python must run on two of the data's inputs and give one logit a class."""
    name = type(module).__name__
    probe = copy.deepcopy(module).eval().to("cpu")
    try:
        with torch.no_grad():
            out = probe(data.train.head(2))
    except Exception as error:  # the user's module: any failure is one line
        raise ConfigError(
            f"model= ({name}) cannot run on the data's inputs {tuple(data.input_shape)} "
            f"{data.input_dtype}: {type(error).__name__}: {_first_line(error)}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, data.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model= ({name}) gives {shape} for 2 inputs; slimkit needs logits (2, "
            f"{data.num_classes}): one per class of {data.describe()}"
        )


def preflight(recipe: Recipe, data: Dataset) -> None:
    """The checks that need the data's shapes, made before anything trains.

    A checkpoint must take the data's inputs and classes; every zoo model the recipe names (the
    baseline, candidates' own models, each searched value of the search's models) must build for
    these inputs — built on PyTorch's ``meta`` device, which allocates nothing.
    """
    where = recipe.location
    source = recipe.model
    if source.module is not None:
        _check_module(source.module, data)
    if source.checkpoint is not None:
        spec, _ = read_checkpoint_metadata(source.checkpoint)
        if tuple(spec.input_shape) != data.input_shape or spec.num_classes != data.num_classes:
            raise ConfigError(
                f"{where / 'model' / 'checkpoint'}: {source.checkpoint} holds a model for inputs "
                f"{tuple(spec.input_shape)} and {spec.num_classes} classes, but the data "
                f"({data.describe()}) has inputs {data.input_shape} and "
                f"{data.num_classes} classes; use a checkpoint trained on this data, or this "
                "checkpoint's data"
            )
    if source.zoo is not None:
        _meta_build(source.zoo, source.args, data, where / "model")
    for index, spec_ in enumerate(recipe.candidates):
        if spec_.model is not None and spec_.model.zoo is not None:
            _meta_build(spec_.model.zoo, spec_.model.args, data, where / "candidates" / index)
    if recipe.search:
        space = SearchSpace.from_dict(recipe.search["space"] or default_space())
        for name, options in space.models.items():
            if ":" in name:  # a user's function: its code may not run on the meta device
                continue
            fixed = {k: v for k, v in options.to_dict().items() if not isinstance(v, dict)}
            at = where / "search" / "space" / "model" / name
            check_values(options, at, _one_value_build(name, fixed, data))


def _one_value_build(
    name: str, fixed: Mapping[str, Any], data: Dataset
) -> Callable[[str, Any], None]:
    def build(key: str, value: Any) -> None:
        _meta_build(name, {**fixed, key: value}, data, None)

    return build


def _meta_build(name: str, args: Mapping[str, Any], data: Dataset, where: Any) -> None:
    """Build zoo model ``name`` on the meta device (no memory): a bad argument fails here."""
    try:
        with torch.device("meta"):
            create_model(
                name, input_shape=data.input_shape, num_classes=data.num_classes, **dict(args)
            )
    except Exception as error:  # a builder's own check (ModelError) or a shape it cannot take
        if where is None:
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"{where}: model {name} cannot be built with {dict(args)} for inputs "
            f"{data.input_shape}: {reason or type(error).__name__}"
        ) from None


def _baseline_name(recipe: Recipe) -> str:
    source = recipe.model
    if source.module is not None:
        return type(source.module).__name__
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
        built = model_source.zoo or model_source.function
        assert built is not None  # the recipe check made sure
        plan = TrialPlan(
            built,
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
        name=file_stem(spec.name),
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
    source = recipe.model
    if source.checkpoint:
        teacher = source.checkpoint
    elif source.zoo or source.function or model_spec_of(source.module) is not None:
        teacher = str(folder.path / "baseline.safetensors")  # a checkpoint that rebuilds it
    return SearchSettings(
        space=search["space"] or default_space(distill=teacher is not None),
        objectives=recipe.source.get("objectives") or ["accuracy", "latency"],
        constraints=list(recipe.source.get("constraints") or []),
        target=recipe.target.to_dict(),
        trials=search["trials"],
        sampler=search["sampler"],
        pruner=search["pruner"],
        seed=search["seed"],
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


def _with_module(recipe: Recipe, model: nn.Module) -> Recipe:
    """The recipe with ``model`` as its baseline; its weights' hash joins the recipe's
    fingerprint, so a run folder never mixes two different models under one name."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model= must be a torch.nn.Module; got {type(model).__name__}")
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    described = {"python": type(model).__name__, "weights_sha256": digest.hexdigest()}
    return dataclasses.replace(
        recipe,
        model=ModelSource(module=model),
        source={**recipe.source, "model": described},
    )


def _as_recipe(recipe: Recipe | Mapping[str, Any] | str | Path, allow: Iterable[str]) -> Recipe:
    if isinstance(recipe, str | Path):
        return Recipe.from_file(recipe, allow_modules=allow)
    if isinstance(recipe, Recipe):
        return recipe
    return Recipe.from_dict(recipe, allow_modules=allow)


def _new_report(recipe: Recipe) -> Report:
    stages = ["baseline", "candidates", *(["search"] if recipe.search else []), "report"]
    return Report(
        name=recipe.name,
        recipe=dict(recipe.source),
        runtime=recipe.target.runtime,
        batch_size=recipe.target.batch_size,
        threads=recipe.target.threads,
        environment=environment(),
        candidates=[],
        stages=[{"name": name, "status": "pending"} for name in stages],
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _set_stage(report: Report, name: str, status: str) -> None:
    for stage in report.stages:
        if stage["name"] == name:
            stage["status"] = status


def _current_stage(report: Report) -> str:
    return next((s["name"] for s in report.stages if s["status"] == "pending"), "report")


def _baseline_candidate(
    recipe: Recipe, data: Dataset, model: nn.Module, folder: RunFolder, say: Say
) -> Candidate:
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
            say=say,
            trained=copy.deepcopy(model),
        )
        folder.save_candidate(base)
    return base


def _fixed_candidate(
    spec: CandidateSpec,
    recipe: Recipe,
    data: Dataset,
    baseline: nn.Module,
    folder: RunFolder,
    say: Say,
) -> Candidate:
    """A finished candidate, or run it now; its own failure is its result, the machine's is not."""
    done = folder.load_candidate(spec.name)
    if done is not None:
        return done
    try:
        done = _run_candidate(spec, recipe, data, baseline, folder, say)
    except Exception as error:
        if caused_by_interrupt(error):  # a library wrapped the KeyboardInterrupt
            raise KeyboardInterrupt from error
        problem = environment_problem(error, folder.path)
        if problem is not None:  # the run stops; a re-run once the machine is mended runs it
            raise RunFolderError(
                f"candidate {spec.name!r} stopped: the run folder {folder.path} cannot be "
                f"written ({problem}); free space or make it writable, then run again: finished "
                "work is kept"
            ) from error
        logger.warning("candidate %s failed: %s", spec.name, error)
        done = Candidate(
            spec.name,
            source="technique",
            techniques=spec.techniques,
            error=f"{type(error).__name__}: {error}".splitlines()[0][:500],
        )
    folder.save_candidate(done)
    return done


def _search_stage(
    recipe: Recipe,
    folder: RunFolder,
    say: Say,
    on_event: Callable[[str, Mapping[str, int]], None] | None,
) -> list[Candidate]:
    assert recipe.search is not None
    study = run_search(
        _search_settings(recipe, folder),
        storage=recipe.search["storage"],
        workers=recipe.search["workers"],
        say=say,
        on_event=on_event,
    )
    return _search_candidates(study)


def _note_constraints(report: Report, recipe: Recipe) -> None:
    for candidate in report.candidates:
        mark_feasibility(candidate, recipe)
    if recipe.objectives.constraints:
        texts = ", ".join(c.text for c in recipe.objectives.constraints)
        breaking = [c.name for c in report.candidates if c.details.get("feasible") is False]
        report.notes.append(
            f"constraints: {texts}; breaking them (never on a front): "
            f"{', '.join(breaking) or 'none'}"
        )


def _write_unfinished(report: Report, folder: RunFolder, status: str, note: str | None) -> None:
    """Mark the stage that stopped and write the report, without hiding why it stopped."""
    _set_stage(report, _current_stage(report), status)
    report.complete = False
    if note:
        report.notes.append(note)
    with contextlib.suppress(SlimkitError, OSError):  # e.g. the disk that stopped the run is full
        write_report(report, folder.path)


def optimize(
    recipe: Recipe | Mapping[str, Any] | str | Path,
    *,
    out: str | Path | None = None,
    runs_dir: str | Path = "runs",
    say: Say | None = None,
    advance: Advance | None = None,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
    allow_modules: Iterable[str] = (),
    threads: int | None = None,
    progress: Progress = None,
    model: nn.Module | None = None,
) -> Report:
    """Run a recipe end to end (or continue it) and return the report object.

    Args:
        recipe: a :class:`Recipe`, a recipe dict, or the path of a YAML recipe.
        model: your trained model: the baseline as it is (not retrained), in place of the
            recipe's ``model``. Candidates fine-tune copies of it; a module built by
            :func:`~slimkit.create_model` (or a recipe function) can also teach the search.
        out: the run folder (default ``runs_dir/NAME``).
        say: progress messages; ``advance(stage, done, total)`` after each finished unit;
            ``on_event`` gets the search's trial counts.
        allow_modules: installed packages whose functions a recipe may name (besides the
            ``.py`` files in the recipe's folder and the current directory).
        threads: CPU threads to train, compress and evaluate with (None: the count in effect,
            else every CPU this process may use; see :mod:`slimkit.threads`). Latency is timed
            with the recipe's ``target.threads``.
        progress: :class:`~slimkit.progress.ProgressEvent` s (stage ``optimize``: units done of
            baseline + candidates + trials, ``info`` the message of ``say``; the trainings
            inside report as stage ``train``) to a function, a tqdm bar (``True``), nothing
            (``False``); ``None``: a bar in a notebook only (see :mod:`slimkit.progress`).

    Example:
        >>> report = optimize("recipes/digits.yaml")  # doctest: +SKIP
        >>> report.front("latency")  # doctest: +SKIP
    """
    recipe = _as_recipe(recipe, allow_modules)
    if model is not None:
        recipe = _with_module(recipe, model)
    # import the plotting stack before any long work: a Ctrl-C that lands inside a first,
    # lazy import would leave matplotlib half-imported for the final (incomplete) report
    import matplotlib.figure  # noqa: F401

    folder = RunFolder(Path(out) if out is not None else Path(runs_dir) / recipe.name, recipe)
    report = _new_report(recipe)
    total = 1 + len(recipe.candidates) + (recipe.search["trials"] if recipe.search else 0)
    try:
        with noting_interrupts(), compute_threads(threads), reporting(progress) as shown:
            hooks = _Hooks(say, advance, on_event, shown, total, 1 + len(recipe.candidates))
            _run_stages(recipe, report, folder, hooks.say, hooks.advance, hooks.on_event, total)
    except KeyboardInterrupt:
        note = "interrupted (Ctrl-C): finished work is kept; re-run to continue"
        _write_unfinished(report, folder, "interrupted", note)
        raise
    except Exception as error:
        note = None
        if environment_problem(error, None) is not None:
            note = f"stopped by the machine ({_first_line(error)}): re-run when it is mended"
        _write_unfinished(report, folder, "failed", note)
        raise
    return report


class _Hooks:
    """``say``, ``advance`` and ``on_event`` of :func:`optimize`, each also a
    :class:`ProgressEvent` (stage ``optimize``) to ``report`` when progress is shown."""

    def __init__(
        self,
        say: Say | None,
        advance: Advance | None,
        on_event: Callable[[str, Mapping[str, int]], None] | None,
        report: ProgressFn | None,
        total: int,
        trials_after: int,
    ) -> None:
        self._say, self._advance, self._on_event, self.report = say, advance, on_event, report
        self.total, self.trials_after, self.done = total, trials_after, 0

    def say(self, message: str) -> None:
        if self._say is not None:
            self._say(message)
        if self.report is not None:
            self.report(ProgressEvent("optimize", self.done, self.total, message))

    def advance(self, stage: str, done: int, total: int) -> None:
        if self._advance is not None:
            self._advance(stage, done, total)
        self.done = done
        if self.report is not None:
            self.report(ProgressEvent("optimize", done, total, f"{stage}: {done}/{total} done"))

    def on_event(self, kind: str, counts: Mapping[str, int]) -> None:
        if self._on_event is not None:
            self._on_event(kind, counts)
        done = self.trials_after + counts["finished"]
        if done != self.done:
            self.done = done
            trials = self.total - self.trials_after
            self.say(f"search: {counts['finished']}/{trials} trials finished")


def _run_stages(
    recipe: Recipe,
    report: Report,
    folder: RunFolder,
    tell: Say,
    step: Advance,
    on_event: Callable[[str, Mapping[str, int]], None] | None,
    total: int,
) -> None:
    """Baseline, candidates, search, report: each finished piece on disk before the next."""
    # checkpoints of the recipe's own functions (the baseline, a teacher) rebuild from its folder
    with allow_user_code(recipe.code.roots, recipe.code.allow_modules):
        data = load_dataset(DataConfig.from_dict(recipe.data))
        preflight(recipe, data)
        baseline = _baseline_model(recipe, data, folder, tell)
        report.candidates.append(_baseline_candidate(recipe, data, baseline, folder, tell))
        _set_stage(report, "baseline", "done")
        step("baseline", 1, total)
        write_report(report, folder.path)
        for index, spec in enumerate(recipe.candidates):
            report.candidates.append(_fixed_candidate(spec, recipe, data, baseline, folder, tell))
            step("candidates", 2 + index, total)
        _set_stage(report, "candidates", "done")
        write_report(report, folder.path)
        if recipe.search:
            report.candidates.extend(_search_stage(recipe, folder, tell, on_event))
            _set_stage(report, "search", "done")
        _note_constraints(report, recipe)
        report.complete = True
        _set_stage(report, "report", "done")
        write_report(report, folder.path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__

"""Issue 18, item 1: no configuration drawn twice by workers or re-runs, none evaluated twice.

Samplers used to be seeded per worker index, and every ``slimkit worker`` and every re-run of
``slimkit search run`` was worker 0: they proposed the same trials. Now every trial draws from
its own seed, and a plan already evaluated is reused, not trained again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from slimkit.search import SearchSettings, open_search, run_search
from slimkit.search.run import (
    ATTR_CANDIDATE,
    ATTR_METRICS,
    ATTR_PLAN,
    ATTR_SAMPLER_SEED,
    make_sampler,
    search_front,
    trial_seed,
)
from slimkit.search.study import ATTR_REUSE_OF, open_storage

from .conftest import TINY_SPACE


def _ask_plan(study: optuna.Study, settings: SearchSettings) -> str:
    trial = study.ask()
    plan = settings.parsed_space.sample(trial)
    study.tell(trial, [0.5, 1.0])
    return json.dumps(plan.to_dict(), sort_keys=True)


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_workers_and_reruns_draw_their_own_trials(tmp_path: Path, sampler: str) -> None:
    settings = SearchSettings(space=TINY_SPACE, trials=8, sampler=sampler, out_dir=str(tmp_path))
    open_search(settings, None)

    def worker() -> optuna.Study:  # what each `slimkit worker` / re-run builds, alike
        storage = open_storage(None, tmp_path)
        return optuna.load_study(
            study_name="search", storage=storage, sampler=make_sampler(settings)
        )

    first, second = worker(), worker()
    plans = [_ask_plan(study, settings) for study in (first, second, first, second)]
    rerun = worker()
    plans += [_ask_plan(rerun, settings) for _ in range(2)]
    assert len(set(plans)) == len(plans)  # lr is continuous: any repeat is a seeding bug
    assert len({trial_seed(settings.seed, n) for n in range(1000)}) == 1000


def test_a_fresh_search_with_one_worker_repeats_itself(tmp_path: Path) -> None:
    def plans(folder: Path) -> list[str]:
        settings = SearchSettings(space=TINY_SPACE, trials=4, sampler="tpe", out_dir=str(folder))
        study = open_search(settings, None)
        study.sampler = make_sampler(settings)
        return [_ask_plan(study, settings) for _ in range(4)]

    assert plans(tmp_path / "a") == plans(tmp_path / "b")


DUPLICATE_SPACE: dict[str, Any] = {  # two plans only, for a budget of four
    "model": {"mlp": {"hidden": [16]}},
    "train": {"epochs": 1, "lr": {"choice": [0.01, 0.003]}},
}


@pytest.mark.slow
def test_a_plan_already_evaluated_is_reused_not_trained_again(tmp_path: Path) -> None:
    settings = SearchSettings(
        space=DUPLICATE_SPACE,
        objectives=["accuracy", "size"],
        trials=4,
        sampler="random",
        pruner="none",
        out_dir=str(tmp_path),
        target={"latency_budget_s": 0.1},
    )
    study = run_search(settings)
    done = study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,))
    assert len(done) == 4 and len(study.trials) == 4  # exactly the budget, nothing else
    evaluated = [t for t in done if ATTR_REUSE_OF not in t.user_attrs]
    reused = [t for t in done if ATTR_REUSE_OF in t.user_attrs]
    plans = [json.dumps(t.user_attrs[ATTR_PLAN], sort_keys=True) for t in evaluated]
    assert len(set(plans)) == len(plans) and len(reused) >= 2
    exported = sorted(p.stem for p in (tmp_path / "trials").glob("trial-*.onnx"))
    assert exported == [f"trial-{t.number:04d}" for t in evaluated]  # trained once each
    for trial in reused:
        original = study.trials[trial.user_attrs[ATTR_REUSE_OF]]
        assert original.user_attrs[ATTR_PLAN] == trial.user_attrs[ATTR_PLAN]
        assert trial.values == original.values
        assert trial.user_attrs[ATTR_METRICS] == original.user_attrs[ATTR_METRICS]
        assert trial.user_attrs[ATTR_CANDIDATE] == original.user_attrs[ATTR_CANDIDATE]
    assert all(ATTR_REUSE_OF not in t.user_attrs for t in search_front(study))
    seeds = [t.user_attrs[ATTR_SAMPLER_SEED] for t in done]
    assert seeds == [trial_seed(0, t.number) for t in done]


def test_the_study_names_its_metrics_for_the_dashboard(tmp_path: Path) -> None:
    settings = SearchSettings(
        space=TINY_SPACE,
        trials=2,
        objectives=["accuracy", "latency", "size"],
        out_dir=str(tmp_path),
    )
    open_search(settings, None)
    reopened = optuna.load_study(study_name="search", storage=open_storage(None, tmp_path))
    assert reopened.metric_names == ["accuracy", "latency (ms)", "size (bytes)"]

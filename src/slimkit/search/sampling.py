"""Samplers seeded per trial: every worker process and every re-run draws its own trials.

Optuna samplers seeded alike propose the same trials, so seeding one per worker index made every
``slimkit worker`` (and every re-run of ``slimkit search run``, all "worker 0") repeat the others.
Here trial N draws with ``trial_seed(seed, N)``: trial numbers are unique in a study, so the
streams differ across processes, machines and re-runs, and a fresh search run by one worker
repeats itself exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a search seeded ``seed`` (a 32-bit int).

    Example:
        >>> trial_seed(0, 3) == trial_seed(0, 3) != trial_seed(0, 4)
        True
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """A sampler rebuilt for every trial with the seed ``trial_seed(seed, trial.number)``.

    The samplers keep no state between trials that the study does not hold (NSGA-II keeps its
    generations in the storage), so rebuilding one per trial changes only its random stream.

    Args:
        build: makes the sampler for one seed.
        seed: the search's seed.
    """

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self.build = build
        self.seed = seed
        self.current = build(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.current = self.build(trial_seed(self.seed, trial.number))
        self.current.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.current.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.current.reseed_rng()


def seeded_sampler(name: str, seed: int, *, trials: int) -> BaseSampler:
    """``nsga2``, ``tpe`` or ``random`` for a budget of ``trials``, seeded per trial.

    Example:
        >>> sampler = seeded_sampler("tpe", 0, trials=20)
    """

    def build(trial_seed: int) -> BaseSampler:
        if name == "random":
            return optuna.samplers.RandomSampler(seed=trial_seed)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=trial_seed,
                n_startup_trials=max(4, min(10, trials // 4)),
                multivariate=True,
            )
        # a population of a fifth of the budget (at least 4) gives NSGA-II generations to evolve
        return optuna.samplers.NSGAIISampler(seed=trial_seed, population_size=max(4, trials // 5))

    return TrialSeededSampler(build, seed)

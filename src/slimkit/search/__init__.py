"""Multi-objective search over architectures, training and compression recipes (Optuna).

``SearchSpace`` (space.py) describes the choices as data; ``Objectives`` (objectives.py) the
metrics, the MnasNet reward and hard constraints; ``evaluate_plan`` (evaluate.py) builds, trains,
compresses, exports and measures one candidate; study.py keeps the study (journal file, SQLite or
PostgreSQL) and runs workers that finish exactly the requested number of trials; stopping.py holds
the multi-objective early-stopping rule; run.py ties them together.
"""

from slimkit.search.evaluate import Target, TrialStopped, evaluate_plan, machine_lock
from slimkit.search.objectives import Constraint, Objectives, mnasnet_reward, parse_constraint
from slimkit.search.run import (
    SearchSettings,
    TrialRunner,
    feasible_trials,
    load_settings,
    open_search,
    run_search,
    search_front,
    work,
)
from slimkit.search.space import SearchSpace, TrialPlan, default_space
from slimkit.search.stopping import FinishedCurve, ParetoStoppingRule
from slimkit.search.study import StorageError, WorkerLimits, open_storage, sweep_stale

__all__ = [
    "Constraint",
    "FinishedCurve",
    "Objectives",
    "ParetoStoppingRule",
    "SearchSettings",
    "SearchSpace",
    "StorageError",
    "Target",
    "TrialPlan",
    "TrialRunner",
    "TrialStopped",
    "WorkerLimits",
    "default_space",
    "evaluate_plan",
    "feasible_trials",
    "load_settings",
    "machine_lock",
    "mnasnet_reward",
    "open_search",
    "open_storage",
    "parse_constraint",
    "run_search",
    "search_front",
    "sweep_stale",
    "work",
]

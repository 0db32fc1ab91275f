"""A worker process for the study tests: each trial sleeps, so a test can kill it mid-trial.

Usage: python slow_worker.py STORAGE STUDY TRIALS SLEEP_S
(STORAGE is a SQLAlchemy URL or ``journal:PATH``.)
"""

from __future__ import annotations

import sys
import time

import optuna

from slimkit.search.study import WorkerLimits, open_storage, run_worker


def main() -> None:
    storage_url, name, trials, sleep_s = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, None)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )

    def run_trial(trial: optuna.Trial) -> list[float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(sleep_s)
        return [x]

    run_worker(study, run_trial, WorkerLimits(trials=trials, heartbeat_s=0.5, poll_s=0.2))


if __name__ == "__main__":
    main()

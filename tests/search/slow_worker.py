"""A worker process for the study tests: each trial sleeps, so a test can kill it mid-trial.

Usage: python slow_worker.py STORAGE STUDY TRIALS SLEEP_S [WAIT_S]
(STORAGE is a SQLAlchemy URL or ``journal:PATH``; WAIT_S the longest database outage waited out.)
Exits 1 with one line on a slimkit error, 130 on SIGINT.
"""

from __future__ import annotations

import sys
import time

import numpy.random  # noqa: F401  (imported here: a Ctrl-C inside its lazy import is lost)
import optuna

from slimkit.errors import SlimkitError
from slimkit.search.study import WorkerLimits, open_storage, run_worker


def main() -> int:
    storage_url, name, trials, sleep_s = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    waiting = {"wait_s": float(sys.argv[5])} if len(sys.argv) > 5 else {}
    storage = open_storage(storage_url, None, **waiting)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )

    def run_trial(trial: optuna.Trial) -> list[float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        deadline = time.monotonic() + sleep_s
        while time.monotonic() < deadline:  # short sleeps, like a training loop's steps
            time.sleep(0.05)
        return [x]

    limits = WorkerLimits(trials=trials, heartbeat_s=0.5, poll_s=0.2)
    try:
        run_worker(study, run_trial, limits)
    except SlimkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

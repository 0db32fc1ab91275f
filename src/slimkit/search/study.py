"""Studies: where trials live (journal file, SQLite or PostgreSQL) and the worker loop.

Storage: by default the study is Optuna's journal file ``study.journal`` in the run folder (one
machine, any number of local processes, nothing to install). ``postgresql://...`` (or any
SQLAlchemy URL) lets workers on many machines share one study.

Exactly ``trials`` finished trials, whatever gets killed. Optuna alone does not guarantee it (a
trial killed before its first heartbeat stays RUNNING for ever; ``MaxTrialsCallback`` is checked
after a trial, not before), so every worker:

1. *sweeps* before each trial: a RUNNING trial whose worker is gone (same host, dead pid) or whose
   heartbeat (a user attribute refreshed every ``heartbeat_s``; the start time if it never beat)
   is older than ``grace_s`` is set to FAIL — by one sweeper only, since a finished trial cannot
   be updated again — and its parameters are enqueued once, so that it is retried;
2. asks for a trial only while finished + running < ``trials``, and after asking counts the
   finished and running trials numbered below its own: if they already fill the budget, its trial
   is marked FAIL as surplus and never run.

"Finished" means COMPLETE or PRUNED (stopped early): both used up budget. Trials that raise an
error are FAIL (with the error as an attribute), not retried and not counted; a search stops
with an error when failures outnumber the budget.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from slimkit.errors import ConfigError, SlimkitError

logger = logging.getLogger(__name__)

ATTR_SETTINGS = "slimkit.settings"
ATTR_HEARTBEAT = "slimkit.heartbeat"
ATTR_WORKER = "slimkit.worker"
ATTR_RETRY_OF = "slimkit.retry_of"
ATTR_RETRIED = "slimkit.retried"
ATTR_SURPLUS = "slimkit.surplus"
ATTR_ERROR = "slimkit.error"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StorageError(SlimkitError, RuntimeError):
    """The study's storage cannot be reached or opened."""


def _redact(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def open_storage(storage: str | None, run_dir: str | os.PathLike[str] | None) -> Any:
    """The Optuna storage for a URL, or the journal file in ``run_dir`` when ``storage`` is None."""
    if storage is None or storage == "journal":
        if run_dir is None:
            raise ConfigError("a run folder is needed for the default journal storage")
        folder = Path(run_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create run folder {folder}: {error.strerror}") from error
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = str(folder / "study.journal")
        return optuna.storages.JournalStorage(
            JournalFileBackend(path, lock_obj=JournalFileOpenLock(path))
        )
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = storage.split(":", 1)[1]
        return optuna.storages.JournalStorage(
            JournalFileBackend(path, lock_obj=JournalFileOpenLock(path))
        )
    try:
        return optuna.storages.RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
    except Exception as error:  # SQLAlchemy/driver errors: one line, password hidden
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(
            f"cannot open the study storage {_redact(storage)}: {reason} "
            "(check the URL, that the server is running and reachable, and the driver: "
            "pip install 'psycopg[binary]' for postgresql://)"
        ) from error


def settings_mismatch(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Keys whose stored value differs (the space fingerprint, objectives, target, ...)."""
    keys = ("space_fingerprint", "objectives", "target", "directions")
    return [
        k
        for k in keys
        if json.dumps(stored.get(k), sort_keys=True, default=str)
        != json.dumps(wanted.get(k), sort_keys=True, default=str)
    ]


def create_or_load_study(
    name: str, storage: Any, directions: list[str], settings: Mapping[str, Any] | None
) -> optuna.Study:
    """Open study ``name``; create it (remembering ``settings``) if new, or check it matches.

    ``settings=None`` opens an existing study as it is (remote workers).
    """
    try:
        existing = optuna.study.get_all_study_names(storage)
    except Exception as error:
        raise StorageError(
            f"cannot read the study storage: {str(error).splitlines()[0]}"
        ) from error
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = study.user_attrs.get(ATTR_SETTINGS)
        if settings is not None and stored is not None:
            changed = settings_mismatch(stored, settings)
            if changed:
                finished = len(study.get_trials(deepcopy=False, states=FINISHED))
                raise ConfigError(
                    f"study {name!r} was started with a different {', '.join(changed)} "
                    f"(its {finished} finished trials are kept); use another study name "
                    "(--study) or run folder, or restore the original search space"
                )
        return study
    if settings is None:
        raise ConfigError(
            f"no study named {name!r} in this storage; known: {', '.join(existing) or '(none)'}"
        )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,  # type: ignore[arg-type]
    )
    study.set_user_attr(ATTR_SETTINGS, dict(settings))
    return study


def _started(trial: FrozenTrial) -> float:
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(trial: FrozenTrial, *, grace_s: float, now: float | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone (dead local pid, or no heartbeat for grace_s)."""
    now = time.time() if now is None else now
    worker = trial.user_attrs.get(ATTR_WORKER) or {}
    pid = worker.get("pid")
    if worker.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return True
    beat = trial.user_attrs.get(ATTR_HEARTBEAT, _started(trial))
    return now - float(beat) > grace_s


def sweep_stale(study: optuna.Study, *, grace_s: float) -> list[int]:
    """Fail stale RUNNING trials and enqueue each one's parameters once; returns their numbers."""
    swept = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, grace_s=grace_s):
            continue
        try:
            # attributes first: a finished trial can no longer be updated
            storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, "worker stopped (stale)")
            storage.set_trial_user_attr(trial._trial_id, ATTR_RETRIED, True)
            won = storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except Exception:  # someone else finished or failed it first
            continue
        if not won:
            continue
        study.enqueue_trial(
            dict(trial.params),
            user_attrs={ATTR_RETRY_OF: trial.number},
            skip_if_exists=False,
        )
        swept.append(trial.number)
        logger.warning("trial %d: its worker stopped; failed it and queued a retry", trial.number)
    return swept


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_id: int, every_s: float) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute every ``every_s`` seconds from a thread."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                study._storage.set_trial_user_attr(trial_id, ATTR_HEARTBEAT, time.time())
            except Exception as error:  # the storage went away: the trial will be swept
                logger.warning("heartbeat failed: %s", error)

    thread = threading.Thread(target=beat, daemon=True, name="slimkit-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass
class WorkerLimits:
    """Budget and liveness settings of the worker loop."""

    trials: int
    heartbeat_s: float = 10.0
    grace_s: float = 60.0
    poll_s: float = 2.0
    max_failures: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def count_states(study: optuna.Study) -> dict[str, int]:
    """Finished, running, failed (errors, not stale/surplus) and waiting trials."""
    trials = study.get_trials(deepcopy=False)
    failed = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and not t.user_attrs.get(ATTR_SURPLUS)
        and not t.user_attrs.get(ATTR_RETRIED)
    ]
    return {
        "finished": sum(t.state in FINISHED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "failed": len(failed),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
    }


RunTrial = Callable[[optuna.Trial], "list[float] | None"]


def run_worker(
    study: optuna.Study,
    run_trial: RunTrial,
    limits: WorkerLimits,
    *,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
) -> int:
    """Run trials until ``limits.trials`` are finished; returns how many this worker finished.

    ``run_trial(trial)`` returns the objective values, or raises ``optuna.TrialPruned`` when the
    trial was stopped early; any other exception fails that trial (recorded, not retried).
    """
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    max_failures = limits.max_failures if limits.max_failures is not None else limits.trials
    mine = 0
    while True:
        sweep_stale(study, grace_s=limits.grace_s)
        counts = count_states(study)
        if on_event:
            on_event("poll", counts)
        if counts["finished"] >= limits.trials:
            return mine
        if counts["failed"] > max_failures:
            raise SlimkitError(
                f"the search stopped: {counts['failed']} trials failed (more than "
                f"{max_failures}); see their 'slimkit.error' attribute (slimkit search show)"
            )
        if counts["finished"] + counts["running"] >= limits.trials:
            time.sleep(limits.poll_s)  # others are running the last trials; retry if they die
            continue
        trial = study.ask()
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_WORKER, worker)
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_HEARTBEAT, time.time())
        before = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number and (t.state in FINISHED or t.state == TrialState.RUNNING)
        ]
        if len(before) >= limits.trials:
            study._storage.set_trial_user_attr(trial._trial_id, ATTR_SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        with heartbeat(study, trial._trial_id, limits.heartbeat_s):
            try:
                values = run_trial(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
                mine += 1
                continue
            except KeyboardInterrupt:
                study._storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, "interrupted")
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as error:  # one trial's failure must not end the search
                message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
                logger.warning("trial %d failed: %s", trial.number, message)
                study._storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, message)
                study.tell(trial, state=TrialState.FAIL)
                continue
        if values is None or any(not math.isfinite(v) for v in values):
            study._storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, "no finite values")
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.tell(trial, values)
        mine += 1

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

Failures of the environment are not the candidate's: they are retried, never counted
(interruptions.py tells them apart, even when a library wrapped or lost the KeyboardInterrupt).

- *Interrupted* (Ctrl-C, SIGTERM): the trial is failed with the ``slimkit.retried`` marker and its
  parameters are enqueued, like a stale trial, and the interruption goes on up (exit 130).
- *The run folder cannot be written* (disk full, read-only, permissions): the same, then the
  worker stops with one line (:class:`RunFolderError`); a re-run once space is freed retries it.
  If even the marker cannot be written, the trial stays RUNNING and the next sweep retries it.
- *The database is down*: :mod:`slimkit.search.reconnect` waits the outage out (``wait_s``);
  meanwhile other workers do not judge heartbeats (an outage stops every heartbeat), only dead
  local processes, until ``grace_s`` after the last connection error they saw.

The journal file is :class:`slimkit.search.journal.SafeJournalBackend`: repaired on open (a torn
last record is dropped, with a warning naming it), and no failed write leaves a torn record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from slimkit.errors import ConfigError, SlimkitError
from slimkit.search.interruptions import (
    ENVIRONMENT_ERRNOS,
    INTERRUPTED,
    caused_by_interrupt,
    environment_problem,
    noting_interrupts,
    signals_held,
)
from slimkit.search.journal import SafeJournalBackend, needs_repair
from slimkit.search.reconnect import (
    DEFAULT_WAIT_S,
    ReconnectingStorage,
    StorageUnreachableError,
    is_connection_error,
)

logger = logging.getLogger(__name__)

ATTR_SETTINGS = "slimkit.settings"
ATTR_HEARTBEAT = "slimkit.heartbeat"
ATTR_WORKER = "slimkit.worker"
ATTR_RETRY_OF = "slimkit.retry_of"
ATTR_RETRIED = "slimkit.retried"
ATTR_SURPLUS = "slimkit.surplus"
ATTR_ERROR = "slimkit.error"
ATTR_REUSE_OF = "slimkit.reuse_of"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StorageError(SlimkitError, RuntimeError):
    """The study's storage cannot be reached or opened."""


class RunFolderError(SlimkitError, OSError):
    """The run folder cannot be written (disk full, read-only, permissions)."""


def _redact(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://***@host/db`` (to the URL's last ``@``)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def _password(url: str) -> str:
    credentials = url.split("://", 1)[1].rpartition("@")[0] if "://" in url else ""
    return credentials.split(":", 1)[1] if ":" in credentials else ""


def redact_text(text: str, url: str) -> str:
    """``text`` with the URL's credentials (and its password anywhere) replaced by ``***``."""
    text = text.replace(url, _redact(url))
    password = _password(url)
    return text.replace(password, "***") if password else text


def _reason(error: BaseException, url: str) -> str:
    """A driver's error as one line with no part of the password in it."""
    if any(c in _password(url) for c in "@/#?"):  # the URL parses wrong: pieces of it leak
        return (
            "the password holds '@', '/', '#' or '?', which a URL must percent-encode "
            "(e.g. '@' as %40)"
        )
    text = str(error).strip()
    return redact_text(text.splitlines()[0] if text else type(error).__name__, url)


def open_storage(
    storage: str | None,
    run_dir: str | os.PathLike[str] | None,
    *,
    wait_s: float = DEFAULT_WAIT_S,
) -> Any:
    """The Optuna storage for a URL, or the journal file in ``run_dir`` when ``storage`` is None.

    A database storage waits out an outage of up to ``wait_s`` seconds on every call.
    """
    if storage is not None:
        from slimkit.search.validate import check_storage_url

        check_storage_url(storage, "storage")
    if storage is None or storage == "journal":
        if run_dir is None:
            raise ConfigError("a run folder is needed for the default journal storage")
        folder = Path(run_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create run folder {folder}: {error.strerror}") from error
        return open_journal(str(folder / "study.journal"))
    if storage.startswith("journal:"):
        return open_journal(storage.split(":", 1)[1])
    from optuna.storages import _CachedStorage

    rdb = _open_database(storage, wait_s)
    # the abstract methods are filled in by reconnect.py's delegation loop
    return ReconnectingStorage(  # type: ignore[abstract]
        _CachedStorage(rdb),
        name=_redact(storage),
        wait_s=wait_s,
        redact=lambda text: redact_text(text, storage),
    )


START_WAIT_S = 30.0  # the most a first connection waits for a server that refuses it
# a driver's words for a URL that will never work: fail at once instead of waiting
PERMANENT = (
    "could not translate host name",
    "name or service not known",
    "nodename nor servname",
    "authentication failed",
    "no password supplied",
    "does not exist",
)


def _open_database(storage: str, wait_s: float) -> Any:
    """Optuna's RDB storage for ``storage``; a server that refuses connections (restarting, not
    up yet) is waited for up to ``wait_s`` seconds but at most :data:`START_WAIT_S` (a restart
    takes seconds; a mistyped port should not keep a user waiting for minutes)."""
    wait_s = min(wait_s, START_WAIT_S)
    deadline, delay = time.monotonic() + wait_s, 0.25
    while True:
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
        except Exception as error:  # SQLAlchemy/driver errors: one line, password hidden
            reason = _reason(error, storage)
            left = deadline - time.monotonic()
            if is_connection_error(error) and left > 0 and not _permanent(error):
                if delay == 0.25:
                    logger.warning(
                        "cannot reach the study storage %s yet (%s); retrying for up to %.0f s "
                        "(--storage-wait)",
                        _redact(storage),
                        reason,
                        wait_s,
                    )
                time.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)
                continue
            raise StorageError(
                f"cannot open the study storage {_redact(storage)}: {reason} "
                "(check the URL, that the server is running and reachable, and the driver: "
                "pip install 'psycopg[binary]' for postgresql://)"
            ) from None


def _permanent(error: BaseException) -> bool:
    text = " ".join(str(e) for e in (error, error.__cause__, error.__context__) if e).lower()
    return any(marker in text for marker in PERMANENT)


def open_journal(path: str) -> optuna.storages.JournalStorage:
    """Optuna's journal storage on ``path``, repaired first if a write left it torn."""
    try:
        backend = SafeJournalBackend(path)
        if needs_repair(path):
            _repair(backend)
        try:
            return optuna.storages.JournalStorage(backend)
        except ValueError:  # a damaged line (JSONDecodeError): written by an older slimkit
            if not _repair(backend):
                raise
            return optuna.storages.JournalStorage(SafeJournalBackend(path))
    except ValueError as error:
        raise StorageError(
            f"the journal {path} is damaged and could not be repaired ({error}); make its "
            "folder writable and run again, or start a new run folder"
        ) from None
    except OSError as error:
        raise RunFolderError(
            f"cannot open the journal {path}: {error.strerror or error}; check the run folder "
            "(free space, permissions) or pass another one"
        ) from None


def _repair(backend: SafeJournalBackend) -> bool:
    """Repair under the lock; False (and a warning) when the folder cannot be written."""
    try:
        backend.repair()
    except OSError as error:
        logger.warning(
            "%s ends in a torn record that cannot be dropped now (%s); reading around it",
            backend._file_path,
            error.strerror or error,
        )
        return False
    return True


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
    name: str,
    storage: Any,
    directions: list[str],
    settings: Mapping[str, Any] | None,
    metric_names: list[str] | None = None,
) -> optuna.Study:
    """Open study ``name``; create it (remembering ``settings``) if new, or check it matches.

    ``settings=None`` opens an existing study as it is (remote workers).
    """
    try:
        study = _create_or_load(name, storage, directions, settings)
        if metric_names and study.metric_names is None:
            _name_metrics(study, metric_names)
        return study
    except OSError as error:  # the journal's folder: full, read-only, no permission
        if isinstance(error, SlimkitError) or error.errno not in ENVIRONMENT_ERRNOS:
            raise
        raise RunFolderError(
            f"cannot write the study's journal ({error.strerror}); free space or make the run "
            "folder writable, then run again (finished trials are kept)"
        ) from error


def _name_metrics(study: optuna.Study, names: list[str]) -> None:
    """Name the objectives (optuna-dashboard shows them instead of 0, 1, ...)."""
    if len(names) != len(study.directions):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def _create_or_load(
    name: str, storage: Any, directions: list[str], settings: Mapping[str, Any] | None
) -> optuna.Study:
    try:
        existing = optuna.study.get_all_study_names(storage)
    except StorageUnreachableError:
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StorageError(f"cannot read the study storage: {first}") from error
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = study.user_attrs.get(ATTR_SETTINGS)
        if settings is not None and stored is None:  # killed right after creating it
            study.set_user_attr(ATTR_SETTINGS, dict(settings))
        elif settings is not None and stored is not None:
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


def _quick(storage: Any) -> contextlib.AbstractContextManager[Any]:
    """While inside: a database storage fails at once instead of waiting out an outage."""
    if hasattr(storage, "without_waiting"):
        return storage.without_waiting()
    return contextlib.nullcontext()


def retry_later(study: optuna.Study, trial_id: int, number: int, reason: str) -> bool:
    """Fail a RUNNING trial as not its own fault (not counted) and enqueue its parameters once.

    Returns False when another worker finished or failed it first.
    """
    storage = study._storage
    try:
        # attributes first: a finished trial can no longer be updated
        storage.set_trial_user_attr(trial_id, ATTR_ERROR, reason)
        storage.set_trial_user_attr(trial_id, ATTR_RETRIED, True)
        won = storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:  # someone else finished or failed it first
        return False
    if not won:
        return False
    params = storage.get_trial(trial_id).params
    study.enqueue_trial(dict(params), user_attrs={ATTR_RETRY_OF: number}, skip_if_exists=False)
    return True


def sweep_stale(study: optuna.Study, *, grace_s: float) -> list[int]:
    """Fail stale RUNNING trials and enqueue each one's parameters once; returns their numbers.

    Right after a database outage (within ``grace_s`` of the last connection error this process
    saw) heartbeats prove nothing, so only trials of dead local processes are swept then.
    """
    swept = []
    outage = time.time() - getattr(study._storage, "last_outage", -math.inf) < grace_s
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, grace_s=math.inf if outage else grace_s):
            continue
        if retry_later(study, trial._trial_id, trial.number, "worker stopped (stale)"):
            swept.append(trial.number)
            logger.warning(
                "trial %d: its worker stopped; failed it and queued a retry", trial.number
            )
    return swept


def find_twin(
    study: optuna.Study,
    number: int,
    key: str,
    key_of: Callable[[FrozenTrial], str | None],
    *,
    grace_s: float,
    poll_s: float,
) -> FrozenTrial | None:
    """The COMPLETE trial that already evaluated ``key``, else None (evaluate it).

    Two workers may draw the same configuration at once; the lower-numbered trial evaluates it and
    the other waits for it: while a live RUNNING trial numbered below ``number`` has the same key,
    or has not published its key yet, this waits (``poll_s``) and looks again. A twin that failed
    or was stopped early leaves the evaluation to this trial.
    """
    while True:
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.number != number]
        for trial in done:
            if key_of(trial) == key:
                return trial
        pending = [
            t
            for t in trials
            if t.number < number
            and t.state == TrialState.RUNNING
            and key_of(t) in (None, key)
            and not is_stale(t, grace_s=grace_s)
        ]
        if not pending:
            return None
        time.sleep(poll_s)


def _beat(storage: Any, trial_id: int) -> None:
    try:
        if hasattr(storage, "try_once"):
            storage.try_once("set_trial_user_attr", trial_id, ATTR_HEARTBEAT, time.time())
        else:
            storage.set_trial_user_attr(trial_id, ATTR_HEARTBEAT, time.time())
    except UpdateFinishedTrialError:
        pass  # the trial ended while this beat was on its way
    except Exception as error:  # the storage went away: the trial will be swept
        logger.warning("heartbeat failed: %s", error)


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_id: int, every_s: float) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute every ``every_s`` seconds from a thread."""
    stop = threading.Event()

    def beat() -> None:
        # signals go to the main thread (which raises KeyboardInterrupt), not to this one
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while not stop.wait(every_s):
            _beat(study._storage, trial_id)

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


def _ask(study: optuna.Study, limits: WorkerLimits, worker: dict[str, Any]) -> optuna.Trial | None:
    """A new trial, or None when trials numbered below it already fill the budget (surplus)."""
    trial = study.ask()
    try:
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
            return None
    except KeyboardInterrupt:
        _give_back(study, trial, "interrupted")
        raise
    return trial


def _give_back(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Mark an interrupted trial for a retry, quickly and without being interrupted again."""
    with signals_held(), _quick(study._storage):
        try:
            if retry_later(study, trial._trial_id, trial.number, reason):
                logger.info("trial %d: %s; it is retried on the next run", trial.number, reason)
        except (OSError, SlimkitError) as error:  # stays RUNNING: the next sweep retries it
            logger.info("trial %d: could not mark it for a retry (%s)", trial.number, error)


def _fail(study: optuna.Study, trial: optuna.Trial, message: str) -> None:
    """Record a failure of the candidate itself (counted, not retried)."""
    logger.warning("trial %d failed: %s", trial.number, message)
    study._storage.set_trial_user_attr(trial._trial_id, ATTR_ERROR, message)
    study.tell(trial, state=TrialState.FAIL)


def _tell(study: optuna.Study, trial: optuna.Trial, **outcome: Any) -> bool:
    """Store the outcome; False when a sweeper failed the trial meanwhile (then it is retried)."""
    try:
        study.tell(trial, **outcome)
    except UpdateFinishedTrialError:
        logger.warning(
            "trial %d was given up by another worker while the storage was unreachable; "
            "its retry counts instead",
            trial.number,
        )
        return False
    return True


def _run_one(
    study: optuna.Study,
    trial: optuna.Trial,
    run_trial: RunTrial,
    limits: WorkerLimits,
    workdir: str | os.PathLike[str] | None,
) -> bool:
    """Run one trial and store its outcome; True when it finished (COMPLETE or PRUNED)."""
    with heartbeat(study, trial._trial_id, limits.heartbeat_s):
        try:
            values = run_trial(trial)
        except optuna.TrialPruned:
            return _tell(study, trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            _give_back(study, trial, "interrupted")
            raise
        except StorageUnreachableError:
            raise  # the trial stays RUNNING; the sweep of the next run retries it
        except Exception as error:  # one trial's failure must not end the search
            if caused_by_interrupt(error):  # a library wrapped the KeyboardInterrupt
                _give_back(study, trial, "interrupted")
                raise KeyboardInterrupt from error
            problem = environment_problem(error, workdir)
            if problem is None:
                _fail(study, trial, f"{type(error).__name__}: {error}".splitlines()[0][:500])
                return False
            _give_back(study, trial, f"environment: {problem}")
            raise RunFolderError(
                f"trial {trial.number} stopped: the run folder {workdir} cannot be written "
                f"({problem}); free space or make it writable, then run again: finished trials "
                "are kept and this one is retried"
            ) from error
    if values is None or any(not math.isfinite(v) for v in values):
        _fail(study, trial, "no finite values")
        return False
    return _tell(study, trial, values=values)


def run_worker(
    study: optuna.Study,
    run_trial: RunTrial,
    limits: WorkerLimits,
    *,
    on_event: Callable[[str, Mapping[str, int]], None] | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> int:
    """Run trials until ``limits.trials`` are finished; returns how many this worker finished.

    ``run_trial(trial)`` returns the objective values, or raises ``optuna.TrialPruned`` when the
    trial was stopped early; any other exception fails that trial (recorded, not retried) unless
    it came from the machine (see :func:`environment_problem`; ``workdir`` is the folder trials
    write to). ``KeyboardInterrupt`` marks the running trial for a retry and goes on up.
    """
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    max_failures = limits.max_failures if limits.max_failures is not None else limits.trials
    mine = 0
    with noting_interrupts():
        while True:
            if INTERRUPTED.is_set():  # a library swallowed the KeyboardInterrupt
                raise KeyboardInterrupt
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
                time.sleep(limits.poll_s)  # others run the last trials; retry if they die
                continue
            trial = _ask(study, limits, worker)
            if trial is not None and _run_one(study, trial, run_trial, limits, workdir):
                mine += 1

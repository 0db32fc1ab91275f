"""A study storage that waits out a database outage instead of ending the worker.

When PostgreSQL restarts, every open connection breaks and new ones are refused for a while.
Optuna's ``RDBStorage`` then raises ``StorageInternalError`` ("... e.g. exceeding max length",
misleading) or SQLAlchemy's ``OperationalError``. :class:`ReconnectingStorage` wraps a storage and
retries any call that failed because the connection was lost, with exponential backoff, for up to
``wait_s`` seconds; after that it raises :class:`StorageUnreachableError` (one line, password
hidden). A training trial meanwhile keeps training, so nothing is lost.

Retrying a write whose acknowledgement was lost could apply it twice. For the calls slimkit makes
this is harmless: attributes, parameters and intermediate values are idempotent; a trial state
already set by the lost attempt is recognised (the trial holds exactly the requested state and
values); a trial created twice leaves an orphan RUNNING trial with no worker, which the sweep in
study.py fails (not counted) after its grace period.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from slimkit.errors import SlimkitError

logger = logging.getLogger(__name__)

DEFAULT_WAIT_S = 300.0
# connection errors by class name, so that neither SQLAlchemy nor a driver must be imported here
CONNECTION_ERRORS = ("OperationalError", "InterfaceError", "TimeoutError", "PendingRollbackError")
DATABASE_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "pymysql", "MySQLdb")


class StorageUnreachableError(SlimkitError, ConnectionError):
    """The study's database could not be reached for longer than the worker waits."""


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) means the database connection broke."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        if isinstance(current, ConnectionError) or getattr(
            current, "connection_invalidated", False
        ):
            return True
        if kind.__module__.startswith(DATABASE_MODULES) and kind.__name__ in CONNECTION_ERRORS:
            return True
        current = current.__cause__ or current.__context__
    return False


def _root_reason(error: BaseException) -> str:
    """The first line of the innermost error that says something (the driver's own words)."""
    reason = type(error).__name__
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text and text != "()":
            reason = text.splitlines()[0]
        current = current.__cause__ or current.__context__
    return reason


class ReconnectingStorage(BaseStorage):
    """Delegates every storage call to ``inner``, retrying those that failed on a lost connection.

    Args:
        inner: the storage to wrap (Optuna's cached RDB storage).
        name: how to name the storage in messages (its URL with the password hidden).
        wait_s: the longest outage to wait out.
        redact: hides secrets in a driver's message.

    Example:
        >>> from optuna.storages import InMemoryStorage
        >>> storage = ReconnectingStorage(InMemoryStorage(), name="memory", wait_s=10)
    """

    def __init__(
        self,
        inner: BaseStorage,
        *,
        name: str,
        wait_s: float = DEFAULT_WAIT_S,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.inner = inner
        self.name = name
        self.wait_s = wait_s
        self.redact = redact
        self.last_outage = -math.inf  # time.time() of the last connection error seen

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``inner.method(*args, **kwargs)``, retried while the connection is down."""
        deadline: float | None = None
        delay = 0.25
        while True:
            try:
                return getattr(self.inner, method)(*args, **kwargs)
            except UpdateFinishedTrialError:
                if deadline is not None and self._state_already_set(method, args, kwargs):
                    return True  # the attempt whose answer was lost had done it
                raise
            except Exception as error:
                if not is_connection_error(error):
                    raise
                self.last_outage = time.time()
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.wait_s
                    logger.warning(
                        "lost the study storage %s (%s); retrying for up to %.0f s",
                        self.name,
                        self.redact(_root_reason(error)),
                        self.wait_s,
                    )
                if now >= deadline:
                    raise StorageUnreachableError(
                        f"the study storage {self.name} was unreachable for {self.wait_s:.0f} s "
                        f"({self.redact(_root_reason(error))}); start the database (or fix the "
                        "network) and run this again: finished trials are kept, the interrupted "
                        "one is retried"
                    ) from None
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(delay * 2, 5.0)

    @contextlib.contextmanager
    def without_waiting(self) -> Iterator[None]:
        """While inside, a lost connection fails at once (marks written on the way out)."""
        wait_s, self.wait_s = self.wait_s, 0.0
        try:
            yield
        finally:
            self.wait_s = wait_s

    def try_once(self, method: str, *args: Any, **kwargs: Any) -> bool:
        """One attempt, no waiting (heartbeats); False when the connection is down."""
        try:
            getattr(self.inner, method)(*args, **kwargs)
        except Exception as error:
            if not is_connection_error(error):
                raise
            self.last_outage = time.time()
            return False
        return True

    def _state_already_set(self, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        if method != "set_trial_state_values":
            return False
        trial_id = args[0] if args else kwargs["trial_id"]
        state = args[1] if len(args) > 1 else kwargs["state"]
        values = args[2] if len(args) > 2 else kwargs.get("values")
        trial = self.inner.get_trial(trial_id)
        if trial.state != state or state == TrialState.RUNNING:
            return False
        return values is None or list(trial.values or []) == list(values)


def _delegate(method: str) -> Callable[..., Any]:
    def forward(self: ReconnectingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(method, *args, **kwargs)

    forward.__name__ = method
    forward.__doc__ = f"``{method}`` of the wrapped storage, retried on a lost connection."
    return forward


# every public method of Optuna's storage interface goes through ReconnectingStorage.call
for _method in sorted(
    name
    for name, value in vars(BaseStorage).items()
    if callable(value) and not name.startswith("_")
):
    setattr(ReconnectingStorage, _method, _delegate(_method))
abc.update_abstractmethods(ReconnectingStorage)  # type: ignore[type-abstract]

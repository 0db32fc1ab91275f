"""Checks of the search settings a user writes, shared by recipes and search files.

Each check takes the value and where it is (a :class:`~slimkit.yamlfile.Where`, or a name) and
returns the value, or raises one :class:`~slimkit.errors.ConfigError` line that says what was
wrong, the value received, and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from slimkit.errors import ConfigError, SlimkitError, check_keys
from slimkit.search.evaluate import Target
from slimkit.yamlfile import Where, as_where

MAX_TRIALS = 100_000
MAX_WORKERS = 256
MAX_SEED = 2**32 - 1
TARGET_KEYS = ("runtime", "batch_size", "threads", "latency_budget_s")
# what a config's own checks raise for a bad value (besides slimkit's errors)
VALUE_ERRORS = (SlimkitError, TypeError, ValueError, KeyError, AttributeError, OverflowError)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``.

    Everything from the first ``:`` after the user name to the *last* ``@`` of the URL is hidden:
    passwords hold raw ``@``, ``/``, ``#`` and ``?`` often enough, and hiding a little too much
    (an ``@`` in the database name) is the safe way to be wrong.

    Example:
        >>> redact_url("postgresql://slim:p@ss@db:5432/studies")
        'postgresql://slim:***@db:5432/studies'
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def check_storage_url(url: Any, where: Where | str) -> str:
    """``journal``, ``journal:PATH`` or a database URL (``postgresql://...``), checked offline."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: expected 'journal', 'journal:PATH' or a database URL")
    if url == "journal" or url.startswith("journal:"):
        if url.startswith("journal:") and not url.split(":", 1)[1].strip():
            raise ConfigError(f"{where}: 'journal:' needs a file path after the colon")
        return url
    if not _URL.match(url) or any(ord(c) < 32 for c in url):
        raise ConfigError(
            f"{where}: {redact_url(url)!r} is not a storage URL; give 'journal', "
            "'journal:PATH' or e.g. 'postgresql://user@host:5432/db'"
        )
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except Exception as error:  # sqlalchemy.exc.ArgumentError and its parse errors
        raise ConfigError(
            f"{where}: {redact_url(url)!r} is not a valid database URL "
            f"({type(error).__name__}); e.g. 'postgresql://user@host:5432/db'"
        ) from None
    return url


def int_in(value: Any, where: Where | str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: expected an int in [{low}, {high:,}]; got {value!r}")
    return value


def one_of(value: Any, where: Where | str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of the ``allowed`` names."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}; got {value!r}")
    return value


def checked(make: Callable[[], Any], where: Where | str) -> Any:
    """``make()``, with a config's own error for a bad value prefixed by where the value is."""
    try:
        return make()
    except VALUE_ERRORS as error:
        lines = str(error).strip().splitlines()
        raise ConfigError(f"{where}: {lines[0] if lines else type(error).__name__}") from None


def parse_target(value: Any, where: Where | str) -> Target:
    """A ``target:`` mapping (runtime, batch_size, threads, latency_budget_s) → :class:`Target`."""
    where = as_where(where)
    if value is None:
        return Target()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(TARGET_KEYS)}); got {value!r}")
    check_keys(str(where), value, TARGET_KEYS)
    target: Target = checked(lambda: Target(**dict(value)), where)
    budget = target.latency_budget_s
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 3600:
        raise ConfigError(
            f"{where / 'latency_budget_s'}: expected seconds in (0, 3600]; got {budget!r}"
        )
    return target

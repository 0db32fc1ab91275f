"""The ``search:`` part of a recipe, checked whole before any work starts.

Budget, sampler, early stopping, workers, storage URL, seed and space are checked here, and the
:class:`~slimkit.search.SearchSettings` the run will use is built once, so that everything a
search could refuse (a pruner that needs one objective, a space that distils without a teacher)
is refused at the start, not after the baseline trained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slimkit.errors import ConfigError, SlimkitError
from slimkit.search.evaluate import Target
from slimkit.search.run import PRUNERS, SAMPLERS, SearchSettings, make_pruner
from slimkit.search.space import default_space
from slimkit.yamlfile import Where

SEARCH_KEYS = ("trials", "sampler", "pruner", "space", "workers", "storage", "seed")
MAX_TRIALS = 100_000
MAX_WORKERS = 256
MAX_SEED = 2**32 - 1
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``.

    Everything between ``://`` and the *last* ``@`` of the authority is credentials (a raw
    ``@`` in a password is common), and the password part of it is replaced.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    credentials, _, host = authority.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def check_storage_url(url: Any, where: Where | str) -> str:
    """``journal``, ``journal:PATH`` or a database URL (``postgresql://...``), checked offline."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: expected 'journal', 'journal:PATH' or a database URL")
    if url == "journal" or url.startswith("journal:"):
        if url.startswith("journal:") and not url.split(":", 1)[1].strip():
            raise ConfigError(f"{where}: 'journal:' needs a file path after the colon")
        return url
    if not _URL.match(url):
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


def _int_in(value: Any, where: Where, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: expected an int in [{low}, {high:,}]; got {value!r}")
    return value


def _choice(value: Any, where: Where, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}; got {value!r}")
    return value


def parse_search(
    value: Any,
    where: Where,
    *,
    objectives: Any,
    constraints: Any,
    target: Target,
    data: dict[str, Any],
    seed: int,
    has_teacher: bool,
) -> dict[str, Any]:
    """The recipe's ``search:`` mapping with every default filled in, checked whole."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(SEARCH_KEYS)})")
    for key in value:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"{where / str(key)}: unknown key; allowed: {', '.join(SEARCH_KEYS)}")
    search: dict[str, Any] = {
        "trials": _int_in(value.get("trials", 10), where / "trials", 1, MAX_TRIALS),
        "sampler": _choice(value.get("sampler", "nsga2"), where / "sampler", SAMPLERS),
        "pruner": _choice(value.get("pruner", "auto"), where / "pruner", PRUNERS),
        "workers": _int_in(value.get("workers", 1), where / "workers", 1, MAX_WORKERS),
        "storage": None,
        "seed": _int_in(value.get("seed", seed), where / "seed", 0, MAX_SEED),
        "space": value.get("space"),
    }
    if value.get("storage") is not None:
        search["storage"] = check_storage_url(value["storage"], where / "storage")
    from slimkit.search.space import SearchSpace

    SearchSpace.from_dict(search["space"], where=where / "space")
    try:
        settings = SearchSettings(
            space=search["space"] or default_space(distill=has_teacher),
            objectives=objectives or ["accuracy", "latency"],
            constraints=list(constraints or []),
            target=target.to_dict(),
            trials=search["trials"],
            sampler=search["sampler"],
            pruner=search["pruner"],
            seed=search["seed"],
            data=data,
            teacher="baseline" if has_teacher else None,
        )
        make_pruner(settings)
    except (SlimkitError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {str(error).splitlines()[0]}") from None
    return search

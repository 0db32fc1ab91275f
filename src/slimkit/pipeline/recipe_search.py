"""The ``search:`` part of a recipe, checked whole before any work starts.

Budget, sampler, early stopping, workers, storage URL, seed and space are checked here, and the
:class:`~slimkit.search.SearchSettings` the run will use is built once, so that everything a
search could refuse (a pruner that needs one objective, a space that distils without a teacher)
is refused at the start, not after the baseline trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slimkit.errors import ConfigError, SlimkitError
from slimkit.search.evaluate import Target
from slimkit.search.run import PRUNERS, SAMPLERS, SearchSettings, make_pruner
from slimkit.search.space import default_space
from slimkit.search.validate import (
    MAX_SEED,
    MAX_TRIALS,
    MAX_WORKERS,
    check_storage_url,
    int_in,
    one_of,
)
from slimkit.yamlfile import Where

SEARCH_KEYS = ("trials", "sampler", "pruner", "space", "workers", "storage", "seed")


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
        "trials": int_in(value.get("trials", 10), where / "trials", 1, MAX_TRIALS),
        "sampler": one_of(value.get("sampler", "nsga2"), where / "sampler", SAMPLERS),
        "pruner": one_of(value.get("pruner", "auto"), where / "pruner", PRUNERS),
        "workers": int_in(value.get("workers", 1), where / "workers", 1, MAX_WORKERS),
        "storage": None,
        "seed": int_in(value.get("seed", seed), where / "seed", 0, MAX_SEED),
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

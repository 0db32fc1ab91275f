"""The ``slimkit`` command line. Each command lives in its own module and registers on ``app``."""

from slimkit.cli import (  # noqa: F401  (each module registers its commands)
    bench,
    compress,
    export,
    measure,
    models,
    optimize,
    prune,
    report,
    search,
    train,
)
from slimkit.cli.app import app, main

__all__ = ["app", "main"]

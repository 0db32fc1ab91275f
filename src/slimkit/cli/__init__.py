"""The ``slimkit`` command line. Each command lives in its own module and registers on ``app``."""

import sys

from slimkit.threads import prefer_passive_waiting

prefer_passive_waiting()  # OpenMP reads it when torch loads: before any command module can

try:
    from slimkit.cli import (  # noqa: F401  (each module registers its commands)
        bench,
        compress,
        distill,
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
except KeyboardInterrupt:  # Ctrl-C while the libraries load: no traceback, the usual code
    sys.stderr.write("interrupted\n")
    sys.exit(130)

__all__ = ["app", "main"]

"""The ``slimkit`` command line. Each command lives in its own module and registers on ``app``."""

from slimkit.cli import demo, export, measure, models, train  # noqa: F401  (register commands)
from slimkit.cli.app import app, main

__all__ = ["app", "main"]

"""``python -m slimkit``: the same as the ``slimkit`` command."""

from slimkit.cli import main

main()

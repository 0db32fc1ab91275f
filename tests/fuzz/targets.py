"""The registry of fuzz targets: ``TARGETS`` maps each name to its :class:`fuzzlib.Target`.

It is filled from every ``targets_*.py`` file of this folder (each defines a ``TARGETS`` list), so
adding a parser is adding a file (or a line to one); see ``README.md`` here. The tests
(``test_fuzz.py``), the child process of the harness (``harness.py``) and the soak script
(``benchmarks/fuzz.py``, which imports this file by path) all read this one registry.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # fuzzlib, harness and the target files import each other

from fuzzlib import Target, load_targets  # noqa: E402

TARGETS: dict[str, Target] = load_targets(HERE)

__all__ = ["TARGETS", "Target"]

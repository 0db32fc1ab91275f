"""Which operators a runtime hands to its accelerated backend (XNNPACK), and which it keeps.

LiteRT and ExecuTorch both run a model as a mix of *delegated* partitions (here: XNNPACK
subgraphs) and operators left to the runtime's own portable kernels. A model that is meant to be
fast on a CPU should have nothing left outside; :class:`DelegationReport` says so in one record.

Example:
    >>> report = DelegationReport("XNNPACK", {"CONV_2D": 2}, {}, partitions=1)
    >>> report.all_delegated, report.summary()
    (True, 'XNNPACK: 2 ops in 1 partition(s), nothing outside')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def count_names(names: Iterable[str]) -> dict[str, int]:
    """``["a", "b", "a"]`` → ``{"a": 2, "b": 1}`` in first-seen order."""
    return dict(Counter(names))


@dataclass(frozen=True)
class DelegationReport:
    """Operators inside and outside the delegate of one model file.

    Args:
        backend: the delegate's name (``"XNNPACK"``).
        delegated: operator name → count of operators the delegate runs; None where the file
            does not say (the runtime only knows that a partition exists).
        outside: operator name → count of operators the runtime runs with its own kernels.
        partitions: number of delegated subgraphs (each one delegate call per run).
        notes: anything worth knowing about how the report was obtained.
    """

    backend: str
    delegated: dict[str, int] | None
    outside: dict[str, int]
    partitions: int
    notes: tuple[str, ...] = field(default=())

    @property
    def all_delegated(self) -> bool:
        """True when no operator runs outside the delegate (and there is at least one partition)."""
        return not self.outside and self.partitions > 0

    @property
    def delegated_count(self) -> int | None:
        """Total operators inside the delegate, if known."""
        return None if self.delegated is None else sum(self.delegated.values())

    def summary(self) -> str:
        """One line: ``XNNPACK: 10 ops in 1 partition(s), outside: aten::view_copy x1``."""
        count = self.delegated_count
        inside = f"{count} ops" if count is not None else "ops"
        if self.outside:
            where = "outside: " + ", ".join(f"{name} x{n}" for name, n in self.outside.items())
        else:
            where = "nothing outside"
        return f"{self.backend}: {inside} in {self.partitions} partition(s), {where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "backend": self.backend,
            "delegated": self.delegated,
            "outside": self.outside,
            "partitions": self.partitions,
            "all_delegated": self.all_delegated,
            "notes": list(self.notes),
        }

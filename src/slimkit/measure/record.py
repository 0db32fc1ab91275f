"""The measurement record: one candidate model in one runtime, every metric, and where it ran."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimkit.io import write_json_atomic
from slimkit.measure.latency import LatencyStats
from slimkit.measure.parity import ParityResult

RECORD_VERSION = 1


@dataclass(frozen=True)
class MeasureRecord:
    """Accuracy, latency, size, cost and parity of one model file in one runtime.

    ``latency`` holds one entry per (batch size, threads) setting; ``environment`` says which CPU
    and package versions produced the numbers.
    """

    name: str
    runtime: str
    runtime_version: str
    artifact: str
    file_bytes: int | None
    accuracy: float
    test_samples: int
    latency: tuple[LatencyStats, ...]
    environment: dict[str, Any]
    params: int | None = None
    macs: int | None = None
    parity: ParityResult | None = None
    model_spec: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def latency_for(self, batch_size: int, threads: int) -> LatencyStats | None:
        """The latency entry of one setting, or None if it was not measured."""
        return next(
            (s for s in self.latency if s.batch_size == batch_size and s.threads == threads), None
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the format of ``*.json`` records on disk)."""
        return {
            "record_version": RECORD_VERSION,
            "name": self.name,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "artifact": self.artifact,
            "file_bytes": self.file_bytes,
            "accuracy": self.accuracy,
            "test_samples": self.test_samples,
            "params": self.params,
            "macs": self.macs,
            "parity": self.parity.to_dict() if self.parity else None,
            "latency": [s.to_dict() for s in self.latency],
            "model_spec": self.model_spec,
            "data": self.data,
            "environment": self.environment,
            "created_at": self.created_at,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureRecord:
        """Inverse of :meth:`to_dict`."""
        body = {k: v for k, v in data.items() if k != "record_version"}
        body["latency"] = tuple(LatencyStats(**s) for s in body.get("latency", []))
        body["parity"] = ParityResult(**body["parity"]) if body.get("parity") else None
        return cls(**body)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record as JSON, atomically."""
        return write_json_atomic(path, self.to_dict())

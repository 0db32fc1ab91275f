"""The report's data: candidates (one measured model each) and the report that holds them.

``slimkit optimize`` fills a :class:`Report`; ``slimkit report RUN`` renders it (JSON, Markdown,
HTML, plots). The derived columns (drop vs baseline, speed-up, compression, the fronts) are
computed here, once, so that every rendering shows the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from slimkit.pareto import pareto_mask

REPORT_VERSION = 1


@dataclass
class Candidate:
    """One model measured in the recipe's runtime.

    Attributes:
        name: unique label, e.g. ``"baseline"``, ``"int8 PTQ (mse)"``, ``"trial 12"``.
        source: ``"baseline"``, ``"technique"`` (a fixed recipe entry) or ``"search"`` (a trial).
        techniques: the technique configs applied, as ``config_to_dict`` dicts, in order.
        model: the model spec (``{"name": ..., "kwargs": ...}``) the candidate was built from.
        training: the training settings that differ from the baseline's (search trials).
        accuracy: test accuracy measured in the runtime, a fraction in [0, 1].
        latency_p50_ms, latency_p90_ms: ms per batch at the recipe's batch size and threads.
        file_bytes: size of the exported artifact on disk.
        params, macs: exact counts of the (float) model.
        artifact: absolute path of the exported file.
        parity: ``ParityResult.to_dict()`` against the PyTorch model (and the integer reference).
        details: per-layer facts: ``{"layers": [{"name", "sparsity", "bits", "channels"}...]}``.
        record: the full ``MeasureRecord.to_dict()`` (every latency setting, environment).
        trial: the Optuna trial number for search candidates.
        error: why the candidate failed (then it has no metrics and is listed, not plotted).
    """

    name: str
    source: str = "technique"
    techniques: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    file_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    artifact: str = ""
    parity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    trial: int | None = None
    error: str | None = None

    @property
    def measured(self) -> bool:
        """True when accuracy, latency and size are all known."""
        return (
            self.error is None
            and self.accuracy is not None
            and self.latency_p50_ms is not None
            and self.file_bytes is not None
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict` (unknown keys are ignored, for forward compatibility)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Report:
    """Everything a run produced: the recipe, where it ran, and every candidate.

    ``complete`` is False for a run that was interrupted or is still going: renderings say so.
    """

    name: str
    recipe: dict[str, Any]
    runtime: str
    batch_size: int
    threads: int
    environment: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)
    baseline: str = "baseline"
    complete: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    notes: list[str] = field(default_factory=list)

    def candidate(self, name: str) -> Candidate | None:
        """The candidate called ``name``, or None."""
        return next((c for c in self.candidates if c.name == name), None)

    def baseline_candidate(self) -> Candidate | None:
        """The baseline, if it was measured."""
        return self.candidate(self.baseline)

    def measured(self) -> list[Candidate]:
        """Candidates with accuracy, latency and size."""
        return [c for c in self.candidates if c.measured]

    def front(self, axis: str = "latency") -> list[str]:
        """Names on the accuracy-vs-``axis`` front (``"latency"`` p50 or ``"size"`` bytes).

        Candidates that break a recipe constraint (``details["feasible"] is False``) are never on
        a front.
        """
        if axis not in ("latency", "size"):
            raise ValueError(f"axis must be 'latency' or 'size'; got {axis!r}")
        rows = [c for c in self.measured() if c.details.get("feasible", True) is not False]
        points = [
            (
                float(c.accuracy or 0.0),
                float((c.latency_p50_ms if axis == "latency" else c.file_bytes) or 0.0),
            )
            for c in rows
        ]
        mask = pareto_mask(points, ("max", "min"))
        return [c.name for c, keep in zip(rows, mask, strict=True) if keep]

    def derived(self, candidate: Candidate) -> dict[str, float | None]:
        """Drop vs baseline (accuracy points), speed-up and compression vs baseline (×)."""
        base = self.baseline_candidate()
        out: dict[str, float | None] = {"drop_points": None, "speedup": None, "compression": None}
        if base is None or not base.measured or not candidate.measured:
            return out
        assert base.accuracy is not None and candidate.accuracy is not None
        out["drop_points"] = 100.0 * (base.accuracy - candidate.accuracy)
        if base.latency_p50_ms and candidate.latency_p50_ms:
            out["speedup"] = base.latency_p50_ms / candidate.latency_p50_ms
        if base.file_bytes and candidate.file_bytes:
            out["compression"] = base.file_bytes / candidate.file_bytes
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the content of ``report.json`` (with the derived columns and fronts)."""
        body = dataclasses.asdict(self)
        body["report_version"] = REPORT_VERSION
        body["candidates"] = [{**c.to_dict(), "derived": self.derived(c)} for c in self.candidates]
        body["fronts"] = {"latency": self.front("latency"), "size": self.front("size")}
        return body

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (derived columns are recomputed, not read)."""
        names = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in data.items() if k in names}
        body["candidates"] = [Candidate.from_dict(c) for c in data.get("candidates", [])]
        return cls(**body)

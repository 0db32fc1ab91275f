"""Parity: does an exported model compute what the PyTorch model computes?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slimkit.errors import ConfigError


@dataclass(frozen=True)
class ParityResult:
    """Agreement of candidate logits with reference logits on the same inputs."""

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    samples: int
    # int8 against an integer oracle: the output's quantization step and the share of outputs
    # within one step of the oracle (None for float comparisons)
    lsb: float | None = None
    within_1_lsb: float | None = None

    def passes(self, *, atol: float = 1e-4, min_agreement: float = 1.0) -> bool:
        """True when the largest difference is within ``atol`` and argmax agrees enough."""
        return self.max_abs_diff <= atol and self.argmax_agreement >= min_agreement

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, *, lsb: float | None = None
) -> ParityResult:
    """Compare two ``(N, classes)`` logit arrays.

    ``lsb``: the output's quantization step, for int8 outputs held against an integer oracle;
    then ``within_1_lsb`` is the share of outputs that differ by at most one step.

    Example:
        >>> r = compare_logits(np.eye(3), np.eye(3) + 1e-6)
        >>> r.argmax_agreement
        1.0
    """
    if reference.shape != candidate.shape:
        raise ConfigError(
            f"parity needs logits of the same shape; got {reference.shape} and {candidate.shape}"
        )
    if reference.size == 0:
        raise ConfigError("parity needs at least one sample")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    agreement = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return ParityResult(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        argmax_agreement=agreement,
        samples=int(reference.shape[0]),
        lsb=lsb,
        # outputs lie on the grid S·(q − Z): one step apart differ by ≈ S, two by ≈ 2S
        within_1_lsb=None if lsb is None else float(np.mean(diff <= 1.5 * lsb)),
    )

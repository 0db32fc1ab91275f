"""Early stopping of bad trials in a multi-objective search: the *dominated-at-the-end* rule.

Optuna's pruners (median, successive halving, Hyperband) rank one intermediate value, so they only
fit single-objective searches. For accuracy-vs-cost searches slimkit uses its own rule:

    After epoch ``k`` (``k ≥ warmup_epochs``), stop trial ``t`` if some finished trial ``q``
    with the *same post-training recipe* (the same techniques with the same options, applied
    after training) trained a float model that is no more costly than ``t``'s (MACs and
    parameters both ≤, exact counts known before training) and whose best validation accuracy
    is higher than the best ``t`` can still reach, ``acc_t(k) + g(k) + margin``, where ``g(k)``
    is the largest gain any finished trial made after its own epoch ``k`` (the best accuracy
    minus the accuracy at epoch ``k``).

When it fires, ``q`` took the very steps ``t`` would take next from a model at least as accurate
and no larger, and was measured doing so: ``t``'s candidate would end up beside ``q``'s, no
better on accuracy and no cheaper in operations. (The recipe must match: a pruned or int8 version
of a model can be faster than a better float model, so comparing across recipes would stop
trials whose measured point lands on the front.) The bound ``g(k)`` is empirical (learned
from the finished trials' curves, so the rule waits for ``min_finished`` of them), which is why
a ``margin`` is added; with an unbounded margin the rule never fires. Tests check it against
hand-made curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FinishedCurve:
    """A finished trial's validation curve (one accuracy per epoch), its model's cost and its
    post-training recipe (any hashable description; equal recipes compare)."""

    curve: Sequence[float]
    macs: int
    params: int
    recipe: str = ""


@dataclass(frozen=True)
class ParetoStoppingRule:
    """The dominated-at-the-end rule (see the module docstring)."""

    warmup_epochs: int = 1
    min_finished: int = 3
    margin: float = 0.005

    def gain_bound(self, epoch: int, finished: Sequence[FinishedCurve]) -> float | None:
        """Largest gain after ``epoch`` among finished curves that reached it (None if none)."""
        gains = [max(f.curve) - f.curve[epoch - 1] for f in finished if len(f.curve) >= epoch]
        return max(gains) if gains else None

    def should_stop(
        self,
        epoch: int,
        accuracy: float,
        macs: int,
        params: int,
        finished: Sequence[FinishedCurve],
        recipe: str = "",
    ) -> bool:
        """Whether a trial at ``accuracy`` after ``epoch`` (1-based) epochs should stop."""
        if epoch < self.warmup_epochs or len(finished) < self.min_finished:
            return False
        gain = self.gain_bound(epoch, finished)
        if gain is None:
            return False
        reachable = accuracy + gain + self.margin
        return any(
            f.recipe == recipe
            and f.macs <= macs
            and f.params <= params
            and bool(f.curve)
            and max(f.curve) > reachable
            for f in finished
        )

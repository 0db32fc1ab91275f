"""The multi-objective stopping rule on hand-made learning curves."""

from __future__ import annotations

from slimkit.search import FinishedCurve, ParetoStoppingRule

FINISHED = [
    FinishedCurve([0.80, 0.90, 0.95], macs=1000, params=100),  # gain after epoch 1: 0.15
    FinishedCurve([0.85, 0.88, 0.90], macs=5000, params=500),
    FinishedCurve([0.70, 0.75, 0.78], macs=200, params=50),
]


def test_stops_a_costlier_trial_that_cannot_catch_up() -> None:
    rule = ParetoStoppingRule(warmup_epochs=1, min_finished=3, margin=0.005)
    # bound after epoch 1: 0.15 gain; 0.50 + 0.155 < 0.95 of a cheaper finished trial
    assert rule.should_stop(1, 0.50, macs=2000, params=200, finished=FINISHED)
    # at 0.80 it could still reach 0.955 > 0.95: keep going
    assert not rule.should_stop(1, 0.80, macs=2000, params=200, finished=FINISHED)


def test_never_stops_a_cheaper_trial() -> None:
    rule = ParetoStoppingRule()
    # only the 0.78 trial is cheaper, and 0.65 + 0.155 can still beat it
    assert not rule.should_stop(1, 0.65, macs=300, params=60, finished=FINISHED)
    # at 0.50 even the best case (0.655) stays below that cheaper trial's 0.78
    assert rule.should_stop(1, 0.50, macs=300, params=60, finished=FINISHED)
    # cheapest of all: nothing dominates it, however bad
    assert not rule.should_stop(2, 0.10, macs=100, params=10, finished=FINISHED)


def test_waits_for_warmup_and_enough_finished_trials() -> None:
    rule = ParetoStoppingRule(warmup_epochs=2, min_finished=3)
    assert not rule.should_stop(1, 0.10, macs=9999, params=9999, finished=FINISHED)
    assert rule.should_stop(2, 0.10, macs=9999, params=9999, finished=FINISHED)
    assert not rule.should_stop(2, 0.10, macs=9999, params=9999, finished=FINISHED[:2])


def test_gain_bound_uses_the_best_epoch() -> None:
    rule = ParetoStoppingRule()
    bound = rule.gain_bound(1, FINISHED)
    assert bound is not None and abs(bound - 0.15) < 1e-12
    assert rule.gain_bound(5, FINISHED) is None


def test_only_trials_with_the_same_post_training_recipe_compare() -> None:
    rule = ParetoStoppingRule()
    finished = [FinishedCurve(c.curve, c.macs, c.params, recipe="[]") for c in FINISHED]
    # the same case that stops above, but this trial prunes after training and they did not
    pruned = '[{"ratio": 0.5, "technique": "channel_pruning"}]'
    assert rule.should_stop(1, 0.50, macs=2000, params=200, finished=finished, recipe="[]")
    assert not rule.should_stop(1, 0.50, macs=2000, params=200, finished=finished, recipe=pruned)

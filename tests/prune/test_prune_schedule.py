"""The gradual schedule of Zhu & Gupta 2017: the formula, and the masks it drives in training."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques.prune import GradualSchedule, MagnitudePruning, sparsity_by_layer
from slimkit.train import Callback, TrainConfig, TrainState, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_formula_matches_hand_computed_values() -> None:
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3 with s_i = 0.1, s_f = 0.9, t0 = 100, Δt = 10,
    # n = 4: progress 0, 1/4, 1/2, 3/4, 1 → 0.1, 0.9 - 0.8·27/64, 0.9 - 0.8/8, 0.9 - 0.8/64, 0.9
    schedule = GradualSchedule(initial_sparsity=0.1, begin_step=100, frequency=10, n_updates=4)
    expected = {
        0: 0.0,
        99: 0.0,
        100: 0.1,
        109: 0.1,
        110: 0.5625,
        119: 0.5625,
        120: 0.8,
        130: 0.8875,
        139: 0.8875,
        140: 0.9,
        10_000: 0.9,
    }
    for step, value in expected.items():
        assert schedule.sparsity_at(step, final=0.9) == pytest.approx(value, abs=1e-12), step
    assert [t for t in range(0, 200) if schedule.is_update_step(t)] == [100, 110, 120, 130, 140]
    assert schedule.end_step == 140


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"initial_sparsity": 1.0}, "schedule.initial_sparsity"),
        ({"frequency": 0}, "schedule.frequency"),
        ({"n_updates": 0}, "schedule.n_updates"),
        ({"begin_step": -1}, "schedule.begin_step"),
        ({"frequency": 2.5}, "schedule.frequency"),
    ],
)
def test_bad_schedules_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        GradualSchedule(**options)  # type: ignore[arg-type]


class SparsitySpy(Callback):
    """Records the sparsity of every pruned layer after each optimizer step."""

    def __init__(self) -> None:
        self.after_step: dict[int, dict[str, float]] = {}

    def on_step_end(self, state: TrainState) -> None:
        self.after_step[state.step] = sparsity_by_layer(state.model)


def test_training_follows_the_schedule_step_by_step(small_mlp: nn.Module, digits: Dataset) -> None:
    model = copy.deepcopy(small_mlp)
    schedule = GradualSchedule(initial_sparsity=0.2, begin_step=3, frequency=4, n_updates=5)
    final = {"layers.1": 0.9, "layers.3": 0.7, "layers.5": 0.6}
    pruner = MagnitudePruning(list(final), final, granularity="layer", schedule=schedule)
    spy = SparsitySpy()  # runs after the pruner: sees the masks of this step
    train(model, digits, TrainConfig(epochs=2, lr=1e-3, seed=0), callbacks=[pruner, spy])
    assert max(spy.after_step) >= schedule.end_step
    for step, measured in spy.after_step.items():
        for name, value in measured.items():
            size = model.get_submodule(name).weight.numel()
            target = schedule.sparsity_at(step, final[name])
            assert value == int(target * size + 0.5) / size, (step, name)
    # the returned model holds the final sparsity exactly, and no hooks remain
    for name, value in sparsity_by_layer(model).items():
        size = model.get_submodule(name).weight.numel()
        assert value == int(final[name] * size + 0.5) / size
        assert not model.get_submodule(name).weight._backward_hooks


def test_a_schedule_longer_than_training_is_refused(small_mlp: nn.Module, digits: Dataset) -> None:
    model = copy.deepcopy(small_mlp)
    schedule = GradualSchedule(frequency=1000, n_updates=10)
    pruner = MagnitudePruning(["layers.1"], 0.5, schedule=schedule)
    with pytest.raises(ConfigError, match=r"ends at step 10000 .* only \d+ steps"):
        train(model, digits, TrainConfig(epochs=1), callbacks=[pruner])


def test_masks_are_nested_as_sparsity_rises(small_mlp: nn.Module, digits: Dataset) -> None:
    model = copy.deepcopy(small_mlp)
    schedule = GradualSchedule(begin_step=0, frequency=2, n_updates=6)
    pruner = MagnitudePruning(["layers.1"], 0.9, schedule=schedule)
    zeros: list[torch.Tensor] = []

    class Record(Callback):
        def on_step_end(self, state: TrainState) -> None:
            zeros.append(state.model.get_submodule("layers.1").weight.detach() == 0)

    train(model, digits, TrainConfig(epochs=1, lr=1e-3, seed=0), callbacks=[pruner, Record()])
    for before, after in itertools.pairwise(zeros):
        assert bool((after | ~before).all())  # once pruned, always pruned

"""Magnitude pruning as a technique: fine-tuning, scope, the gradual schedule, configs, errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques import compress, config_from_dict, config_to_dict
from slimkit.techniques.prune import (
    GradualSchedule,
    MagnitudePruningConfig,
    global_sparsity,
    pruning_callback,
    sparsity_by_layer,
)
from slimkit.train import TrainConfig, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fine_tuning_recovers_what_one_shot_pruning_loses(
    small_mlp: nn.Module, digits: Dataset
) -> None:
    before = {k: v.clone() for k, v in small_mlp.state_dict().items()}
    dense_accuracy = evaluate(small_mlp, digits.test)[1]
    one_shot = compress(small_mlp, [MagnitudePruningConfig(sparsity=0.9)])
    tuned = compress(
        small_mlp, [MagnitudePruningConfig(sparsity=0.9, epochs=3, lr=0.05)], data=digits
    )
    for pruned in (one_shot, tuned):
        total = sum(m.weight.numel() for _, m in _linears(pruned))
        assert global_sparsity(pruned) == int(0.9 * total + 0.5) / total
        assert type(pruned) is type(small_mlp) and list(pruned.state_dict()) == list(before)
    one_shot_accuracy = evaluate(one_shot, digits.test)[1]
    tuned_accuracy = evaluate(tuned, digits.test)[1]
    assert one_shot_accuracy < dense_accuracy - 0.05  # 90% at once hurts...
    assert tuned_accuracy >= dense_accuracy - 0.03  # ...and fine-tuning with the masks recovers
    # the input model is not modified
    assert all(torch.equal(v, small_mlp.state_dict()[k]) for k, v in before.items())


def _linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


class ConvBnNet(nn.Module):
    """conv → batch norm → ReLU → pool → linear: a scope test bed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 1, 8, 8) → (N, 10)
        return self.head(nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2))


def test_scope_selects_layers_and_leaves_biases_and_norms_alone() -> None:
    torch.manual_seed(0)
    model = ConvBnNet()
    everything = compress(model, [MagnitudePruningConfig(sparsity=0.5, granularity="layer")])
    assert sparsity_by_layer(everything) == {"conv": 0.5, "head.1": 0.5}
    for name in ("conv.bias", "bn.weight", "bn.bias", "head.1.bias", "bn.running_var"):
        assert torch.equal(everything.state_dict()[name], model.state_dict()[name])
    only_conv = compress(model, [MagnitudePruningConfig(sparsity=0.5, layer_types=("Conv2d",))])
    assert sparsity_by_layer(only_conv, layer_types=("Conv2d",)) == {"conv": 0.5}
    assert torch.equal(only_conv.head[1].weight, model.head[1].weight)
    by_name = compress(model, [MagnitudePruningConfig(sparsity=0.5, exclude=["conv"])])
    assert torch.equal(by_name.conv.weight, model.conv.weight)
    assert float((by_name.head[1].weight == 0).float().mean()) == 0.5


def test_per_layer_sparsities_by_glob(small_mlp: nn.Module) -> None:
    config = MagnitudePruningConfig(
        sparsity=0.5, granularity="layer", layer_sparsity={"layers.1": 0.9, "layers.[35]": 0.7}
    )
    pruned = compress(small_mlp, [config])
    measured = sparsity_by_layer(pruned)
    sizes = {n: m.weight.numel() for n, m in _linears(pruned)}
    for name, target in {"layers.1": 0.9, "layers.3": 0.7, "layers.5": 0.7}.items():
        assert measured[name] == int(target * sizes[name] + 0.5) / sizes[name]


def test_gradual_pruning_returns_the_best_epoch_at_the_final_sparsity(
    small_mlp: nn.Module, digits: Dataset
) -> None:
    # the schedule ends inside epoch 2 of 3: the loop alone would restore the denser epoch 1
    steps_per_epoch = -(-len(digits.train) // 64)
    schedule = GradualSchedule(begin_step=0, frequency=steps_per_epoch // 4, n_updates=6)
    assert steps_per_epoch < schedule.end_step < 2 * steps_per_epoch
    config = MagnitudePruningConfig(sparsity=0.97, schedule=schedule, epochs=3, lr=0.01)
    model = copy.deepcopy(small_mlp)
    pruner = pruning_callback(model, config)
    result = train(
        model, digits, TrainConfig(epochs=3, lr=0.01, optimizer="sgd"), callbacks=[pruner]
    )
    assert result.best_epoch == 1  # what the loop picked: before the schedule ended
    assert pruner.best_epoch in (2, 3)
    assert pruner.best_accuracy == max(h.val_accuracy for h in result.history[1:])
    total = sum(m.weight.numel() for _, m in _linears(model))
    assert global_sparsity(model) == int(0.97 * total + 0.5) / total


def test_configs_round_trip_through_json() -> None:
    config = MagnitudePruningConfig(
        sparsity=0.95,
        granularity="layer",
        layer_sparsity={"layers.5": 0.7},
        scope=("layers.*",),
        exclude=("layers.9",),
        layer_types=("Linear",),
        schedule=GradualSchedule(initial_sparsity=0.1, begin_step=5, frequency=7, n_updates=3),
        epochs=4,
        lr=0.02,
    )
    data = json.loads(json.dumps(config_to_dict(config)))
    assert data["technique"] == "magnitude_pruning" and data["schedule"]["frequency"] == 7
    assert config_from_dict(data) == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sparsity": 1.0}, r"sparsity must be in \[0, 1\); got 1.0"),
        ({"sparsity": -0.1}, r"sparsity must be in \[0, 1\); got -0.1"),
        ({"sparsity": "0.9"}, r"sparsity must be a number in \[0, 1\]; got '0.9'"),
        ({"granularity": "row"}, "granularity must be one of global, layer; got 'row'"),
        ({"layer_sparsity": {"a": 0.5}}, "layer_sparsity needs granularity='layer'"),
        (
            {"granularity": "layer", "layer_sparsity": {"a": 1.5}},
            r"layer_sparsity\['a'\] must be in \[0, 1\)",
        ),
        ({"scope": "layers.1"}, "scope must be a list of glob patterns"),
        ({"layer_types": ["Dense"]}, "layer_types must be a non-empty list of Linear"),
        ({"schedule": GradualSchedule()}, "needs epochs >= 1; got epochs=0"),
        ({"schedule": {"steps": 3}, "epochs": 1}, r"schedule has no option\(s\) steps"),
        (
            {"sparsity": 0.5, "schedule": GradualSchedule(initial_sparsity=0.6), "epochs": 1},
            "initial_sparsity",
        ),
        ({"epochs": -1}, "epochs must be an int >= 0; got -1"),
        ({"lr": 0}, "lr must be a number > 0; got 0"),
    ],
)
def test_bad_configs_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MagnitudePruningConfig(**options)  # type: ignore[arg-type]


def test_a_scope_that_selects_nothing_is_a_clear_error(small_mlp: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"scope pattern 'conv\*' matches no .* layers: layers.1"):
        compress(small_mlp, [MagnitudePruningConfig(scope=("conv*",))])
    with pytest.raises(ConfigError, match="the scope selects no layer"):
        compress(small_mlp, [MagnitudePruningConfig(scope=())])
    with pytest.raises(ConfigError, match=r"selects no layer .* layers: layers.1 \(Linear\)"):
        compress(small_mlp, [MagnitudePruningConfig(layer_types=("Conv2d",))])


def test_fine_tuning_without_data_is_a_clear_error(small_mlp: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"magnitude pruning with epochs > 0 .* needs data"):
        compress(small_mlp, [MagnitudePruningConfig(epochs=1)])

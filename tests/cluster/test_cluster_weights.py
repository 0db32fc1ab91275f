"""Weight clustering: 2^b values per layer, zeros kept, per-cluster gradient sums, configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques import compress, config_from_dict, config_to_dict
from slimkit.techniques.cluster import ClusteredWeight, ClusteringConfig, attach_clusters
from slimkit.techniques.prune import MagnitudePruningConfig
from slimkit.train import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["layers.1", "layers.3", "layers.5"]


@pytest.fixture(scope="module")
def pruned_mlp(small_mlp: nn.Module) -> nn.Module:
    """small_mlp with 70% of each layer's weights pruned (no fine-tuning)."""
    return compress(small_mlp, [MagnitudePruningConfig(sparsity=0.7, granularity="layer")])


@pytest.mark.parametrize("bits", [1, 2, 4, 5])
def test_exactly_two_to_the_bits_values_and_the_same_zeros(
    pruned_mlp: nn.Module, bits: int
) -> None:
    clustered = compress(pruned_mlp, [ClusteringConfig(bits=bits)])
    for name in LAYERS:
        before = pruned_mlp.get_submodule(name).weight
        after = clustered.get_submodule(name).weight
        assert torch.equal(after == 0, before == 0)  # pruned stay zero, no new zeros
        assert len(torch.unique(after[after != 0])) == 2**bits
        # every weight moved to a centroid that is no farther than the next one
        values = torch.unique(after[after != 0])
        nearest = values[(before[before != 0][:, None] - values[None, :]).abs().argmin(dim=1)]
        assert torch.equal(nearest, after[after != 0])
    # a plain model again: same keys in the same order, no parametrization left
    assert list(clustered.state_dict()) == list(pruned_mlp.state_dict())
    assert all(isinstance(clustered.get_submodule(n).weight, nn.Parameter) for n in LAYERS)


def test_centroid_gradients_are_per_cluster_sums(pruned_mlp: nn.Module, digits: Dataset) -> None:
    model = copy.deepcopy(pruned_mlp)
    layer = model.get_submodule("layers.3")
    clusters = attach_clusters(layer, 3)
    assert isinstance(clusters, ClusteredWeight) and clusters.k == 8
    x, y = digits.train.x[:128], digits.train.y[:128]
    F.cross_entropy(model(x), y).backward()
    centroids = layer.parametrizations.weight.original0
    # oracle: the same network with a plain weight; sum its gradient over each cluster
    plain = copy.deepcopy(pruned_mlp)
    plain_layer = plain.get_submodule("layers.3")
    with torch.no_grad():
        plain_layer.weight.copy_(layer.weight)
    F.cross_entropy(plain(x), y).backward()
    kept = clusters.codes != clusters.k
    expected = torch.zeros(8, dtype=torch.float64).index_add_(
        0, clusters.codes[kept], plain_layer.weight.grad[kept].double()
    )
    assert centroids.grad is not None
    torch.testing.assert_close(centroids.grad.double(), expected, rtol=1e-5, atol=1e-7)
    assert float(expected.abs().min()) > 0  # every cluster really receives gradient


def test_fine_tuning_moves_centroids_and_keeps_the_structure(
    pruned_mlp: nn.Module, digits: Dataset
) -> None:
    untuned = compress(pruned_mlp, [ClusteringConfig(bits=3)])
    config = ClusteringConfig(bits=3, epochs=2, lr=1e-3, exclude=("layers.5",))
    tuned = compress(pruned_mlp, [config], data=digits)
    for name in ("layers.1", "layers.3"):
        weight = tuned.get_submodule(name).weight
        assert len(torch.unique(weight[weight != 0])) == 8
        assert torch.equal(weight == 0, pruned_mlp.get_submodule(name).weight == 0)
        assert not torch.equal(weight, untuned.get_submodule(name).weight)  # centroids moved
        # each weight kept its cluster: the rank of its value among the centroids is unchanged
        rank = torch.unique(weight[weight != 0], return_inverse=True)[1]
        before = untuned.get_submodule(name).weight
        assert torch.equal(rank, torch.unique(before[before != 0], return_inverse=True)[1])
    # the excluded layer was frozen: still exactly the pruned weights
    assert torch.equal(tuned.layers[5].weight, pruned_mlp.layers[5].weight)
    assert tuned.layers[5].weight.requires_grad
    assert evaluate(tuned, digits.test)[1] >= evaluate(untuned, digits.test)[1] - 0.01


def test_bits_per_layer_type_and_name() -> None:
    config = ClusteringConfig(bits=5, bits_by_type={"Conv2d": 8}, layer_bits={"head.*": 2})
    assert config.bits_for("features.0", "Conv2d") == 8
    assert config.bits_for("features.3", "Linear") == 5
    assert config.bits_for("head.1", "Linear") == 2
    data = json.loads(json.dumps(config_to_dict(config)))
    assert data["technique"] == "weight_clustering" and config_from_dict(data) == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": 0}, r"bits must be an int in \[1, 16\] \(2\^bits centroids\); got 0"),
        ({"bits": 17}, r"bits must be an int in \[1, 16\]"),
        ({"bits": "5"}, r"got '5'"),
        ({"bits_by_type": {"Conv2d": 0}}, r"bits_by_type\['Conv2d'\] must be an int"),
        ({"bits_by_type": {"Dense": 4}}, "bits_by_type keys must be layer types"),
        ({"layer_bits": {"fc*": 40}}, r"layer_bits\['fc\*'\] must be an int"),
        ({"epochs": -1}, "epochs must be an int >= 0; got -1"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ],
)
def test_bad_configs_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusteringConfig(**options)  # type: ignore[arg-type]


def test_clear_errors_for_data_scope_and_empty_layers(small_mlp: nn.Module) -> None:
    with pytest.raises(ConfigError, match=r"weight clustering with epochs > 0 .* needs data"):
        compress(small_mlp, [ClusteringConfig(epochs=1)])
    with pytest.raises(ConfigError, match="the scope selects no layer"):
        compress(small_mlp, [ClusteringConfig(scope=())])
    zeroed = copy.deepcopy(small_mlp)
    with torch.no_grad():
        zeroed.layers[5].weight.zero_()
    with pytest.raises(ConfigError, match="weights are all zero; exclude it"):
        compress(zeroed, [ClusteringConfig()])

"""One-dimensional k-means with linear initialization, against scikit-learn and by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from slimkit.errors import ConfigError
from slimkit.techniques.cluster import kmeans_1d, linear_centroids, nearest_centroid

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_initialization_spans_the_weights() -> None:
    values = torch.tensor([-0.25, 0.125, 0.75, 0.25])  # exact in binary
    assert linear_centroids(values, 5).tolist() == [-0.25, 0.0, 0.25, 0.5, 0.75]


def test_nearest_centroid_by_binary_search_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(1000, generator=generator, dtype=torch.float64)
    centroids = torch.sort(torch.randn(16, generator=generator, dtype=torch.float64)).values
    brute = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)
    assert torch.equal(nearest_centroid(values, centroids), brute)


@pytest.mark.parametrize("k", [4, 16, 32])
def test_matches_scikit_learn_lloyd_from_the_same_initialization(k: int) -> None:
    # the bimodal shape of pruned weights: two lobes away from zero
    rng = np.random.default_rng(k)
    values = np.concatenate([rng.normal(-0.1, 0.03, 3000), rng.normal(0.12, 0.04, 2000)])
    centroids, assignment = kmeans_1d(torch.from_numpy(values), k, max_iter=300)
    reference = KMeans(
        n_clusters=k,
        init=linear_centroids(torch.from_numpy(values), k).numpy()[:, None],
        n_init=1,
        max_iter=300,
        tol=0.0,
        algorithm="lloyd",
    ).fit(values[:, None])
    np.testing.assert_allclose(
        centroids.numpy(), np.sort(reference.cluster_centers_[:, 0]), atol=1e-9
    )
    # a fixed point of Lloyd: each value sits at its nearest centroid, each centroid is the mean
    assert torch.equal(assignment, nearest_centroid(torch.from_numpy(values), centroids))
    means = torch.stack([torch.from_numpy(values)[assignment == j].mean() for j in range(k)])
    assert torch.allclose(means, centroids)


def test_empty_clusters_are_reseeded_so_all_k_are_used() -> None:
    # linear initialization over [0, 100] leaves almost every centroid with no weight
    values = torch.cat([torch.linspace(0.0, 1.0, 40), torch.tensor([100.0])]).double()
    centroids, assignment = kmeans_1d(values, 8)
    assert len(centroids) == 8 and len(torch.unique(centroids)) == 8
    assert torch.bincount(assignment, minlength=8).min() >= 1
    assert torch.all(centroids[1:] > centroids[:-1])


def test_fewer_distinct_values_than_clusters() -> None:
    values = torch.tensor([0.5, -1.0, 0.5, 2.0], dtype=torch.float64)
    centroids, assignment = kmeans_1d(values, 8)
    assert centroids.tolist() == [-1.0, 0.5, 2.0]
    assert torch.equal(centroids[assignment], values)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="k >= 1 clusters; got 0"):
        kmeans_1d(torch.ones(3), 0)
    with pytest.raises(ConfigError, match="at least one value"):
        kmeans_1d(torch.ones(0), 4)

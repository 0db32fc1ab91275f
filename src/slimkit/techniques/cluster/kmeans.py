"""One-dimensional k-means with linear initialization: the codebook of weight sharing.

Han et al. 2016 ("Deep Compression", ICLR, §3.1-3.2) cluster each layer's weights with k-means
and compare three initializations; linear initialization (centroids evenly spaced between the
smallest and the largest weight) works best because it keeps centroids for the few large weights,
which matter most. In one dimension the nearest centroid is found by a binary search among the
midpoints of the sorted centroids, so each Lloyd iteration costs ``O(N log k)``.

A cluster that loses all its weights is moved to the weight farthest from its centroid (among
values no centroid holds yet), so that, whenever the weights take at least ``k`` distinct values,
the result has exactly ``k`` non-empty clusters.

Example:
    >>> centroids, assignment = kmeans_1d(torch.tensor([0.0, 0.25, 1.5, 2.0]), 2)
    >>> centroids.tolist(), assignment.tolist()
    ([0.125, 1.75], [0, 0, 1, 1])
"""

from __future__ import annotations

import torch

from slimkit.errors import ConfigError


def linear_centroids(values: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` centroids evenly spaced over ``[min(values), max(values)]`` (float64)."""
    values = values.double()
    return torch.linspace(float(values.min()), float(values.max()), k, dtype=torch.float64)


def nearest_centroid(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of each value; ``centroids`` must be sorted ascending."""
    midpoints = (centroids[1:] + centroids[:-1]) / 2  # (k - 1,)
    return torch.searchsorted(midpoints, values.double().contiguous())


def _cluster_means(
    values: torch.Tensor, assignment: torch.Tensor, k: int, fallback: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(assignment, minlength=k)
    sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assignment, values)
    means = torch.where(counts > 0, sums / counts.clamp_min(1), fallback)
    return means, counts


def _reseed(
    values: torch.Tensor, centroids: torch.Tensor, assignment: torch.Tensor, empty: torch.Tensor
) -> torch.Tensor:
    """Move each empty cluster's centroid to the farthest value that no centroid holds."""
    centroids = centroids.clone()
    error = (values - centroids[assignment]).abs()
    for j in empty.tolist():
        held = torch.isin(values, centroids)
        candidate = torch.where(held, torch.full_like(error, -1.0), error)
        index = int(torch.argmax(candidate))
        if candidate[index] < 0:  # every value is a centroid already: nothing left to split
            break
        centroids[j] = values[index]
        error[index] = 0.0
    return centroids


def kmeans_1d(
    values: torch.Tensor, k: int, *, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``values`` into ``k`` groups by Lloyd's algorithm from a linear initialization.

    Args:
        values: the weights to cluster, any shape (flattened), at least one.
        k: the number of clusters (``2^bits``).
        max_iter: Lloyd iterations at most (it stops earlier when no assignment changes).

    Returns:
        ``(centroids, assignment)``: ascending float64 centroids, ``(min(k, distinct values),)``,
        each the mean of its weights; and the cluster of each value, int64 ``(N,)``. With at least
        ``k`` distinct values every one of the ``k`` clusters is non-empty.
    """
    if k < 1:
        raise ConfigError(f"k-means needs k >= 1 clusters; got {k!r}")
    values = values.detach().flatten().double().cpu()
    if values.numel() == 0:
        raise ConfigError("k-means needs at least one value to cluster; got none")
    distinct, inverse = torch.unique(values, return_inverse=True)
    if len(distinct) <= k:  # every distinct value is its own cluster
        return distinct, inverse
    centroids = linear_centroids(values, k)
    assignment = nearest_centroid(values, centroids)
    for _ in range(max_iter):
        means, counts = _cluster_means(values, assignment, k, centroids)
        empty = torch.nonzero(counts == 0).flatten()
        centroids = _reseed(values, means, assignment, empty) if len(empty) else means
        centroids, _ = torch.sort(centroids)
        new_assignment = nearest_centroid(values, centroids)
        if torch.equal(new_assignment, assignment) and not len(empty):
            break
        assignment = new_assignment
    # a last guarantee of k non-empty clusters, then each centroid is the mean of its weights
    counts = torch.bincount(assignment, minlength=k)
    for j in torch.nonzero(counts == 0).flatten().tolist():
        error = (values - centroids[assignment]).abs()
        shared = torch.bincount(assignment, minlength=k)[assignment] > 1
        index = int(torch.argmax(torch.where(shared, error, torch.full_like(error, -1.0))))
        assignment[index] = j
    means, _ = _cluster_means(values, assignment, k, centroids)
    order = torch.argsort(means)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k)
    return means[order], rank[assignment]

"""Weight clustering (weight sharing) with centroid fine-tuning, as in Deep Compression (Han et
al. 2016): k-means with linear initialization into ``2^bits`` shared values per layer.
"""

from slimkit.techniques.cluster.clustering import (
    ClusteredWeight,
    ClusteringConfig,
    attach_clusters,
    cluster_weights,
    strip_clusters,
)
from slimkit.techniques.cluster.kmeans import kmeans_1d, linear_centroids, nearest_centroid

__all__ = [
    "ClusteredWeight",
    "ClusteringConfig",
    "attach_clusters",
    "cluster_weights",
    "kmeans_1d",
    "linear_centroids",
    "nearest_centroid",
    "strip_clusters",
]

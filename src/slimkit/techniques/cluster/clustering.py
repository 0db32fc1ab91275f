"""Weight clustering (weight sharing) with centroid fine-tuning, as in Deep Compression.

Han et al. 2016 ("Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR, §3) replace each layer's weights by ``2^b`` shared values:
k-means with linear initialization picks the centroids (:func:`~slimkit.techniques.cluster.kmeans.
kmeans_1d`), each weight keeps only the index of its centroid (``b`` bits), and fine-tuning updates
the centroids with the sum of the gradients of the weights that share them (§3.3, Figure 3).
Weights that pruning set to zero are not clustered: they stay exactly zero and cost no index.

During fine-tuning each clustered layer's ``weight`` is a parametrization
(:class:`ClusteredWeight`): ``weight = [c_0, ..., c_{k-1}, 0][codes]`` with the centroids as the
only trained tensor of the layer, so autograd's gather backward *is* the per-cluster sum. At the end
the parametrization is removed and the layer holds a plain weight whose values are exactly the
centroids (and zero).

Example:
    >>> from slimkit.models import create_model
    >>> model = create_model("lenet300_100", input_shape=(1, 28, 28))
    >>> clustered = cluster_weights(model, ClusteringConfig(bits=4))
    >>> len(torch.unique(clustered.layers[1].weight))
    16
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimkit.data import Dataset
from slimkit.errors import ConfigError
from slimkit.techniques.cluster.kmeans import kmeans_1d
from slimkit.techniques.prune.scope import (
    DEFAULT_LAYER_TYPES,
    LAYER_TYPES,
    check_layer_types,
    first_match,
    patterns,
    select_layers,
)
from slimkit.techniques.registry import CompressContext, register_technique
from slimkit.train import Callback, TrainConfig, train

logger = logging.getLogger(__name__)

MAX_BITS = 16


class ClusteredWeight(nn.Module):
    """Parametrization ``centroids → weight``: ``[centroids, 0][codes]``.

    ``codes`` holds each weight's cluster index; the index ``k`` (one past the last centroid)
    marks a pruned weight, which reads the appended constant zero and passes no gradient on.

    Args:
        codes: int64 tensor of the weight's shape, values in ``[0, k]``.
        k: number of centroids.
    """

    codes: torch.Tensor

    def __init__(self, codes: torch.Tensor, k: int) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("codes", codes.long())
        self.parameter_order: list[str] = []  # the layer's parameter names, to restore

    def forward(self, centroids: torch.Tensor) -> torch.Tensor:
        # centroids: (k,) → weight of codes' shape
        table = torch.cat([centroids, centroids.new_zeros(1)])
        return table[self.codes]

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor]:
        """The centroids that best fit ``weight`` for these codes: each cluster's mean weight."""
        kept = self.codes != self.k
        codes, values = self.codes[kept], weight.detach()[kept].double()
        sums = torch.zeros(self.k, dtype=torch.float64, device=weight.device)
        sums.index_add_(0, codes, values)
        counts = torch.bincount(codes, minlength=self.k).clamp_min(1)
        return ((sums / counts).to(weight.dtype),)


def _check_bits(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BITS:
        raise ConfigError(
            f"{name} must be an int in [1, {MAX_BITS}] (2^bits centroids); got {value!r}"
        )


@dataclass(frozen=True)
class ClusteringConfig:
    """Weight clustering to ``2^bits`` shared values per layer, with centroid fine-tuning.

    Args:
        bits: index bits per weight, i.e. ``2^bits`` centroids per layer (Deep Compression: 8 for
            convolutions and 5 for fully connected layers of AlexNet, 6 for LeNet).
        bits_by_type: layer class name → bits (e.g. ``{"Conv2d": 8, "Linear": 5}``).
        layer_bits: module-name glob → bits; first match wins, before ``bits_by_type``.
        scope: glob patterns of module names to cluster (``None``: every layer of ``layer_types``).
        exclude: glob patterns of module names to leave alone.
        layer_types: layer classes whose ``weight`` is clustered.
        max_iter: k-means iterations at most.
        epochs: centroid fine-tuning epochs (0: cluster only; needs no data). The centroids and
            the other parameters (biases, batch norms) train; the weights of layers outside the
            scope are frozen, so zeros a pruning step left there stay zero.
        lr: fine-tuning learning rate.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        batch_size: fine-tuning batch size.
        weight_decay: fine-tuning weight decay.
        seed: fine-tuning seed.

    Example:
        >>> ClusteringConfig(bits=5, bits_by_type={"Conv2d": 8}).bits_for("conv1", "Conv2d")
        8
    """

    bits: int = 5
    bits_by_type: dict[str, int] | None = None
    layer_bits: dict[str, int] | None = None
    scope: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = DEFAULT_LAYER_TYPES
    max_iter: int = 100
    epochs: int = 0
    lr: float = 1e-4
    optimizer: str = "adam"
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_bits("bits", self.bits)
        for field in ("bits_by_type", "layer_bits"):
            table = getattr(self, field)
            if table is None:
                continue
            if not isinstance(table, Mapping):
                raise ConfigError(f"{field} must map names to bits; got {table!r}")
            for key, value in table.items():
                _check_bits(f"{field}[{key!r}]", value)
            if field == "bits_by_type" and set(table) - set(LAYER_TYPES):
                raise ConfigError(
                    f"bits_by_type keys must be layer types ({', '.join(LAYER_TYPES)}); got "
                    f"{sorted(table)!r}"
                )
        object.__setattr__(self, "scope", patterns("scope", self.scope, allow_none=True))
        object.__setattr__(self, "exclude", patterns("exclude", self.exclude))
        object.__setattr__(self, "layer_types", check_layer_types(self.layer_types))
        for name, minimum in (("max_iter", 1), ("epochs", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}")
        TrainConfig(
            epochs=max(self.epochs, 1),
            lr=self.lr,
            optimizer=self.optimizer,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )

    def bits_for(self, name: str, layer_type: str) -> int:
        """Bits of the layer ``name`` of class ``layer_type``."""
        by_name = first_match(name, self.layer_bits)
        if by_name is not None:
            return int(by_name)
        return int((self.bits_by_type or {}).get(layer_type, self.bits))


def _layer_type(module: nn.Module) -> str:
    exact = [n for n, cls in LAYER_TYPES.items() if type(module) is cls]
    return exact[0] if exact else next(n for n, c in LAYER_TYPES.items() if isinstance(module, c))


def attach_clusters(module: nn.Module, bits: int, *, max_iter: int = 100) -> ClusteredWeight:
    """Cluster ``module.weight``'s non-zero values into ``2^bits`` centroids, in place.

    The weight becomes a :class:`ClusteredWeight` parametrization whose trained tensor is
    ``module.parametrizations.weight.original0`` (the centroids); zeros stay zero.
    """
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    kept = weight.detach() != 0
    if not bool(kept.any()):
        raise ConfigError(
            f"cannot cluster a {type(module).__name__} whose weights are all zero; exclude it"
        )
    _, assignment = kmeans_1d(weight.detach()[kept], 2**bits, max_iter=max_iter)
    k = int(assignment.max()) + 1
    codes = torch.full(weight.shape, k, dtype=torch.long, device=weight.device)
    codes[kept] = assignment.to(weight.device)
    clusters = ClusteredWeight(codes, k)
    clusters.parameter_order = list(module._parameters)
    parametrize.register_parametrization(module, "weight", clusters)
    return clusters


def strip_clusters(model: nn.Module) -> nn.Module:
    """Replace every :class:`ClusteredWeight` parametrization by the plain weight it computes."""
    for module in model.modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        chain = module.parametrizations["weight"]  # type: ignore[index]
        clusters = [p for p in chain if isinstance(p, ClusteredWeight)]
        if clusters:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            for name in clusters[0].parameter_order:  # same state-dict order as before
                module._parameters[name] = module._parameters.pop(name)
    return model


def cluster_weights(
    model: nn.Module,
    config: ClusteringConfig | None = None,
    data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
) -> nn.Module:
    """A copy of ``model`` with clustered weights, the centroids fine-tuned when epochs > 0.

    Returns:
        A plain model (same classes and state-dict keys) in which each clustered layer's weight
        takes at most ``2^bits`` distinct non-zero values (exactly that many when the layer had
        at least as many distinct non-zero weights), and zero where it was zero.
    """
    config = config or ClusteringConfig()
    clustered = copy.deepcopy(model)
    layers = select_layers(clustered, config.scope, config.exclude, config.layer_types)
    for name, module in layers:
        bits = config.bits_for(name, _layer_type(module))
        clusters = attach_clusters(module, bits, max_iter=config.max_iter)
        logger.info("clustered %s into %d centroids (%d bits)", name, clusters.k, bits)
    if config.epochs > 0:
        if not isinstance(data, Dataset):
            raise ConfigError(
                f"clustering with epochs={config.epochs} fine-tunes the centroids and needs a "
                f"slimkit Dataset; got {type(data).__name__} (pass data=..., or epochs=0)"
            )
        # weights of other weight layers stay as they are (pruned zeros must not regrow)
        classes = tuple(LAYER_TYPES.values())
        frozen = [
            module.weight
            for module in clustered.modules()
            if isinstance(module, classes)
            and isinstance(module.weight, nn.Parameter)
            and module.weight.requires_grad
        ]
        for weight in frozen:
            weight.requires_grad_(False)
        train_config = TrainConfig(
            epochs=config.epochs,
            lr=config.lr,
            optimizer=config.optimizer,
            batch_size=config.batch_size,
            weight_decay=config.weight_decay,
            seed=config.seed,
        )
        try:
            train(clustered, data, train_config, callbacks=list(callbacks))
        finally:
            for weight in frozen:
                weight.requires_grad_(True)
    return strip_clusters(clustered).eval()


@register_technique("weight_clustering", ClusteringConfig)
def _apply_clustering(
    model: nn.Module, config: ClusteringConfig, context: CompressContext
) -> nn.Module:
    data = context.require_data("weight clustering with epochs > 0") if config.epochs else None
    return cluster_weights(model, config, data, callbacks=tuple(context.callbacks))

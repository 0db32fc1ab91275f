"""Pruning: structured channel pruning that removes channels (with a dependency analysis) and
attention-head pruning that removes whole heads;
unstructured magnitude pruning (global or per layer, one-shot or on the gradual schedule of Zhu &
Gupta 2017); the sparse file format and the size accounting of Deep Compression (Han et al. 2016)
with its canonical Huffman coder.
"""

from slimkit.techniques.prune.deep_compression import STAGES, CompressionStages, compression_stages
from slimkit.techniques.prune.heads import (
    HeadPruningConfig,
    head_importance,
    heads_by_layer,
    prune_heads,
    remove_heads,
)
from slimkit.techniques.prune.huffman import HuffmanCode
from slimkit.techniques.prune.magnitude import (
    MagnitudePruning,
    MagnitudePruningConfig,
    global_sparsity,
    prune_magnitude,
    pruning_callback,
    sparsity_by_layer,
)
from slimkit.techniques.prune.masks import PruningMasks, magnitude_masks
from slimkit.techniques.prune.schedule import GradualSchedule
from slimkit.techniques.prune.scope import LAYER_TYPES, select_layers
from slimkit.techniques.prune.sparse_codec import TensorCost
from slimkit.techniques.prune.sparse_format import (
    SparseEncoding,
    decode_sparse,
    encode_sparse,
    load_sparse,
    read_sparse,
    save_sparse,
)
from slimkit.techniques.prune.structured import (
    ChannelPruningConfig,
    apply_channel_selection,
    prune_channels,
    select_channels,
)

__all__ = [
    "LAYER_TYPES",
    "STAGES",
    "ChannelPruningConfig",
    "CompressionStages",
    "GradualSchedule",
    "HeadPruningConfig",
    "HuffmanCode",
    "MagnitudePruning",
    "MagnitudePruningConfig",
    "PruningMasks",
    "SparseEncoding",
    "TensorCost",
    "apply_channel_selection",
    "compression_stages",
    "decode_sparse",
    "encode_sparse",
    "global_sparsity",
    "head_importance",
    "heads_by_layer",
    "load_sparse",
    "magnitude_masks",
    "prune_channels",
    "prune_heads",
    "prune_magnitude",
    "pruning_callback",
    "read_sparse",
    "remove_heads",
    "save_sparse",
    "select_channels",
    "select_layers",
    "sparsity_by_layer",
]

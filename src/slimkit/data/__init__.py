"""Data sets for slimkit: load one by spec, get in-memory train / val / test tensors.

Example:
    >>> from slimkit.data import load_dataset, make_loader
    >>> data = load_dataset("digits", seed=0)
    >>> batches = make_loader(data.train, batch_size=64, shuffle=True, seed=0)
"""

from slimkit.data.dataset import (
    DATA_SOURCES,
    DataConfig,
    Dataset,
    Split,
    load_dataset,
    parse_data_spec,
)
from slimkit.data.idx import read_idx
from slimkit.data.loaders import make_loader

__all__ = [
    "DATA_SOURCES",
    "DataConfig",
    "Dataset",
    "Split",
    "load_dataset",
    "make_loader",
    "parse_data_spec",
    "read_idx",
]

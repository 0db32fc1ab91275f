"""Data sets for slimkit: load one by spec or build one in Python; read its splits in batches.

Example:
    >>> from slimkit.data import load_dataset
    >>> data = load_dataset("digits", seed=0)
    >>> x, y = next(data.train.batches(64, shuffle=True, seed=0))
"""

from slimkit.data.dataset import (
    DATA_SOURCES,
    DataConfig,
    Dataset,
    load_dataset,
    parse_data_spec,
)
from slimkit.data.idx import read_idx
from slimkit.data.loaders import make_loader
from slimkit.data.python import from_arrays, from_torch
from slimkit.data.split import Split, StreamSplit, TensorSplit

__all__ = [
    "DATA_SOURCES",
    "DataConfig",
    "Dataset",
    "Split",
    "StreamSplit",
    "TensorSplit",
    "from_arrays",
    "from_torch",
    "load_dataset",
    "make_loader",
    "parse_data_spec",
    "read_idx",
]

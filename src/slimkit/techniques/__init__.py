"""Compression techniques behind one verb: ``compress(model, [config, ...])``.

Each technique lives in its own sub-package with a frozen config and one registered function.
"""

from slimkit.techniques import (  # noqa: F401  (registration side effects)
    cluster,
    distill,
    lowrank,
    prune,
    quantize,
)
from slimkit.techniques.registry import (
    CompressContext,
    compress,
    config_from_dict,
    config_to_dict,
    list_techniques,
    register_technique,
    technique_info,
)

__all__ = [
    "CompressContext",
    "compress",
    "config_from_dict",
    "config_to_dict",
    "list_techniques",
    "register_technique",
    "technique_info",
]

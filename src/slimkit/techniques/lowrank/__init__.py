"""Low-rank factorization of linear and convolution layers by truncated SVD."""

from slimkit.techniques.lowrank.svd import (
    LowRankConfig,
    choose_rank,
    factorize_conv,
    factorize_linear,
    low_rank,
)

__all__ = ["LowRankConfig", "choose_rank", "factorize_conv", "factorize_linear", "low_rank"]

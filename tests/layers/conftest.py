"""One PyTorch thread for these small models: on a shared 2-core machine two OpenMP threads make
many-layer models tens of times slower, never faster (see docs/architectures.md)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_fixed_threads: None) -> None:
    """Runs after the root conftest's fixture and lowers its thread count to one."""
    torch.set_num_threads(1)

"""PyTorch eager: the reference runtime, loading a slimkit checkpoint (or wrapping a live model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimkit.errors import CheckpointError, RuntimeLoadError
from slimkit.runtime.base import Runner, register_runtime
from slimkit.train.checkpoint import load_checkpoint


@register_runtime
class PyTorchRunner(Runner):
    """Runs a model in PyTorch eager mode on the CPU under ``torch.no_grad()``.

    PyTorch's intra-op thread count is process-wide; the runner sets it before every batch so that
    several runners with different counts in one process each get theirs.
    """

    name = "pytorch"
    format = "checkpoint"
    package = "torch"

    model: nn.Module
    _input_shape: tuple[int, ...] | None = None

    def _load(self) -> None:
        try:
            checkpoint = load_checkpoint(self.path)
        except CheckpointError as error:
            raise RuntimeLoadError(f"pytorch: {error}") from error
        self.model = checkpoint.model.eval()
        self._input_shape = tuple(checkpoint.spec.input_shape)

    @classmethod
    def from_model(cls, model: nn.Module, *, threads: int = 1) -> PyTorchRunner:
        """Wrap a live model (no file) so it can be measured like any runtime."""
        runner = cls.__new__(cls)
        runner.path = Path("<in-memory>")
        runner.threads = threads
        runner.model = model.eval()
        spec = getattr(model, "slimkit_spec", None)
        runner._input_shape = tuple(spec.input_shape) if spec is not None else None
        return runner

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy()

    @classmethod
    def version(cls) -> str:
        return str(torch.__version__)

"""What the edge exporters (LiteRT, ExecuTorch) share: their result and how they prepare a model.

Both formats take a fixed batch size (one file per batch size), both take either a plain float
model or a quantized PT2E graph (:mod:`slimkit.export.pt2e`), and both report which operators
went to the XNNPACK delegate.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from slimkit.errors import ConfigError, ExportError
from slimkit.export.registry import ExportResult
from slimkit.runtime.delegation import DelegationReport

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class EdgeExportResult(ExportResult):
    """An :class:`ExportResult` with the file's fixed batch size, int8 quantizer and delegation.

    ``batch_size`` is None for a file that takes any batch. ``quantizer`` is None for float files
    and the quantizer's label for int8 ones (e.g. ``executorch-xnnpack-pt2e``: the runtime's own
    quantizer, not slimkit's).
    """

    batch_size: int | None = 1
    quantizer: str | None = None
    delegation: DelegationReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return super().to_dict() | {
            "batch_size": self.batch_size,
            "quantizer": self.quantizer,
            "delegation": self.delegation.to_dict() if self.delegation else None,
        }


def check_batch_size(batch_size: object) -> int:
    """Return ``batch_size`` if it is an int >= 1, else raise ConfigError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1; got {batch_size!r}")
    return batch_size


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' warnings and stdout progress lines (they log through us)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def convert_or_raise(what: str, model: nn.Module, step: Callable[[], T]) -> T:
    """Run one conversion step; any failure becomes one ExportError line naming the model."""
    try:
        with quiet():
            return step()
    except ExportError:
        raise
    except Exception as error:
        text = str(error).strip()
        first = text.splitlines()[0] if text else ""
        raise ExportError(
            f"could not export {type(model).__name__} to {what}: {type(error).__name__}: "
            f"{first[:300]}"
        ) from error


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Put ``model`` in eval mode for the block and restore its training flag after.

    A PT2E graph (``torch.fx.GraphModule`` from ``torch.export``) refuses ``train()``/``eval()``
    and carries no dropout or batch-norm training state: only its flag is set (converters read it
    and warn about "training mode" otherwise).
    """

    @contextlib.contextmanager
    def manager() -> Iterator[None]:
        if isinstance(model, torch.fx.GraphModule):
            flag = model.training
            object.__setattr__(model, "training", False)
            try:
                yield
            finally:
                object.__setattr__(model, "training", flag)
            return
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)

    return manager()


def slimkit_int8_as_pt2e(model: nn.Module) -> nn.Module:
    """A slimkit ``QuantizedModel`` (static int8) becomes the PT2E graph that carries its scales
    (:func:`slimkit.export.pt2e_slimkit.slimkit_pt2e`); any other model is returned as it is."""
    from slimkit.techniques.quantize import QuantizedModel

    if isinstance(model, QuantizedModel):
        from slimkit.export.pt2e_slimkit import slimkit_pt2e

        return slimkit_pt2e(model)
    return model


def finish_export(
    model: nn.Module,
    path: Path,
    *,
    fmt: str,
    batch_size: int,
    quantizer: str | None,
    delegation: DelegationReport,
) -> EdgeExportResult:
    """The result of a written edge file; logs what went outside the delegate, and the file."""
    if delegation.outside:
        logger.warning("%s: %s: %s", fmt, path.name, delegation.summary())
    size = path.stat().st_size
    logger.info(
        "exported %s to %s (%d bytes, batch %d, %s)",
        type(model).__name__,
        path,
        size,
        batch_size,
        delegation.summary(),
    )
    return EdgeExportResult(
        path=path,
        format=fmt,
        file_bytes=size,
        batch_size=batch_size,
        quantizer=quantizer,
        delegation=delegation,
    )


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (for ``write_atomic``'s writer, which returns nothing)."""
    path.write_bytes(data)


def example_input(input_shape: tuple[int, ...], batch_size: int) -> torch.Tensor:
    """Zeros of shape ``(batch_size, *input_shape)`` for tracing."""
    return torch.zeros((batch_size, *input_shape))

"""Shapes, dtypes and scalar values of a traced model, found by running it at two batch sizes.

The IR needs what the traced code computes from shapes: the target of ``x.reshape(n, g, c // g,
h, w)``, the value of ``d ** -0.5``, and the dtype of every tensor (integer tensors, such as token
ids, are carried exactly and never quantized). The traced model is run on zeros at batch sizes 2
and 3: a dimension that differs between the two runs depends on the batch and is written ``-1``;
any other value (a scalar computed from shapes) must agree between the runs.

Example:
    >>> import torch.fx as fx
    >>> from torch import nn
    >>> gm = fx.symbolic_trace(nn.Flatten())
    >>> values = TracedValues(gm, (2, 3))
    >>> [values.meta(node).shape for node in gm.graph.nodes if values.is_tensor(node)]
    [(-1, 2, 3), (-1, 6), (-1, 6)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from slimkit.errors import ConfigError

BATCH_SIZES = (2, 3)


@dataclass(frozen=True)
class TensorMeta:
    """Shape (``-1`` marks the batch dimension) and dtype of one tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)


def _summary(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(value.shape), value.dtype)
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, (tuple, list)):
        return tuple(_summary(v) for v in value)
    return value


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n.name] = _summary(result)
        return result


def _record(gm: fx.GraphModule, input_shape: tuple[int, ...], batch: int) -> dict[str, Any]:
    recorder = _Recorder(gm)
    with torch.no_grad():
        recorder.run(torch.zeros((batch, *input_shape)))
    return recorder.values


def _merge_meta(a: TensorMeta, b: TensorMeta) -> TensorMeta:
    return TensorMeta(
        tuple(x if x == y else -1 for x, y in zip(a.shape, b.shape, strict=True)), a.dtype
    )


class TracedValues:
    """What every node of a traced model computes, as shapes and scalars (see the module doc).

    Args:
        gm: the traced model (eval mode).
        input_shape: the shape of one input sample.
    """

    def __init__(self, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
        try:
            first, second = (_record(gm, input_shape, batch) for batch in BATCH_SIZES)
        except Exception as error:
            raise ConfigError(
                f"cannot run {type(gm).__name__} on zeros of shape (N, "
                f"{', '.join(map(str, input_shape))}) to find its shapes "
                f"({type(error).__name__}: {str(error).splitlines()[0][:160]})"
            ) from error
        self._first = first
        self._second = second

    def _pair(self, node: fx.Node) -> tuple[Any, Any]:
        return self._first.get(node.name), self._second.get(node.name)

    def is_tensor(self, node: Any) -> bool:
        """True when ``node`` is a graph node that computes one tensor."""
        return isinstance(node, fx.Node) and isinstance(self._first.get(node.name), TensorMeta)

    def is_tensor_tuple(self, node: Any) -> bool:
        """True when ``node`` computes a tuple of tensors (``chunk``, ``split``, ``unbind``)."""
        value = self._first.get(node.name) if isinstance(node, fx.Node) else None
        return (
            isinstance(value, tuple)
            and len(value) > 0
            and all(isinstance(v, TensorMeta) for v in value)
        )

    def meta(self, node: fx.Node) -> TensorMeta:
        """Shape and dtype of a tensor node (the batch dimension as ``-1``)."""
        a, b = self._pair(node)
        assert isinstance(a, TensorMeta) and isinstance(b, TensorMeta)
        return _merge_meta(a, b)

    def pieces(self, node: fx.Node) -> tuple[TensorMeta, ...]:
        """Shapes and dtypes of the tensors of a tuple-valued node."""
        a, b = self._pair(node)
        return tuple(_merge_meta(x, y) for x, y in zip(a, b, strict=True))

    def dtype(self, node: fx.Node) -> torch.dtype | None:
        """The dtype of a tensor node or of the first tensor of a tuple; None otherwise."""
        if self.is_tensor(node):
            return self.meta(node).dtype
        if self.is_tensor_tuple(node):
            return self.pieces(node)[0].dtype
        return None

    def static(self, value: Any, layer: str) -> Any:
        """A node's value that does not depend on the batch (a Python scalar), or ``value``.

        Raises:
            ConfigError: when the value changes with the batch size, or is a tensor.
        """
        if not isinstance(value, fx.Node):
            if isinstance(value, (tuple, list)):
                return type(value)(self.static(v, layer) for v in value)
            return value
        a, b = self._pair(value)
        if isinstance(a, TensorMeta) or (
            isinstance(a, tuple) and any(isinstance(v, TensorMeta) for v in a)
        ):
            raise ConfigError(
                f"layer {layer!r}: expected a constant, got the tensor {value.name!r}"
            )
        if a != b:
            raise ConfigError(
                f"layer {layer!r} uses {value.name!r}, which depends on the batch size "
                f"({a!r} at batch {BATCH_SIZES[0]}, {b!r} at batch {BATCH_SIZES[1]}); int8 "
                "quantization supports shapes that depend on the batch in reshapes only"
            )
        return a


def exact_tensors(gm: fx.GraphModule, values: TracedValues) -> set[str]:
    """Names of the nodes whose tensors are carried exactly instead of quantized.

    A tensor is exact when it is not floating point (token ids, hash buckets), or when every node
    that reads it is exact (the float arithmetic that turns an input into token ids).
    """
    exact: set[str] = set()
    for node in reversed(list(gm.graph.nodes)):
        dtype = values.dtype(node)
        if dtype is None:
            continue
        if not dtype.is_floating_point:
            exact.add(node.name)
            continue
        readers = [user for user in node.users if values.dtype(user) is not None]
        if (
            readers
            and all(user.op != "output" for user in node.users)
            and all(user.name in exact for user in readers)
        ):
            exact.add(node.name)
    return exact

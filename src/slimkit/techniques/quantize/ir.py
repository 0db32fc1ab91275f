"""The intermediate representation (IR) of a quantized model: ops, tensors and their op kinds.

Every consumer of a quantized model reads this IR: calibration, the simulated (fake-quant) model,
the integer reference executor and the ONNX QDQ exporter. Op kinds fall in four groups:

- integer kernels with their own output scale: ``conv``, ``linear``, ``add``, ``avgpool``,
  ``adaptive_avgpool`` and ``matmul`` (of two activations);
- integer pass-through: ``maxpool``, ``relu``, ``flatten`` and the data movements ``reshape``,
  ``transpose``, ``slice`` and ``concat``, whose output keeps its input's scale and zero point
  (a concatenation's inputs and output share one);
- float islands with their own output scale (:data:`FLOAT_ISLANDS`): no integer kernel; the inputs
  are dequantized, the float op runs and its output is quantized again;
- ``input`` and ``constant`` (a parameter or buffer used directly), quantized with their own
  scale.

A tensor is either quantized (it has :class:`~slimkit.techniques.quantize.scheme.QParams`) or
exact: integer tensors such as token ids, and the float arithmetic that only feeds them, are
carried as they are (``QOp.quantized`` is False).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from slimkit.techniques.quantize.scheme import QParams
from slimkit.techniques.quantize.shapes import TensorMeta

MOVES = ("reshape", "transpose", "slice", "concat")
# the output keeps the scale and zero point of the input (all inputs, for a concatenation)
PASS_THROUGH = ("maxpool", "flatten", "relu", *MOVES)
ACTIVATION_ISLANDS = ("gelu", "hardswish", "hardsigmoid", "sigmoid", "tanh", "silu", "elu")
BINARY_ISLANDS = ("mul", "div", "sub", "pow", "remainder", "add_constant")
FLOAT_ISLANDS = (
    "layer_norm",
    "softmax",
    *ACTIVATION_ISLANDS,
    *BINARY_ISLANDS,
    "mean",
    "sum",
    "clamp",
    "round",
    "cast",
    "embedding",
)
# kinds whose output is observed at calibration and gets its own scale and zero point
OWN_QPARAMS = (
    "input",
    "conv",
    "linear",
    "add",
    "avgpool",
    "adaptive_avgpool",
    "matmul",
    "constant",
    *FLOAT_ISLANDS,
)
# kinds that may run on exact (not quantized) tensors: element-wise arithmetic and data movement
EXACT_KINDS = (
    "input",
    "constant",
    "add",
    "relu",
    "maxpool",
    "flatten",
    *MOVES,
    *BINARY_ISLANDS,
    "clamp",
    "round",
    "cast",
)


@dataclass
class QOp:
    """One operation of the quantized graph.

    ``kind`` is one of the kinds above. ``inputs`` name the tensors it reads, ``output`` the one
    it writes; ``activation`` is a fused ``relu``/``relu6`` or None; ``attrs`` hold layer settings
    (stride, padding, target shape, ...); ``weight``/``bias`` are float tensors (BN already
    folded; an embedding's table is its weight); ``quantized`` is False for an exact tensor.
    """

    kind: str
    name: str
    inputs: list[str]
    output: str
    layer: str = ""
    activation: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    weight_qparams: QParams | None = None
    quantized: bool = True


@dataclass
class QGraph:
    """The IR: ops in execution order, each tensor's quantization parameters, shapes and dtypes.

    ``qparams`` holds the quantized tensors only; ``tensors`` the shape (``-1`` for the batch
    dimension) and dtype of every tensor.
    """

    ops: list[QOp]
    qparams: dict[str, QParams]
    input_shape: tuple[int, ...]
    output: str
    activation_dtype: str = "int8"
    tensors: dict[str, TensorMeta] = field(default_factory=dict)

    def op(self, name: str) -> QOp:
        """The op that writes tensor ``name``."""
        return next(op for op in self.ops if op.output == name)


def shared_qparams_groups(graph: QGraph) -> dict[str, str]:
    """Each quantized tensor → the tensor whose scale and zero point it shares (its group's root).

    A pass-through op's output shares its input's; a concatenation's inputs and output share one.
    """
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for op in graph.ops:
        if not op.quantized:
            continue
        find(op.output)
        joined = op.inputs if op.kind == "concat" else op.inputs[:1]
        if op.kind in PASS_THROUGH:
            for name in joined:
                root, other = find(name), find(op.output)
                if root != other:
                    parent[other] = root
    return {name: find(name) for name in list(parent)}

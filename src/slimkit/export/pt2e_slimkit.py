"""slimkit's own int8 scales in a PT2E graph, so that LiteRT and ExecuTorch run slimkit's model.

PT2E quantizers decide scales by observing calibration data; here the scales are already decided:
by slimkit's calibration (:func:`slimkit.techniques.quantize.quantize_static`, with any observer,
CLE and bias correction). :func:`slimkit_pt2e` rebuilds the quantized IR as a float module (one
submodule per op, BN already folded, weights as slimkit left them), exports it with
``torch.export``, and annotates it with a PT2E quantizer whose observers return slimkit's numbers:

- every tensor slimkit quantizes (the input, each conv/linear/add/pool output after its fused
  ReLU) gets slimkit's per-tensor scale and zero point;
- every weight gets slimkit's symmetric int8 scale(s) (per channel or per tensor, range ±127);
- biases stay float in the graph: both runtimes quantize them to int32 with scale ``S_x · S_w``,
  as slimkit does.

uint8 activations (slimkit's default, for ONNX Runtime's x86 kernels) are carried as int8 with the
zero point lowered by 128: ``S (q - Z)`` with ``q - 128`` and ``Z - 128`` is the same real grid,
so the integer function is unchanged. The result is an ordinary converted PT2E graph labelled
``slimkit``: :func:`slimkit.export.litert.export_litert` and
:func:`slimkit.export.executorch.export_executorch` take it as they take the runtimes' own
quantizers' graphs.

Example:
    >>> qmodel = quantize_static(model.eval(), calibration)  # doctest: +SKIP
    >>> graph = slimkit_pt2e(qmodel)  # doctest: +SKIP
    >>> export(graph, "m-int8.tflite", format="tflite", batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.errors import ConfigError, ExportError

SLIMKIT_QUANTIZER = "slimkit"
# the IR op kinds this bridge carries (each has an aten pattern both runtimes take in int8)
SUPPORTED_KINDS = (
    "input",
    "conv",
    "linear",
    "relu",
    "maxpool",
    "avgpool",
    "adaptive_avgpool",
    "flatten",
    "add",
)


class _OpModule(nn.Module):
    """One IR op in float (the IR's own float semantics), with its folded weight and bias as
    parameters so that ``torch.export`` lifts them and the quantizer can annotate them."""

    def __init__(self, op: Any) -> None:
        super().__init__()
        self.op = dataclasses.replace(op, weight=None, bias=None)  # kind, attrs, activation
        self.weight = (
            nn.Parameter(op.weight.detach().clone().float(), requires_grad=False)
            if op.weight is not None
            else None
        )
        self.bias = (
            nn.Parameter(op.bias.detach().clone().float(), requires_grad=False)
            if op.bias is not None
            else None
        )

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        from slimkit.techniques.quantize.model import apply_activation, apply_op

        return apply_activation(self.op, apply_op(self.op, list(args), self.weight, self.bias))


class GraphFloatModel(nn.Module):
    """slimkit's quantized IR run in float: the model the PT2E graph is exported from."""

    def __init__(self, graph: Any) -> None:
        super().__init__()
        unsupported = [op for op in graph.ops if op.kind not in SUPPORTED_KINDS]
        if unsupported:
            op = unsupported[0]
            raise ConfigError(
                f"layer {op.layer or op.name!r} ({op.kind}) has no int8 pattern in LiteRT/"
                f"ExecuTorch through slimkit's scales (supported: {', '.join(SUPPORTED_KINDS)}); "
                "use the runtime's own quantizer (quantizer='litert-pt2e' or "
                "'executorch-xnnpack-pt2e') for this model"
            )
        self.order = [(op.kind, op.output, list(op.inputs)) for op in graph.ops]
        self.output = graph.output
        self.ops = nn.ModuleDict(
            {op.output: _OpModule(op) for op in graph.ops if op.kind != "input"}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for kind, output, inputs in self.order:
            if kind == "input":
                values[output] = x
            else:
                values[output] = self.ops[output](*[values[name] for name in inputs])
        return values[self.output]


@functools.cache
def fixed_observer_class() -> Any:
    """A PT2E observer class that returns given scale(s)/zero point(s), per tensor or per channel.

    torchao's own ``FixedQParamsObserver`` is per tensor only; weights need per channel. (Built on
    first use: torchao comes with the ExecuTorch extra.) "PerChannel" in the name makes PT2E pass
    ``ch_axis`` through.
    """
    from torchao.quantization.pt2e.observer import ObserverBase

    class FixedPerChannelQParamsObserver(ObserverBase):
        def __init__(
            self,
            scale: list[float],
            zero_point: list[int],
            dtype: torch.dtype = torch.int8,
            quant_min: int = -128,
            quant_max: int = 127,
            ch_axis: int | None = None,
            **_: Any,
        ) -> None:
            super().__init__(dtype=dtype, is_dynamic=False)
            self.quant_min = quant_min
            self.quant_max = quant_max
            self.ch_axis = 0 if ch_axis is None else ch_axis
            self.qscheme = (
                torch.per_channel_symmetric if ch_axis is not None else torch.per_tensor_affine
            )
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
            self.register_buffer("zero_point", torch.tensor(zero_point, dtype=torch.int32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
            if self.qscheme == torch.per_tensor_affine:
                return self.scale[0], self.zero_point[0]
            return self.scale, self.zero_point

    return FixedPerChannelQParamsObserver


def _int8_grid(params: Any) -> tuple[list[float], list[int], int, int]:
    """slimkit's per-tensor activation qparams on the int8 grid (uint8 shifted by 128)."""
    shift = 128 if params.dtype == "uint8" else 0
    return (
        [float(s) for s in params.scale],
        [int(z) - shift for z in params.zero_point],
        int(params.qmin) - shift,
        int(params.qmax) - shift,
    )


def _activation_spec(params: Any) -> Any:
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    scale, zero, qmin, qmax = _int8_grid(params)
    return QuantizationSpec(
        dtype=torch.int8,
        observer_or_fake_quant_ctr=fixed_observer_class().with_args(
            scale=scale, zero_point=zero, quant_min=qmin, quant_max=qmax
        ),
        quant_min=qmin,
        quant_max=qmax,
        qscheme=torch.per_tensor_affine,
    )


def _weight_spec(params: Any) -> Any:
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    per_channel = params.axis is not None
    # the runtimes' int8 weights are [-127, 127]; slimkit's reduced range ([-63, 63], see
    # slimkit.techniques.quantize.scheme.weight_range) lies inside it by its scales
    qmin, qmax = min(int(params.qmin), -127), max(int(params.qmax), 127)
    return QuantizationSpec(
        dtype=torch.int8,
        observer_or_fake_quant_ctr=fixed_observer_class().with_args(
            scale=[float(s) for s in params.scale],
            zero_point=[int(z) for z in params.zero_point],
            quant_min=qmin,
            quant_max=qmax,
            ch_axis=params.axis,
        ),
        quant_min=qmin,
        quant_max=qmax,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        ch_axis=params.axis if per_channel else None,
    )


def _owner(node: torch.fx.Node) -> str | None:
    """The IR tensor name of the op submodule a node was traced in (``ops.<name>``), if any."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in reversed(list(stack.values())):
        parts = str(path).split(".")
        if len(parts) >= 2 and parts[-2] == "ops":
            return parts[-1]
    return None


def annotate(graph: Any, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Annotate the exported :class:`GraphFloatModel` with ``graph``'s scales (PT2E annotations):
    the graph input on each edge that reads it, each op's output at the last operator traced in
    its submodule (after a fused ReLU), and each conv/linear weight."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    ops = {op.output: op for op in graph.ops}
    input_op = next(op for op in graph.ops if op.kind == "input")
    owned = [(node, _owner(node)) for node in model.graph.nodes if node.op == "call_function"]
    last = {owner: node for node, owner in owned if owner is not None}
    missing = [name for name, op in ops.items() if name not in last and op.kind != "input"]
    if missing:
        raise ExportError(f"slimkit PT2E: no traced operator for IR op(s) {missing}")
    annotations: dict[torch.fx.Node, Any] = {}

    def annotation(node: torch.fx.Node) -> Any:
        return annotations.setdefault(node, QuantizationAnnotation(_annotated=True))

    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    for user in placeholder.users:
        spec = _activation_spec(graph.qparams[input_op.output])
        annotation(user).input_qspec_map[placeholder] = spec
    for name, node in last.items():
        annotation(node).output_qspec = _activation_spec(graph.qparams[name])
    layers = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    for node, owner in owned:
        if owner is not None and node.target in layers:
            weight = node.args[1]
            assert isinstance(weight, torch.fx.Node)
            annotation(node).input_qspec_map[weight] = _weight_spec(ops[owner].weight_qparams)
    for node, value in annotations.items():
        node.meta["quantization_annotation"] = value
    return model


@functools.cache
def quantizer_class() -> Any:
    """A PT2E ``Quantizer`` whose annotations carry a QGraph's scales (no calibration)."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class SlimkitQuantizer(Quantizer):
        def __init__(self, graph: Any) -> None:
            super().__init__()
            self.graph = graph

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return annotate(self.graph, model)

        def validate(self, model: torch.fx.GraphModule) -> None:
            return None

    return SlimkitQuantizer


def slimkit_pt2e(qmodel: nn.Module, *, batch_size_bound: int = 65536) -> torch.fx.GraphModule:
    """A converted PT2E graph that computes ``qmodel`` (a slimkit :class:`QuantizedModel`) with
    slimkit's own scales and zero points, labelled ``slimkit``.

    Args:
        qmodel: the output of slimkit's static int8 (``quantize_static`` / ``compress``).
        batch_size_bound: the largest batch the graph takes (dynamic batch).

    Raises:
        ConfigError: for an op with no int8 pattern in the edge runtimes.
        ExportError: if ``torch.export`` or PT2E fail (one line).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from slimkit.export.pt2e import QUANTIZER_ATTRIBUTE, _allow_train_eval

    graph = getattr(qmodel, "graph", None)
    if graph is None or not hasattr(graph, "qparams"):
        raise ConfigError(
            f"slimkit's scales come from a slimkit QuantizedModel (static int8); got "
            f"{type(qmodel).__name__}"
        )
    float_model = GraphFloatModel(graph).eval()
    example = torch.zeros((2, *graph.input_shape))
    batch = torch.export.Dim("batch", min=1, max=batch_size_bound)
    try:
        exported = torch.export.export(
            float_model, (example,), dynamic_shapes=({0: batch},)
        ).module()
        prepared = prepare_pt2e(exported, quantizer_class()(graph))
        with torch.no_grad():
            prepared(example)  # fixed observers: one call only materializes the graph
        converted = convert_pt2e(prepared, fold_quantize=False)
    except (ConfigError, ExportError):
        raise
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise ExportError(
            f"could not carry slimkit's int8 scales into PT2E: {type(error).__name__}: {first}"
        ) from error
    _allow_train_eval(converted)
    setattr(converted, QUANTIZER_ATTRIBUTE, SLIMKIT_QUANTIZER)
    spec = getattr(qmodel, "slimkit_spec", None)
    if spec is not None:
        setattr(converted, "slimkit_spec", spec)  # noqa: B010
    return converted


def integer_outputs(graph: Any, x: np.ndarray) -> np.ndarray:
    """slimkit's integer reference output on the int8 grid the edge files use (uint8 − 128)."""
    from slimkit.techniques.quantize.reference import run_integer

    out = run_integer(graph, x)
    return out - 128 if graph.qparams[graph.output].dtype == "uint8" else out

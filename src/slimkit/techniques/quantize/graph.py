"""From a float model to a quantizable graph: tracing, batch-norm folding, fusion and the IR.

The model is traced with ``torch.fx``; batch norms are folded into the convolution or linear layer
before them; each supported operation becomes one :class:`QOp` of a small intermediate
representation (IR, :mod:`slimkit.techniques.quantize.ir`) whose tensors carry quantization
parameters. The IR is what every consumer of a quantized model reads: the simulated (fake-quant)
model, the integer reference executor and the ONNX QDQ exporter. Supported: Conv2d (any groups, so
depthwise too), Linear, ReLU/ReLU6 (fused into the op before them when possible), max and average
pooling, adaptive average pooling, flatten, addition, dropout and identity (removed), and, lowered
by :mod:`slimkit.techniques.quantize.lowering`: reshapes, transposes, indexing, chunk/split and
concatenation (channel shuffle), matrix products of two activations, and the float islands (layer
norm, softmax, GELU, hard-swish, hard-sigmoid, sigmoid, tanh, SiLU, ELU, element-wise arithmetic,
mean and sum over dimensions, embedding lookups, parameters used directly). Anything else is an
error naming the layer.
"""

from __future__ import annotations

import copy
import functools
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.techniques.quantize.ir import EXACT_KINDS, FLOAT_ISLANDS, QGraph, QOp
from slimkit.techniques.quantize.lowering import lower_node
from slimkit.techniques.quantize.shapes import TensorMeta, TracedValues, exact_tensors

__all__ = ["QGraph", "QOp", "build_graph", "fold_batch_norm", "trace"]

RELU_MODULES = (nn.ReLU, nn.ReLU6)
PASS_THROUGH_MODULES = (nn.Dropout, nn.Identity)


def fold_batch_norm(conv: nn.Module, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """A copy of ``conv`` (Conv2d or Linear) whose weight and bias absorb the batch norm after it.

    ``y = γ (W x + b - μ) / sqrt(σ² + ε) + β``  →  ``W' = W γ / sqrt(σ² + ε)``,
    ``b' = (b - μ) γ / sqrt(σ² + ε) + β``.
    """
    fused = copy.deepcopy(conv)
    assert isinstance(fused, (nn.Conv2d, nn.Linear))
    assert bn.running_mean is not None and bn.running_var is not None
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps
    )
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        shape = [-1] + [1] * (fused.weight.dim() - 1)
        fused.weight.mul_(scale.reshape(shape))
        bias = fused.bias if fused.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + shift
        fused.bias = nn.Parameter(new_bias.detach().clone())
    return fused


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with a clear error for models it cannot trace."""
    try:
        return fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as error:
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx for quantization "
            f"({type(error).__name__}: {str(error).splitlines()[0][:160]}); data-dependent control "
            "flow is not supported"
        ) from error


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> str | None:
    module = _module(gm, node)
    if isinstance(module, nn.ReLU6):
        return "relu6"
    if isinstance(module, nn.ReLU):
        return "relu"
    if node.op in ("call_function", "call_method") and node.target in (F.relu, torch.relu, "relu"):
        return "relu"
    if node.op == "call_function" and node.target is F.relu6:
        return "relu6"
    if node.op == "call_function" and node.target is F.hardtanh and node.args[1:3] == (0.0, 6.0):
        return "relu6"
    return None


def _int_pair(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def build_graph(
    gm: fx.GraphModule, input_shape: tuple[int, ...], *, fold_bn: bool = True
) -> QGraph:
    """Turn a traced model into the IR (without quantization parameters yet).

    Batch norms after a Conv2d/Linear are folded into it (``fold_bn=True``) or kept in the op's
    ``attrs["batch_norm"]`` for quantization-aware training.

    Raises:
        ConfigError: naming the first layer or function that has no int8 implementation.
    """
    ops: list[QOp] = []
    alias: dict[str, str] = {}  # node name → tensor name (for removed pass-through nodes)
    fused: set[str] = set()
    output_name = ""
    values = TracedValues(gm, tuple(input_shape))
    exact = exact_tensors(gm, values)
    tensors: dict[str, TensorMeta] = {}

    def source(arg: Any) -> str:
        if not isinstance(arg, fx.Node):
            raise ConfigError(f"int8 quantization needs tensor inputs; got constant {arg!r}")
        return alias.get(arg.name, arg.name)

    for node in gm.graph.nodes:
        if node.name in fused:
            continue
        module = _module(gm, node)
        if node.op == "output":
            output_name = source(node.args[0])
            continue
        if not values.is_tensor(node):
            continue  # a scalar computed from shapes, or a tuple that getitem reads
        tensors[node.name] = values.meta(node)
        count = len(ops)
        if node.op == "placeholder":
            ops.append(QOp("input", node.name, [], node.name))
            _check_domain(ops[-1], node.name not in exact, ops)
            continue
        if node.op == "get_attr":
            value: Any = functools.reduce(getattr, str(node.target).split("."), gm)
            attrs = {"value": value.detach().clone()}
            ops.append(QOp("constant", node.name, [], node.name, str(node.target), None, attrs))
            _check_domain(ops[-1], node.name not in exact, ops)
            continue
        layer = str(node.target) if node.op == "call_module" else node.name
        two_tensors = len(node.args) == 2 and all(values.is_tensor(a) for a in node.args)
        integer_add = node.target in (operator.add, torch.add) and two_tensors
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise ConfigError(
                f"batch norm {layer!r} does not follow a Conv2d or Linear layer it can fold into; "
                "int8 quantization needs every batch norm folded"
            )
        # a batch norm and then an activation directly after a layer are fused into it
        end, batch_norm, activation = node, None, None
        is_layer = isinstance(module, (nn.Conv2d, nn.Linear))
        users = list(node.users)
        if is_layer and len(users) == 1:
            follower = _module(gm, users[0])
            if isinstance(follower, (nn.BatchNorm1d, nn.BatchNorm2d)):
                batch_norm, end = follower, users[0]
                fused.add(end.name)
                alias[end.name] = node.name
        users = list(end.users)
        if (
            len(users) == 1
            and _is_relu(gm, users[0])
            and (is_layer or integer_add)
            and node.name not in exact
        ):
            activation = _is_relu(gm, users[0])
            fused.add(users[0].name)
            alias[users[0].name] = node.name
        if batch_norm is not None and fold_bn:
            module = fold_batch_norm(module, batch_norm)  # type: ignore[arg-type]
            batch_norm = None
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ConfigError(f"layer {layer!r}: int8 conv supports numeric zero padding only")
            ops.append(
                QOp(
                    "conv",
                    node.name,
                    [source(node.args[0])],
                    node.name,
                    layer,
                    activation,
                    {
                        "stride": _int_pair(module.stride),
                        "padding": _int_pair(module.padding),
                        "dilation": _int_pair(module.dilation),
                        "groups": module.groups,
                    },
                    module.weight.detach().clone(),
                    module.bias.detach().clone() if module.bias is not None else None,
                )
            )
            if batch_norm is not None:
                ops[-1].attrs["batch_norm"] = copy.deepcopy(batch_norm)
        elif isinstance(module, nn.Linear):
            ops.append(
                QOp(
                    "linear",
                    node.name,
                    [source(node.args[0])],
                    node.name,
                    layer,
                    activation,
                    {},
                    module.weight.detach().clone(),
                    module.bias.detach().clone() if module.bias is not None else None,
                )
            )
            if batch_norm is not None:
                ops[-1].attrs["batch_norm"] = copy.deepcopy(batch_norm)
        elif _is_relu(gm, node):
            ops.append(
                QOp("relu", node.name, [source(node.args[0])], node.name, layer, _is_relu(gm, node))
            )
        elif isinstance(module, nn.MaxPool2d) or node.target is F.max_pool2d:
            settings = module if module is not None else None
            kernel = settings.kernel_size if settings else node.args[1]
            stride = (
                settings.stride
                if settings
                else node.kwargs.get("stride", node.args[2] if len(node.args) > 2 else None)
            ) or kernel
            padding = settings.padding if settings else node.kwargs.get("padding", 0)
            if settings is not None and (settings.dilation != 1 or settings.ceil_mode):
                raise ConfigError(
                    f"layer {layer!r}: int8 max pooling supports dilation 1 without ceil_mode"
                )
            ops.append(
                QOp(
                    "maxpool",
                    node.name,
                    [source(node.args[0])],
                    node.name,
                    layer,
                    None,
                    {
                        "kernel": _int_pair(kernel),
                        "stride": _int_pair(stride),
                        "padding": _int_pair(padding),
                    },
                )
            )
        elif isinstance(module, nn.AvgPool2d):
            if module.ceil_mode or (
                module.padding not in (0, (0, 0)) and module.count_include_pad is False
            ):
                raise ConfigError(f"layer {layer!r}: int8 average pooling supports ceil_mode=False")
            ops.append(
                QOp(
                    "avgpool",
                    node.name,
                    [source(node.args[0])],
                    node.name,
                    layer,
                    None,
                    {
                        "kernel": _int_pair(module.kernel_size),
                        "stride": _int_pair(module.stride or module.kernel_size),
                        "padding": _int_pair(module.padding),
                    },
                )
            )
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            if _int_pair(module.output_size) != [1, 1]:
                raise ConfigError(
                    f"layer {layer!r}: int8 adaptive average pooling supports output size 1"
                )
            ops.append(QOp("adaptive_avgpool", node.name, [source(node.args[0])], node.name, layer))
        elif _flattens_from_dim_1(node, module):
            ops.append(QOp("flatten", node.name, [source(node.args[0])], node.name, layer))
        elif isinstance(module, PASS_THROUGH_MODULES):
            alias[node.name] = source(node.args[0])
        elif integer_add:
            ops.append(
                QOp(
                    "add",
                    node.name,
                    [source(node.args[0]), source(node.args[1])],
                    node.name,
                    layer,
                    activation,
                )
            )
        else:
            lowered = lower_node(gm, node, values, source, layer)
            if isinstance(lowered, str):
                alias[node.name] = lowered
            elif lowered is not None:
                ops.append(lowered)
            else:
                what = (
                    type(module).__name__
                    if module is not None
                    else getattr(node.target, "__name__", str(node.target))
                )
                raise ConfigError(
                    f"layer {layer!r} ({what}) has no int8 implementation in slimkit; "
                    "supported: Conv2d, Linear, ReLU, ReLU6, MaxPool2d, AvgPool2d, "
                    "AdaptiveAvgPool2d(1), Flatten, add, BatchNorm (folded), Dropout, reshapes, "
                    "transposes, indexing, chunk/split, cat, matmul, LayerNorm, softmax, GELU, "
                    "Hardswish, Hardsigmoid, Sigmoid, Tanh, SiLU, ELU, mul/div/sub/pow, mean, sum, "
                    "Embedding, parameters used directly"
                )
        for op in ops[count:]:
            _check_domain(op, node.name not in exact, ops)
    output_op = next((op for op in ops if op.output == output_name), None)
    if output_op is None or not output_op.quantized:
        raise ConfigError(
            f"the model's output {output_name!r} is not a quantizable tensor (int8 quantization "
            "needs float logits computed from the input)"
        )
    graph = QGraph(ops=ops, qparams={}, input_shape=tuple(input_shape), output=output_name)
    graph.tensors = {op.output: tensors[op.output] for op in ops}
    return graph


def _flattens_from_dim_1(node: fx.Node, module: nn.Module | None) -> bool:
    """``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.flatten(1)`` or ``x.view(n, -1)``."""
    if isinstance(module, nn.Flatten):
        return bool(module.start_dim == 1 and module.end_dim == -1)
    if node.op == "call_module":
        return False
    if node.target in (torch.flatten, "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return bool(start == 1 and end == -1)
    return bool(node.target in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1)


def _check_domain(op: QOp, quantized: bool, ops: list[QOp]) -> None:
    """Mark ``op`` quantized or exact and check that its kind and inputs allow it."""
    op.quantized = quantized
    what = op.layer or op.name
    if not quantized and op.kind not in EXACT_KINDS:
        raise ConfigError(
            f"layer {what!r} ({op.kind}) only feeds an integer computation (such as token ids); "
            "int8 quantization carries such tensors exactly through element-wise arithmetic and "
            "data movement only"
        )
    if quantized and op.kind not in (*FLOAT_ISLANDS, "input", "constant"):
        exact_inputs = [o.output for o in ops if o.output in op.inputs and not o.quantized]
        if exact_inputs:
            raise ConfigError(
                f"layer {what!r} ({op.kind}) reads the integer tensor {exact_inputs[0]!r}; "
                "int8 quantization reads integer tensors only in embeddings and float operations"
            )

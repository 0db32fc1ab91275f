"""Rewrite the float ONNX graph of a model with :class:`Int8Linear` layers into int8 linear ops.

The model is first exported in float with each int8 linear layer replaced by a float ``nn.Linear``
of the same name; then each ``Gemm`` reading that layer's weight becomes:

- dynamic: ``DynamicQuantizeLinear → MatMulInteger → Cast → Mul (S_x·S_w) → Add (bias)``, which
  ONNX Runtime fuses into ``DynamicQuantizeMatMul``;
- weight-only: ``DequantizeLinear (int8 weight, per-channel scale) → Gemm``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch import nn

from slimkit.errors import ExportError
from slimkit.techniques.quantize.dynamic import Int8Linear


def float_twin(model: nn.Module) -> tuple[nn.Module, dict[str, Int8Linear]]:
    """A float copy (each :class:`Int8Linear` → ``nn.Linear`` with its dequantized weight)."""
    twin = copy.deepcopy(model)
    layers: dict[str, Int8Linear] = {}
    for parent_name, parent in list(twin.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Int8Linear):
                linear = nn.Linear(
                    child.in_features, child.out_features, bias=child.bias is not None
                )
                linear.weight.data.copy_(child.dequantized_weight())
                if child.bias is not None:
                    linear.bias.data.copy_(child.bias.detach())
                setattr(parent, child_name, linear)
                layers[f"{parent_name}.{child_name}" if parent_name else child_name] = child
    return twin, layers


def rewrite_linear_layers(proto: Any, layers: dict[str, Int8Linear]) -> Any:
    """Replace the Gemm of every layer in ``layers`` (found by its weight's name), in place."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    new_nodes = []
    done = set()
    for node in graph.node:
        name = next(
            (
                n
                for n in layers
                if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] == f"{n}.weight"
            ),
            None,
        )
        if name is None:
            new_nodes.append(node)
            continue
        layer = layers[name]
        attrs = {a.name: a.i for a in node.attribute}
        if attrs.get("transA", 0) != 0 or attrs.get("transB", 0) != 1:
            raise ExportError(
                f"layer {name!r}: unexpected Gemm layout {attrs} in the exported graph"
            )
        prefix = name.replace(".", "_")
        x, out = node.input[0], node.output[0]
        scale = layer.weight_scale.numpy().astype(np.float32)
        weight_q = layer.weight_int8.numpy()
        graph.initializer.remove(initializers[node.input[1]])
        added = []
        if layer.mode == "weight_only":
            added.append(numpy_helper.from_array(weight_q, f"{prefix}_weight_q"))
            added.append(numpy_helper.from_array(scale, f"{prefix}_weight_scale"))
            # symmetric int8 weights: the zero point is 0, DequantizeLinear's default
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{prefix}_weight_q", f"{prefix}_weight_scale"],
                    [f"{prefix}_weight"],
                    axis=0,
                    name=f"{prefix}_dequantize_weight",
                )
            )
            inputs = [x, f"{prefix}_weight", *node.input[2:]]
            new_nodes.append(helper.make_node("Gemm", inputs, [out], transB=1, name=node.name))
        else:
            added.append(
                numpy_helper.from_array(np.ascontiguousarray(weight_q.T), f"{prefix}_weight_q_t")
            )
            added.append(numpy_helper.from_array(scale, f"{prefix}_weight_scale"))
            new_nodes += [
                helper.make_node(
                    "DynamicQuantizeLinear",
                    [x],
                    [f"{prefix}_x_q", f"{prefix}_x_scale", f"{prefix}_x_zero_point"],
                    name=f"{prefix}_quantize_input",
                ),
                helper.make_node(
                    "MatMulInteger",
                    # b_zero_point left out: 0 (symmetric int8 weights) is its default
                    [f"{prefix}_x_q", f"{prefix}_weight_q_t", f"{prefix}_x_zero_point"],
                    [f"{prefix}_acc"],
                    name=f"{prefix}_matmul",
                ),
                helper.make_node(
                    "Cast", [f"{prefix}_acc"], [f"{prefix}_acc_f"], to=1, name=f"{prefix}_cast"
                ),
                helper.make_node(
                    "Mul",
                    [f"{prefix}_x_scale", f"{prefix}_weight_scale"],
                    [f"{prefix}_scale"],
                    name=f"{prefix}_scale_product",
                ),
            ]
            if len(node.input) > 2 and node.input[2]:
                new_nodes += [
                    helper.make_node(
                        "Mul",
                        [f"{prefix}_acc_f", f"{prefix}_scale"],
                        [f"{prefix}_y"],
                        name=f"{prefix}_rescale",
                    ),
                    helper.make_node(
                        "Add", [f"{prefix}_y", node.input[2]], [out], name=f"{prefix}_bias"
                    ),
                ]
            else:
                new_nodes.append(
                    helper.make_node(
                        "Mul",
                        [f"{prefix}_acc_f", f"{prefix}_scale"],
                        [out],
                        name=f"{prefix}_rescale",
                    )
                )
        graph.initializer.extend(added)
        done.add(name)
    missing = sorted(set(layers) - done)
    if missing:
        raise ExportError(
            f"int8 linear layer(s) {missing} were not found as Gemm nodes in the exported graph"
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    # value_info of tensors that are gone (the float weights) only takes room in the file
    known = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    stale = [info for info in graph.value_info if info.name not in known]
    for info in stale:
        graph.value_info.remove(info)
    return proto

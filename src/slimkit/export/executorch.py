"""Export to ExecuTorch ``.pte`` lowered to the XNNPACK backend (fp32, or int8 from a PT2E graph).

The path is ExecuTorch's own: ``torch.export`` at a fixed batch size →
``to_edge_transform_and_lower`` with ``XnnpackPartitioner`` → ``to_executorch``. Whatever XNNPACK
does not take stays as a portable ExecuTorch kernel; the result's ``delegation`` lists both, read
from the lowered edge graph, and a warning is logged for anything left outside.

Why a fixed batch: with a dynamic batch, ExecuTorch 1.5 keeps ``flatten`` (a ``view_copy`` with a
symbolic size) outside the delegate, splitting the graph in two partitions, and after XNNPACK
lowering of a convolution it planned the input for 15 samples whatever the bound (measured on
LeNet-5). Export one file per batch size; the runner runs other batch sizes in several calls.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import MissingDependencyError
from slimkit.export.edge import (
    EdgeExportResult,
    check_batch_size,
    convert_or_raise,
    eval_mode,
    example_input,
    finish_export,
    slimkit_int8_as_pt2e,
)
from slimkit.export.edge import write_bytes as _write_bytes
from slimkit.export.pt2e import quantizer_label
from slimkit.export.registry import register_exporter
from slimkit.io import write_atomic
from slimkit.runtime.delegation import DelegationReport, count_names
from slimkit.runtime.pte_probe import file_digest, mark_verified


def _import_exir() -> tuple[Any, Any]:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as error:
        raise MissingDependencyError(
            'exporting to ExecuTorch needs ExecuTorch: pip install "slimkit[executorch]"'
        ) from error
    return to_edge_transform_and_lower, XnnpackPartitioner


def _op_name(node: torch.fx.Node) -> str:
    """``executorch_exir_dialects_edge__ops_aten_addmm_default`` → ``aten.addmm.default``."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return f"{schema.name.replace('::', '.')}.{schema.overload_name or 'default'}"
    return name


def edge_delegation(edge_program: Any) -> DelegationReport:
    """Operators inside XNNPACK partitions and left outside, from a lowered edge program."""
    module = edge_program.exported_program().graph_module
    inside: list[str] = []
    outside: list[str] = []
    partitions = 0
    for node in module.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is torch.ops.higher_order.executorch_call_delegate:
            partitions += 1
            lowered = getattr(module, str(node.args[0].target))
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and "getitem" not in str(inner.target):
                    inside.append(_op_name(inner))
        elif "getitem" not in str(node.target):
            outside.append(_op_name(node))
    return DelegationReport(
        backend="XNNPACK",
        delegated=count_names(inside),
        outside=count_names(outside),
        partitions=partitions,
        notes=("from the lowered edge graph (aten operator names)",),
    )


@register_exporter("pte", suffix=".pte")
def export_executorch(
    model: nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    metadata: dict[str, Any] | None = None,
) -> EdgeExportResult:
    """Write ``model`` as an ExecuTorch program lowered to XNNPACK, for one batch size.

    Args:
        model: a plain float model, a slimkit int8 ``QuantizedModel`` (its own scales), or a
            quantized PT2E graph from :func:`slimkit.export.pt2e.quantize_pt2e`
            (exported as int8).
        path: the ``.pte`` file to write.
        input_shape: one sample's shape (C, H, W).
        batch_size: the file's fixed batch size.
        metadata: accepted for a uniform interface; a ``.pte`` has no place for it (ignored).

    Returns:
        The file, its batch size, the quantizer label (None for fp32) and the delegation report.

    Example:
        >>> export(model, "lenet5-b64.pte", format="pte", batch_size=64)  # doctest: +SKIP
    """
    batch_size = check_batch_size(batch_size)
    to_edge_transform_and_lower, partitioner = _import_exir()
    model = slimkit_int8_as_pt2e(model)
    quantizer = quantizer_label(model)
    if quantizer is not None:
        from torchao.quantization.pt2e.constant_fold import constant_fold
        from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

        # XNNPACK's int8 patterns want int8 weight constants: fold the weights' quantize nodes
        model = copy.deepcopy(model)
        constant_fold(model, _quant_node_constraint)
    example = example_input(input_shape, batch_size)
    with eval_mode(model):
        program = convert_or_raise(
            "ExecuTorch", model, lambda: torch.export.export(model, (example,))
        )
    edge = convert_or_raise(
        "ExecuTorch",
        model,
        lambda: to_edge_transform_and_lower(program, partitioner=[partitioner()]),
    )
    delegation = edge_delegation(edge)
    executorch_program = convert_or_raise("ExecuTorch", model, edge.to_executorch)
    write_atomic(path, lambda tmp: _write_bytes(tmp, executorch_program.buffer))
    mark_verified([file_digest(path)])  # ExecuTorch wrote it here: runners need not probe it
    return finish_export(
        model,
        path,
        fmt="pte",
        batch_size=batch_size,
        quantizer=quantizer,
        delegation=delegation,
    )

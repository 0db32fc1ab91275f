"""Export a :class:`~slimkit.techniques.quantize.QuantizedModel` to ONNX in QDQ form.

Every quantized tensor is written as ``QuantizeLinear → DequantizeLinear`` with slimkit's own
scale and zero point; weights are stored as int8 initializers (per-channel scales on axis 0) and
biases as int32 initializers with scale ``S_x · S_w``, each read through ``DequantizeLinear``.
ONNX Runtime recognises these patterns and fuses them into integer kernels (``QLinearConv``,
``QGemm``, ``QLinearAdd``, ...); :func:`optimized_op_types` shows what it ran.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.errors import ExportError
from slimkit.export.registry import ExportResult
from slimkit.io import write_atomic
from slimkit.techniques.quantize.graph import QOp
from slimkit.techniques.quantize.model import QuantizedModel, bias_scale
from slimkit.techniques.quantize.reference import integer_bias, integer_weight
from slimkit.techniques.quantize.scheme import QParams

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 19


class _Builder:
    def __init__(self, model: QuantizedModel) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper, self.TensorProto = (
            onnx,
            helper,
            numpy_helper,
            TensorProto,
        )
        self.graph = model.graph
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()
        self.quantized: dict[str, tuple[str, str, str]] = {}  # tensor → (q, scale, zero point)

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def constant(self, base: str, value: np.ndarray) -> str:
        name = self.unique(base)
        self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def zero_point(self, base: str, params: QParams, values: np.ndarray | None = None) -> str:
        dtype = np.uint8 if params.dtype == "uint8" else np.int8
        z = params.zero_point if values is None else values
        array = z.astype(dtype) if params.per_channel else np.array(int(z[0]), dtype=dtype)
        return self.constant(base, array)

    def scale(self, base: str, params: QParams) -> str:
        s = params.scale.astype(np.float32)
        return self.constant(
            base, s if params.per_channel else np.array(float(s[0]), dtype=np.float32)
        )

    def node(self, op_type: str, inputs: list[str], output_base: str, **attrs: Any) -> str:
        out = self.unique(output_base)
        self.nodes.append(
            self.helper.make_node(
                op_type, inputs, [out], name=self.unique(f"{op_type}_{output_base}"), **attrs
            )
        )
        return out

    def qdq(self, tensor: str, float_name: str, params: QParams) -> None:
        """Mark ``float_name`` as quantized with ``params``; consumers read it via :meth:`read`."""
        s, z = (
            self.scale(f"{tensor}_scale", params),
            self.zero_point(f"{tensor}_zero_point", params),
        )
        self.quantized[tensor] = (float_name, s, z)

    def read(self, tensor: str) -> str:
        """A dedicated QuantizeLinear → DequantizeLinear pair of ``tensor`` for one consumer.

        ONNX Runtime fuses a node with the Q/DQ around it into an integer kernel only when the pair
        belongs to that node alone (and converts int8 activations to uint8 pair by pair on x86).
        """
        source, s, z = self.quantized[tensor]
        q = self.node("QuantizeLinear", [source, s, z], f"{tensor}_q")
        return self.node("DequantizeLinear", [q, s, z], f"{tensor}_dq")

    def weight(self, op: QOp) -> str:
        assert op.weight_qparams is not None
        w = self.constant(f"{op.name}_weight_q", integer_weight(op).astype(np.int8))
        s = self.scale(f"{op.name}_weight_scale", op.weight_qparams)
        z = self.zero_point(f"{op.name}_weight_zero_point", op.weight_qparams)
        attrs = {"axis": 0} if op.weight_qparams.per_channel else {}
        return self.node("DequantizeLinear", [w, s, z], f"{op.name}_weight", **attrs)

    def bias(self, op: QOp, input_params: QParams) -> str:
        b = self.constant(f"{op.name}_bias_q", integer_bias(op, input_params).astype(np.int32))
        scale = bias_scale(op, input_params).astype(np.float32)
        s = self.constant(f"{op.name}_bias_scale", scale)
        z = self.constant(f"{op.name}_bias_zero_point", np.zeros(scale.shape, dtype=np.int32))
        return self.node("DequantizeLinear", [b, s, z], f"{op.name}_bias", axis=0)

    def activation(self, op: QOp, y: str) -> str:
        if op.activation == "relu":
            return self.node("Relu", [y], f"{op.name}_relu")
        if op.activation == "relu6":
            params = self.graph.qparams[op.output]
            low = self.constant(f"{op.name}_min", np.array(0.0, dtype=np.float32))
            high = self.constant(f"{op.name}_max", np.array(6.0, dtype=np.float32))
            del params
            return self.node("Clip", [y, low, high], f"{op.name}_relu6")
        return y

    def build(self) -> Any:
        helper, TensorProto = self.helper, self.TensorProto
        g = self.graph
        for op in g.ops:
            params = g.qparams[op.output]
            if op.kind == "input":
                self.names.add(INPUT_NAME)
                self.qdq(op.output, INPUT_NAME, params)
                continue
            x = self.read(op.inputs[0])
            if op.kind == "conv":
                a = op.attrs
                inputs = [x, self.weight(op)]
                if op.bias is not None:
                    inputs.append(self.bias(op, g.qparams[op.inputs[0]]))
                pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
                y = self.node(
                    "Conv",
                    inputs,
                    op.name,
                    strides=a["stride"],
                    pads=pads,
                    dilations=a["dilation"],
                    group=a["groups"],
                    kernel_shape=list(op.weight.shape[2:]) if op.weight is not None else None,
                )
                self.qdq(op.output, self.activation(op, y), params)
            elif op.kind == "linear":
                inputs = [x, self.weight(op)]
                if op.bias is not None:
                    inputs.append(self.bias(op, g.qparams[op.inputs[0]]))
                y = self.node("Gemm", inputs, op.name, transB=1)
                self.qdq(op.output, self.activation(op, y), params)
            elif op.kind == "add":
                y = self.node("Add", [x, self.read(op.inputs[1])], op.name)
                self.qdq(op.output, self.activation(op, y), params)
            elif op.kind == "maxpool":
                a = op.attrs
                pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
                y = self.node(
                    "MaxPool",
                    [x],
                    op.name,
                    kernel_shape=a["kernel"],
                    strides=a["stride"],
                    pads=pads,
                )
                self.qdq(op.output, y, params)
            elif op.kind == "avgpool":
                a = op.attrs
                pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
                y = self.node(
                    "AveragePool",
                    [x],
                    op.name,
                    kernel_shape=a["kernel"],
                    strides=a["stride"],
                    pads=pads,
                    count_include_pad=1,
                )
                self.qdq(op.output, y, params)
            elif op.kind == "adaptive_avgpool":
                y = self.node("GlobalAveragePool", [x], op.name)
                self.qdq(op.output, y, params)
            elif op.kind == "flatten":
                y = self.node("Flatten", [x], op.name, axis=1)
                self.qdq(op.output, y, params)
            elif op.kind == "relu":
                y = (
                    self.node("Relu", [x], op.name)
                    if op.activation == "relu"
                    else self.activation(op, x)
                )
                self.qdq(op.output, y, params)
            else:  # pragma: no cover
                raise ExportError(f"no QDQ pattern for {op.kind}")
        final = self.read(g.output)
        self.nodes.append(helper.make_node("Identity", [final], [OUTPUT_NAME], name="output"))
        shape = ["batch", *g.input_shape]
        graph = helper.make_graph(
            self.nodes,
            "slimkit_int8",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", None])],
            self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slimkit"
        )
        model.ir_version = 9
        self.onnx.checker.check_model(model)
        return model


def export_onnx_qdq(
    model: QuantizedModel, path: Path, *, metadata: dict[str, Any] | None = None
) -> ExportResult:
    """Write ``model`` as a QDQ ONNX file carrying slimkit's scales and zero points."""
    import onnx

    try:
        proto = _Builder(model).build()
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the int8 ONNX graph is invalid: {error}") from error
    props = {str(k): str(v) for k, v in (metadata or {}).items()}
    spec = getattr(model, "slimkit_spec", None)
    if spec is not None:
        props.setdefault("slimkit.model_spec", json.dumps(spec.to_dict()))
    props["slimkit.input_shape"] = json.dumps(list(model.graph.input_shape))
    props["slimkit.quantization"] = json.dumps({"activation_dtype": model.graph.activation_dtype})
    onnx.helper.set_model_props(proto, props)
    write_atomic(path, lambda tmp: onnx.save_model(proto, str(tmp)))
    size = path.stat().st_size
    logger.info("exported int8 QDQ model to %s (%d bytes)", path, size)
    return ExportResult(path=path, format="onnx", file_bytes=size)


def optimized_op_types(path: str | Path) -> dict[str, int]:
    """Op types (with counts) of the graph ONNX Runtime actually runs after its optimizations."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        optimized = str(Path(folder) / "optimized.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = optimized
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(optimized).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts

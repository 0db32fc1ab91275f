"""Export a :class:`~slimkit.techniques.quantize.QuantizedModel` to ONNX in QDQ form.

Every quantized tensor is written as ``QuantizeLinear → DequantizeLinear`` with slimkit's own
scale and zero point; weights are stored as int8 initializers (per-channel scales on axis 0) and
biases as int32 initializers with scale ``S_x · S_w``, each read through ``DequantizeLinear``.
ONNX Runtime recognises these patterns and fuses them into integer kernels (``QLinearConv``,
``QGemm``, ``QLinearAdd``, ...); :func:`optimized_op_types` shows what it ran.

Attention, embedding and channel-shuffle models add data movement, matrix products of two
activations and float islands between Q/DQ pairs (:mod:`slimkit.export.onnx_qdq_ops`).

The file is kept small without changing a number: zero points of 0 are left out where ONNX Runtime
still fuses without them, per-tensor scales are scalars, equal constants are stored once, and names
are short (only compute nodes carry a name: the layer's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.errors import ExportError
from slimkit.export.onnx_qdq_ops import emit_op
from slimkit.export.registry import ExportResult
from slimkit.io import write_atomic
from slimkit.techniques.quantize.graph import QOp
from slimkit.techniques.quantize.model import CNN_KINDS, QuantizedModel
from slimkit.techniques.quantize.reference import integer_bias, integer_weight
from slimkit.techniques.quantize.scheme import QParams

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 19


class _Builder:
    """Builds the QDQ graph; names are short and equal constants are stored once (file size)."""

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
        self.constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self.quantized: dict[str, tuple[str, str, str]] = {}  # tensor → (q, scale, zero point)
        self.stored: dict[str, tuple[str, str, str]] = {}  # int8 constant → (ints, scale, zp)
        self.raw: dict[str, str] = {}  # exact tensor (token ids) → its ONNX name
        self.index = {op.output: i for i, op in enumerate(model.graph.ops)}

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def constant(self, base: str, value: np.ndarray) -> str:
        """An initializer holding ``value``; an equal one already written is reused."""
        key = (value.dtype.str, value.shape, value.tobytes())  # tobytes: C order, any layout
        if key not in self.constants:
            name = self.unique(base)
            self.initializers.append(self.numpy_helper.from_array(value, name))
            self.constants[key] = name
        return self.constants[key]

    def zero_point(self, base: str, params: QParams) -> str:
        dtype = np.uint8 if params.dtype == "uint8" else np.int8
        z = params.zero_point
        array = z.astype(dtype) if params.per_channel else np.array(int(z[0]), dtype=dtype)
        return self.constant(base, array)

    def scale(self, base: str, params: QParams) -> str:
        s = params.scale.astype(np.float32)
        return self.constant(
            base, s if params.per_channel else np.array(float(s[0]), dtype=np.float32)
        )

    def node(
        self,
        op_type: str,
        inputs: list[str],
        output_base: str,
        name: str | None = None,
        **attrs: Any,
    ) -> str:
        """Append a node and return its output's name; only compute nodes carry a name."""
        out = self.unique(output_base)
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def qdq(self, tensor: str, float_name: str, params: QParams) -> None:
        """Mark ``float_name`` as quantized with ``params``; consumers read it via :meth:`read`."""
        i = self.index[tensor]
        self.quantized[tensor] = (
            float_name,
            self.scale(f"s{i}", params),
            self.zero_point(f"z{i}", params),
        )

    def read(self, tensor: str) -> str:
        """A dedicated QuantizeLinear → DequantizeLinear pair of ``tensor`` for one consumer.

        ONNX Runtime fuses a node with the Q/DQ around it into an integer kernel only when the pair
        belongs to that node alone (and converts int8 activations to uint8 pair by pair on x86).
        The activation zero point stays even when it is 0: its type sets QuantizeLinear's output
        type. A constant is stored as integers and only dequantized; an exact tensor is read as
        it is.
        """
        if tensor in self.raw:
            return self.raw[tensor]
        i = self.index[tensor]
        if tensor in self.stored:
            stored, s, z = self.stored[tensor]
            return self.node("DequantizeLinear", [stored, s, z], f"d{i}")
        source, s, z = self.quantized[tensor]
        q = self.node("QuantizeLinear", [source, s, z], f"q{i}")
        return self.node("DequantizeLinear", [q, s, z], f"d{i}")

    def rank(self, tensor: str) -> int:
        """Number of dimensions of an IR tensor (2 when the graph does not record it)."""
        meta = self.graph.tensors.get(tensor)
        return meta.rank if meta is not None else 2

    def requantized(self, name: str, params: QParams, i: int) -> str:
        """``name`` through its own QuantizeLinear → DequantizeLinear pair with ``params``."""
        s, z = self.scale(f"s{i}", params), self.zero_point(f"z{i}", params)
        q = self.node("QuantizeLinear", [name, s, z], f"q{i}")
        return self.node("DequantizeLinear", [q, s, z], f"d{i}")

    def weight(self, op: QOp, i: int) -> str:
        """``DequantizeLinear`` of the int8 weight.

        A zero point of all zeros (symmetric weights) is left out for ``Conv``, which ONNX Runtime
        still fuses into ``QLinearConv``; its ``QGemm`` fusion needs the zero point written out.
        """
        params = op.weight_qparams
        assert params is not None
        w = self.constant(f"w{i}", integer_weight(op).astype(np.int8))
        inputs = [w, self.scale(f"w{i}s", params)]
        if op.kind != "conv" or np.any(params.zero_point != 0):
            z = params.zero_point.astype(np.int8)
            inputs.append(self.constant(f"w{i}z", z if params.per_channel else z[:1].reshape(())))
        attrs: dict[str, Any] = {"axis": 0} if params.per_channel else {}
        return self.node("DequantizeLinear", inputs, f"w{i}f", **attrs)

    def bias(self, op: QOp, i: int, input_params: QParams) -> str:
        """``DequantizeLinear`` of the int32 bias (zero point 0, left out: it is the default).

        Its scale ``S_x · S_w`` is a ``Mul`` of the two scales already in the file rather than
        one more stored vector (ONNX Runtime folds it at load, before fusing; a depthwise layer
        would otherwise store three per-channel vectors beside nine weight bytes per channel).
        """
        b = self.constant(f"b{i}", integer_bias(op, input_params).astype(np.int32))
        params = op.weight_qparams
        assert params is not None
        x_scale = self.scale(f"b{i}x", input_params)  # the input's, stored once (equal values)
        w_scale = self.scale(f"w{i}s", params)
        s = self.node("Mul", [x_scale, w_scale], f"b{i}s")
        attrs: dict[str, Any] = {"axis": 0} if params.per_channel else {}
        return self.node("DequantizeLinear", [b, s], f"b{i}f", **attrs)

    def activation(self, op: QOp, i: int, y: str) -> str:
        if op.activation == "relu":
            params = self.graph.qparams[op.output]
            if int(params.zero_point[0]) == params.qmin:
                # quantizing clamps at the zero point, which is already the lowest level:
                # the ReLU changes no number (ONNX Runtime removes it the same way)
                return y
            return self.node("Relu", [y], f"r{i}")
        if op.activation == "relu6":
            low = self.constant("zero", np.array(0.0, dtype=np.float32))
            high = self.constant("six", np.array(6.0, dtype=np.float32))
            return self.node("Clip", [y, low, high], f"r{i}")
        return y

    def build(self) -> Any:
        helper, TensorProto = self.helper, self.TensorProto
        g = self.graph
        self.names.update({INPUT_NAME, OUTPUT_NAME})
        for i, op in enumerate(g.ops):
            if op.kind == "input" and not op.quantized:
                self.raw[op.output] = INPUT_NAME
                continue
            if (
                op.kind not in (*CNN_KINDS, "input")
                or not op.quantized
                or (op.kind == "linear" and self.rank(op.inputs[0]) > 2)
            ):
                emit_op(self, i, op)
                continue
            params = g.qparams[op.output]
            if op.kind == "input":
                self.qdq(op.output, INPUT_NAME, params)
                continue
            x = self.read(op.inputs[0])
            y_name = f"y{i}"
            if op.kind == "conv":
                a = op.attrs
                inputs = [x, self.weight(op, i)]
                if op.bias is not None:
                    inputs.append(self.bias(op, i, g.qparams[op.inputs[0]]))
                pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
                # attributes at ONNX's defaults are left out (kernel_shape comes from W)
                conv_attrs = {
                    key: value
                    for key, value, default in (
                        ("strides", list(a["stride"]), [1, 1]),
                        ("pads", pads, [0, 0, 0, 0]),
                        ("dilations", list(a["dilation"]), [1, 1]),
                        ("group", a["groups"], 1),
                    )
                    if value != default
                }
                y = self.node("Conv", inputs, y_name, name=op.name, **conv_attrs)
                self.qdq(op.output, self.activation(op, i, y), params)
            elif op.kind == "linear":
                inputs = [x, self.weight(op, i)]
                if op.bias is not None:
                    inputs.append(self.bias(op, i, g.qparams[op.inputs[0]]))
                y = self.node("Gemm", inputs, y_name, name=op.name, transB=1)
                self.qdq(op.output, self.activation(op, i, y), params)
            elif op.kind == "add":
                y = self.node("Add", [x, self.read(op.inputs[1])], y_name, name=op.name)
                self.qdq(op.output, self.activation(op, i, y), params)
            elif op.kind == "maxpool":
                a = op.attrs
                pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
                y = self.node(
                    "MaxPool",
                    [x],
                    y_name,
                    name=op.name,
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
                    y_name,
                    name=op.name,
                    kernel_shape=a["kernel"],
                    strides=a["stride"],
                    pads=pads,
                    count_include_pad=1,
                )
                self.qdq(op.output, y, params)
            elif op.kind == "adaptive_avgpool":
                y = self.node("GlobalAveragePool", [x], y_name, name=op.name)
                self.qdq(op.output, y, params)
            elif op.kind == "flatten":
                y = self.node("Flatten", [x], y_name, name=op.name, axis=1)
                self.qdq(op.output, y, params)
            elif op.kind == "relu":
                y = (
                    self.node("Relu", [x], y_name, name=op.name)
                    if op.activation == "relu"
                    else self.activation(op, i, x)
                )
                self.qdq(op.output, y, params)
            else:  # pragma: no cover
                raise ExportError(f"no QDQ pattern for {op.kind}")
        # the last DequantizeLinear writes the graph output itself (no Identity node)
        source, s, z = self.quantized[g.output]
        q = self.node("QuantizeLinear", [source, s, z], f"q{self.index[g.output]}")
        self.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [OUTPUT_NAME]))
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

    from slimkit.threads import onnxruntime_options

    with tempfile.TemporaryDirectory() as folder:
        optimized = str(Path(folder) / "optimized.onnx")
        options = onnxruntime_options(ort)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = optimized
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(optimized).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts

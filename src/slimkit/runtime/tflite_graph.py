"""Read a ``.tflite`` file's graph: its operators, its tensors, and the PyTorch layers behind them.

The TFLite Micro runtime, its memory probe, its operator check and its firmware exporter all need
the same facts about a file: which builtin operators it uses, which tensors are constants (they
live in flash with the model) and which are activations (they live in the RAM arena), and their
shapes, types and int8 scales. :func:`read_tflite_graph` parses the flatbuffer with the schema
that ships in ``tflite-micro`` and returns them as plain dataclasses.

litert-torch names each tensor after the module that produced it
(``pkg.LeNet5/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_0;``);
:func:`layer_of` turns that back into the PyTorch layer path (``features.0 (Conv2d)``) so that
errors can name the layer a user wrote.

Example:
    >>> graph = read_tflite_graph("lenet5-int8.tflite")  # doctest: +SKIP
    >>> graph.operator_names()  # doctest: +SKIP
    ['RESHAPE', 'DEPTHWISE_CONV_2D', 'MAX_POOL_2D', 'CONV_2D', 'TRANSPOSE', 'FULLY_CONNECTED']
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.errors import MissingDependencyError, RuntimeLoadError

TFLITE_IDENTIFIER = b"TFL3"
INSTALL_HINT = 'pip install "slimkit[litert]"'

# bytes per element of each TFLite tensor type this reader sizes (others count as 0: unsized)
ITEM_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "FLOAT64": 8,
    "INT32": 4,
    "UINT32": 4,
    "INT64": 8,
    "UINT64": 8,
    "INT16": 2,
    "UINT16": 2,
    "INT8": 1,
    "UINT8": 1,
    "BOOL": 1,
}


def import_tflite_micro_schema() -> Any:
    """The TFLite flatbuffer schema module of ``tflite-micro``, or MissingDependencyError."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
    except ImportError as error:
        raise MissingDependencyError(
            f"TFLite Micro (tflite-micro) is not installed; install it with: {INSTALL_HINT}"
        ) from error
    return schema_py_generated


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph.

    Attributes:
        index: its index in the subgraph.
        name: the converter's name for it.
        shape: its shape (``()`` for a scalar).
        dtype: the TFLite type name (``INT8``, ``FLOAT32``, ...).
        nbytes: bytes of its data (elements × element size).
        constant: True when its data is stored in the file (weights, biases, shape vectors).
        scales: quantization scales (empty for float tensors).
        zero_points: quantization zero points (empty for float tensors).
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    constant: bool
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()


@dataclass(frozen=True)
class OperatorInfo:
    """One operator of the graph: its builtin name, tensors, and the layer it comes from."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    layer: str


@dataclass(frozen=True)
class TFLiteGraph:
    """The main subgraph of a ``.tflite`` file."""

    path: Path
    model_bytes: int
    operators: tuple[OperatorInfo, ...]
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int

    def operator_names(self) -> list[str]:
        """The distinct builtin operators, in order of first use."""
        return list(dict.fromkeys(op.name for op in self.operators))

    def activations(self) -> list[TensorInfo]:
        """Tensors that are not constants: the graph inputs, outputs and intermediate results."""
        used = {t for op in self.operators for t in (*op.inputs, *op.outputs)}
        used |= set(self.inputs) | set(self.outputs)
        return [t for t in self.tensors if not t.constant and t.index in used]

    def is_float(self) -> bool:
        """True when any activation is floating point (the model is not integer-only)."""
        return any(t.dtype.startswith("FLOAT") for t in self.activations())


def layer_of(tensor_name: str) -> str | None:
    """The PyTorch layer path of a litert-torch tensor name, or None if it names no layer.

    A name holds one or more ``;``-separated scopes; each scope is a ``/``-separated list of
    modules, each written ``qualified.ClassName_attribute`` after the root. Fused operators list
    several scopes (ReLU first, then the convolution it was fused into): they are joined with
    ``+`` in execution order.

    Example:
        >>> layer_of("m.Net/torch.nn.modules.container.Sequential_features/"
        ...          "torch.nn.modules.conv.Conv2d_0;")
        'features.0 (Conv2d)'
    """
    layers: list[str] = []
    for scope in tensor_name.split(";"):
        parts = scope.split("/")
        if len(parts) < 2 or scope.startswith("torch.export"):
            continue
        attributes, kind = [], ""
        for part in parts[1:]:
            kind, _, attribute = part.rsplit(".", 1)[-1].partition("_")
            attributes.append(attribute or kind)
        layers.append(f"{'.'.join(attributes)} ({kind})")
    return " + ".join(reversed(list(dict.fromkeys(layers)))) or None


def _enum_names(enum_class: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _parse(data: bytes) -> Any:
    schema = import_tflite_micro_schema()
    model = schema.Model.GetRootAsModel(bytearray(data), 0)
    return schema, schema.ModelT.InitFromObj(model)


def read_tflite_graph(path: str | os.PathLike[str]) -> TFLiteGraph:
    """Parse the main subgraph of a ``.tflite`` file.

    Raises:
        RuntimeLoadError: the file is missing, not a ``.tflite`` file, or corrupt (one line).
        MissingDependencyError: ``tflite-micro`` (which ships the schema) is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise RuntimeLoadError(f"tflite-micro: model file {path} does not exist")
    data = path.read_bytes()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise RuntimeLoadError(
            f"tflite-micro: {path} is not a .tflite file (identifier {data[4:8]!r}, "
            f"expected {TFLITE_IDENTIFIER!r}); export it with format='tflite-micro'"
        )
    try:
        schema, model = _parse(data)
        subgraph = model.subgraphs[0]
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        tensors = tuple(_tensor(i, t, model, type_names) for i, t in enumerate(subgraph.tensors))
        operators = tuple(
            _operator(i, op, model, tensors, op_names)
            for i, op in enumerate(subgraph.operators if subgraph.operators is not None else [])
        )
        inputs = tuple(int(i) for i in subgraph.inputs)
        outputs = tuple(int(i) for i in subgraph.outputs)
        _check_indices(len(tensors), inputs, outputs, operators)
    except MissingDependencyError:
        raise
    except Exception as error:  # flatbuffers raises struct.error, IndexError, TypeError, ...
        text = str(error).strip().splitlines()
        raise RuntimeLoadError(
            f"tflite-micro: {path} is not a readable .tflite file (corrupt or truncated: "
            f"{type(error).__name__}: {text[0][:120] if text else ''}); export it again"
        ) from error
    return TFLiteGraph(
        path=path,
        model_bytes=len(data),
        operators=operators,
        tensors=tensors,
        inputs=inputs,
        outputs=outputs,
        subgraphs=len(model.subgraphs),
    )


def _check_indices(
    count: int,
    inputs: tuple[int, ...],
    outputs: tuple[int, ...],
    operators: tuple[OperatorInfo, ...],
) -> None:
    """Raise IndexError unless every tensor index the graph names lies in ``range(count)``
    (TFLite Micro trusts them: an index out of range crashed it, found by fuzzing)."""
    named = [("inputs", inputs), ("outputs", outputs)]
    named += [(f"operator #{op.index}", op.inputs + op.outputs) for op in operators]
    for where, indices in named:
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise IndexError(f"{where} name tensor {bad[0]} of {count}")


def _tensor(index: int, tensor: Any, model: Any, type_names: dict[int, str]) -> TensorInfo:
    shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
    dtype = type_names.get(int(tensor.type), f"TYPE_{tensor.type}")
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    constant = buffer is not None and (
        (buffer.data is not None and len(buffer.data) > 0) or int(buffer.offset or 0) > 1
    )
    quantization = tensor.quantization
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    if quantization is not None and quantization.scale is not None:
        scales = tuple(float(s) for s in quantization.scale)
        zero_point = quantization.zeroPoint
        zero_points = tuple(int(z) for z in (zero_point if zero_point is not None else []))
    return TensorInfo(
        index=index,
        name=_text(tensor.name),
        shape=shape,
        dtype=dtype,
        nbytes=math.prod(max(d, 1) for d in shape) * ITEM_BYTES.get(dtype, 0),
        constant=constant,
        scales=scales,
        zero_points=zero_points,
    )


def _operator(
    index: int,
    op: Any,
    model: Any,
    tensors: tuple[TensorInfo, ...],
    op_names: dict[int, str],
) -> OperatorInfo:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    name = op_names.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        name = f"CUSTOM:{_text(code.customCode)}"
    inputs = tuple(int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0)
    outputs = tuple(int(i) for i in (op.outputs if op.outputs is not None else []))
    layer = next((found for t in outputs if (found := layer_of(tensors[t].name))), None)
    if layer is None:  # an operator the converter added (a layout transpose): after its input
        source = next((found for t in inputs if (found := layer_of(tensors[t].name))), None)
        layer = f"after {source}" if source else None
    return OperatorInfo(
        index=index,
        name=name,
        inputs=inputs,
        outputs=outputs,
        layer=layer or f"operator #{index}",
    )


def prepare_with_litert(path: Path, runtime: str) -> dict[int, tuple[int, ...]] | None:
    """Build and prepare ``path`` in LiteRT with its builtin kernels only (no delegate); return
    the shape of every tensor as the operators compute it, or None without LiteRT installed.

    LiteRT verifies the flatbuffer and each operator's prepare checks its tensors. XNNPACK, the
    default delegate, skips some of those checks and TFLite Micro has none: fuzzing found files
    that crashed both (a reshape into a fixed-size tensor, tensor indices out of range, buffers
    shorter than their tensors), all refused here first.

    Raises:
        RuntimeLoadError: LiteRT refuses the file (one line, naming ``runtime``).
    """
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        return None
    try:
        checker = interpreter.Interpreter(
            model_path=str(path),
            num_threads=1,
            experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        checker.allocate_tensors()
        return {
            int(d["index"]): tuple(int(v) for v in d["shape"]) for d in checker.get_tensor_details()
        }
    except Exception as error:  # ValueError/RuntimeError (and UnicodeDecodeError of names)
        text = str(error).strip().splitlines()
        raise RuntimeLoadError(
            f"{runtime}: {path} is not a valid .tflite model "
            f"({text[0][:200] if text else type(error).__name__}); is the file complete and "
            "really .tflite?"
        ) from error

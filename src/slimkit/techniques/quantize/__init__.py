"""int8 quantization (Jacob et al. 2018): post-training static, quantization-aware training,
an integer-only reference executor and the IR that int8 exporters read.
"""

from slimkit.techniques.quantize.dynamic import (
    DynamicInt8Config,
    Int8Linear,
    WeightOnlyInt8Config,
    quantize_linear_layers,
)
from slimkit.techniques.quantize.graph import QGraph, QOp
from slimkit.techniques.quantize.model import QuantizedModel
from slimkit.techniques.quantize.observers import create_observer, list_observers, register_observer
from slimkit.techniques.quantize.ptq import StaticInt8Config, quantize_static
from slimkit.techniques.quantize.qat import (
    QATConfig,
    QATModel,
    convert,
    prepare_qat,
    quantization_aware_training,
)
from slimkit.techniques.quantize.reference import run_integer, run_reference
from slimkit.techniques.quantize.scheme import QParams

__all__ = [
    "DynamicInt8Config",
    "Int8Linear",
    "QATConfig",
    "QATModel",
    "QGraph",
    "QOp",
    "QParams",
    "QuantizedModel",
    "StaticInt8Config",
    "WeightOnlyInt8Config",
    "convert",
    "create_observer",
    "list_observers",
    "prepare_qat",
    "quantization_aware_training",
    "quantize_linear_layers",
    "quantize_static",
    "register_observer",
    "run_integer",
    "run_reference",
]

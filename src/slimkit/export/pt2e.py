"""int8 for LiteRT and ExecuTorch through PT2E: a runtime's own quantizer, labelled as such.

PT2E (``torch.export`` → ``prepare_pt2e`` → calibration → ``convert_pt2e``) gives a graph with
explicit quantize/dequantize nodes around float operators: the *simulated int8 model*. It runs in
PyTorch (the parity oracle for int8 files) and both edge exporters take it:
:func:`slimkit.export.executorch.export_executorch` folds the weight quantization and lowers the
int8 pattern to XNNPACK; :func:`slimkit.export.litert.export_litert` converts it to int8 TFLite
operators. The quantizer decides the scales; the exporters only carry them, whichever quantizer
made the graph, slimkit's own included.

Quantizers, by label (the label is stored on the graph as ``slimkit_quantizer``):

- ``executorch-xnnpack-pt2e``: ExecuTorch's ``XNNPACKQuantizer``, symmetric int8, per-channel
  weights, min-max observers (the ExecuTorch default).
- ``litert-pt2e``: litert-torch's ``PT2EQuantizer``, symmetric int8, per-channel weights, static.
- ``slimkit``: slimkit's own static int8 (:func:`slimkit.techniques.quantize.quantize_static`:
  its observers, CLE, bias correction), its scales carried into PT2E by
  :mod:`slimkit.export.pt2e_slimkit`; the runtimes then compute slimkit's integer model.

Example:
    >>> graph = quantize_pt2e(model, inputs, quantizer="litert-pt2e")  # doctest: +SKIP
    >>> export(graph, "m-int8.tflite", format="tflite", batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.errors import ConfigError, ExportError, MissingDependencyError, check_choice
from slimkit.logs import native_output_captured

logger = logging.getLogger(__name__)

QUANTIZER_ATTRIBUTE = "slimkit_quantizer"
MAX_BATCH = 65536


def _executorch_xnnpack_quantizer() -> Any:
    try:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
    except ImportError as error:
        raise MissingDependencyError(
            'the ExecuTorch quantizer needs ExecuTorch: pip install "slimkit[executorch]"'
        ) from error
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def litert_quantizer() -> Any:
    """litert-torch's static, symmetric, per-channel ``PT2EQuantizer``."""
    try:
        with native_output_captured("litert-torch import"):  # TensorFlow's import banners
            from litert_torch.quantize import pt2e_quantizer
    except ImportError as error:
        raise MissingDependencyError(
            'the LiteRT quantizer needs litert-torch: pip install "slimkit[litert]"'
        ) from error
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    return pt2e_quantizer.PT2EQuantizer().set_global(config)


QUANTIZERS: dict[str, Callable[[], Any]] = {
    "executorch-xnnpack-pt2e": _executorch_xnnpack_quantizer,
    "litert-pt2e": litert_quantizer,
}


SLIMKIT = "slimkit"


def list_quantizers() -> list[str]:
    """Labels of the quantizers :func:`quantize_pt2e` knows (slimkit's and the runtimes')."""
    return sorted([*QUANTIZERS, SLIMKIT])


def is_quantized_graph(model: nn.Module) -> bool:
    """True for a PT2E graph with quantize/dequantize nodes (``convert_pt2e``'s output)."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    return any(
        node.op == "call_function" and "quantized_decomposed" in str(node.target)
        for node in model.graph.nodes
    )


def quantizer_label(model: nn.Module) -> str | None:
    """The quantizer label of a PT2E graph ("pt2e" if unlabelled); None for a float model."""
    if not is_quantized_graph(model):
        return None
    return str(getattr(model, QUANTIZER_ATTRIBUTE, "pt2e"))


def _allow_train_eval(graph: torch.fx.GraphModule) -> None:
    """Let ``graph.train()``/``graph.eval()`` work and return the graph, as ``nn.Module``'s do.

    Exported graphs refuse both; torchao's ``allow_exported_model_train_eval`` allows them but
    its methods return None, and callers chain ``model.eval()`` (PyTorchRunner does).
    """
    from torchao.quantization.pt2e import (
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )

    def train(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self)
        return self

    def evaluate(self: torch.fx.GraphModule) -> torch.fx.GraphModule:
        return train(self, False)

    graph.train = types.MethodType(train, graph)  # type: ignore[method-assign]
    graph.eval = types.MethodType(evaluate, graph)  # type: ignore[method-assign]


def quantize_pt2e(
    model: nn.Module,
    calibration_data: np.ndarray | torch.Tensor,
    *,
    quantizer: str = "executorch-xnnpack-pt2e",
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 64,
    config: Any = None,
) -> torch.fx.GraphModule:
    """Post-training static int8 as a PT2E graph; returns the simulated model.

    Args:
        model: a plain float model (eval mode is used; its training flag is restored).
        calibration_data: float inputs ``(N, C, H, W)`` the observers see (a few hundred is plenty).
        quantizer: one of :func:`list_quantizers`; ``slimkit`` runs slimkit's static int8
            (``config``: a :class:`~slimkit.techniques.quantize.StaticInt8Config`, default
            min-max per channel) or takes a slimkit ``QuantizedModel`` as it is.
        input_shape: one sample's shape; defaults to the model's slimkit spec, else the data's.
        batch_size: calibration batch size.
        config: slimkit's static int8 config (``quantizer="slimkit"`` only).

    Returns:
        The converted PT2E graph (quantize/dequantize around float ops, dynamic batch). Calling it
        runs the simulated int8 model (``.eval()`` is allowed); ``slimkit_quantizer`` holds the
        quantizer label and ``slimkit_spec`` the original model's spec, if any.
    """
    check_choice("quantizer", quantizer, list_quantizers())
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    data = torch.as_tensor(np.asarray(calibration_data, dtype=np.float32))
    if data.ndim < 2 or len(data) == 0:
        raise ConfigError(
            "calibration_data must be a non-empty batch (N, C, H, W); "
            f"got shape {tuple(data.shape)}"
        )
    spec = getattr(model, "slimkit_spec", None)
    shape = tuple(input_shape or (spec.input_shape if spec is not None else data.shape[1:]))
    if tuple(data.shape[1:]) != shape:
        raise ConfigError(
            f"calibration_data samples must have shape {shape}; got {tuple(data.shape[1:])}"
        )
    if quantizer == SLIMKIT:
        from slimkit.export.pt2e_slimkit import slimkit_pt2e
        from slimkit.techniques.quantize import QuantizedModel, quantize_static

        if isinstance(model, QuantizedModel):
            return slimkit_pt2e(model)
        was_training = model.training
        try:
            quantized = quantize_static(model.eval(), data, config)
        finally:
            model.train(was_training)
        return slimkit_pt2e(quantized)
    pt2e_quantizer = QUANTIZERS[quantizer]()
    was_training = model.training
    model.eval()
    example = torch.zeros((2, *shape))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
        prepared = prepare_pt2e(graph, pt2e_quantizer)
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                prepared(data[start : start + batch_size])
        converted = convert_pt2e(prepared, fold_quantize=False)
    except Exception as error:
        raise ExportError(
            f"could not quantize {type(model).__name__} with {quantizer}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    finally:
        model.train(was_training)
    _allow_train_eval(converted)
    setattr(converted, QUANTIZER_ATTRIBUTE, quantizer)
    if spec is not None:
        setattr(converted, "slimkit_spec", spec)  # noqa: B010  (GraphModule has no such field)
    logger.info("quantized %s with %s on %d samples", type(model).__name__, quantizer, len(data))
    return converted

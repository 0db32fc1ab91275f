"""Exact parameter and multiply-accumulate (MAC) counts, per layer and in total.

Counts come from one forward pass at batch 1 with hooks on every leaf module, so they follow the
shapes the model really computes. The convention is the MobileNets paper's (Howard et al. 2017):
multiply-adds of convolutions and fully connected layers; activations, pooling, normalization,
element-wise products and additions (residuals, gates, scaling) and embedding lookups count 0 MACs
(batch norm folds into the convolution before it at deployment). Attention kernels count their
matrix products (rules in :mod:`slimkit.measure.cost_rules`). A new layer type adds its rule with
:func:`register_mac_rule` and no other edit.

Parameters are every trainable value of the model by default. The MobileNets paper leaves batch
norm out of its parameter counts (4,210,088 for MobileNet-v1 1.0-224: convolution weights and the
classifier); ``include_batchnorm=False`` counts that way.

Example:
    >>> from slimkit.models import create_model
    >>> cost = count_costs(create_model("lenet300_100"), (1, 28, 28))
    >>> cost.params
    266610
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

MacRule = Callable[[nn.Module, tuple[Any, ...], Any], int]
_MAC_RULES: dict[type[nn.Module], MacRule] = {}


def register_mac_rule(*module_types: type[nn.Module]) -> Callable[[MacRule], MacRule]:
    """Register ``rule(module, inputs, output) -> macs`` for the given module types."""

    def decorator(rule: MacRule) -> MacRule:
        for module_type in module_types:
            _MAC_RULES[module_type] = rule
        return rule

    return decorator


@register_mac_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    assert isinstance(module, nn.modules.conv._ConvNd)
    # each output element is a dot product over (C_in / groups) * prod(kernel) inputs
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return int(output.numel()) * per_output


@register_mac_rule(nn.Linear)
def _linear_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    assert isinstance(module, nn.Linear)
    return int(output.numel()) * module.in_features


@dataclass(frozen=True)
class LayerCost:
    """Cost of one leaf module at batch 1."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelCost:
    """Per-layer costs and totals; ``params`` counts every distinct parameter of the model once."""

    layers: tuple[LayerCost, ...]
    params: int
    macs: int
    include_batchnorm: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with totals and the per-layer table."""
        return {
            "params": self.params,
            "macs": self.macs,
            "include_batchnorm": self.include_batchnorm,
            "layers": [
                asdict(layer) | {"output_shape": list(layer.output_shape)} for layer in self.layers
            ],
        }


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameter values (shared parameters count once)."""
    return sum(p.numel() for p in model.parameters())


def batchnorm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine parameters (scale and shift) of every batch-norm layer of ``model``."""
    return [
        p
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    ]


def count_costs(
    model: nn.Module, input_shape: tuple[int, ...], *, include_batchnorm: bool = True
) -> ModelCost:
    """Count parameters and MACs of ``model`` for one sample of ``input_shape`` (C, H, W).

    Args:
        model: any module taking a float tensor of shape ``(1, *input_shape)``.
        input_shape: shape of one sample, without the batch dimension.
        include_batchnorm: count the scale and shift of batch-norm layers as parameters. The
            MobileNets paper does not (they fold into the convolutions); pass ``False`` to
            reproduce its counts.

    Returns:
        The per-layer table (leaf modules in call order) and totals.

    Example:
        >>> from slimkit.models import create_model
        >>> model = create_model("mobilenet_v1", input_shape=(3, 224, 224), num_classes=1000)
        >>> cost = count_costs(model, (3, 224, 224), include_batchnorm=False)
        >>> cost.macs, cost.params
        (568740352, 4210088)
    """
    rows: list[LayerCost] = []
    names = {module: name for name, module in model.named_modules()}
    excluded = set() if include_batchnorm else {id(p) for p in batchnorm_parameters(model)}
    seen: set[int] = set(excluded)

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        rule = _MAC_RULES.get(type(module))
        if rule is None:
            rule = next((r for t, r in _MAC_RULES.items() if isinstance(module, t)), None)
        macs = rule(module, inputs, output) if rule is not None else 0
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
        rows.append(
            LayerCost(
                name=names.get(module, ""),
                type=type(module).__name__,
                output_shape=shape[1:] if shape else (),
                params=sum(p.numel() for p in own),
                macs=int(macs),
            )
        )

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if not list(m.children()) or type(m) in _MAC_RULES
    ]
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters() if id(p) not in excluded)
    return ModelCost(
        layers=tuple(rows),
        params=params,
        macs=sum(r.macs for r in rows),
        include_batchnorm=include_batchnorm,
    )


# the rules of slimkit's own layers register themselves on import
from slimkit.measure import cost_rules  # noqa: E402, F401

"""Exact parameter and multiply-accumulate (MAC) counts, per layer and in total.

Counts come from one forward pass at batch 1 with hooks on every leaf module, so they follow the
shapes the model really computes. The convention is the MobileNets paper's (Howard et al. 2017):
multiply-adds of convolutions and fully connected layers; activations, pooling and batch norm
count 0 MACs (batch norm folds into the convolution before it at deployment). A new layer type adds
its rule with :func:`register_mac_rule` and no other edit.

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with totals and the per-layer table."""
        return {
            "params": self.params,
            "macs": self.macs,
            "layers": [
                asdict(layer) | {"output_shape": list(layer.output_shape)} for layer in self.layers
            ],
        }


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameter values (shared parameters count once)."""
    return sum(p.numel() for p in model.parameters())


def count_costs(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Count parameters and MACs of ``model`` for one sample of ``input_shape`` (C, H, W).

    Args:
        model: any module taking a float tensor of shape ``(1, *input_shape)``.
        input_shape: shape of one sample, without the batch dimension.

    Returns:
        The per-layer table (leaf modules in call order) and totals.
    """
    rows: list[LayerCost] = []
    names = {module: name for name, module in model.named_modules()}
    seen: set[int] = set()

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
    return ModelCost(
        layers=tuple(rows), params=count_parameters(model), macs=sum(r.macs for r in rows)
    )

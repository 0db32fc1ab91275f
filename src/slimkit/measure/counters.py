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

A quantized model counts what it stores and computes, so it reports the totals of the float model
it came from: an int8 weight is a parameter like a float one (a layer that keeps it in a buffer
names it with :func:`register_stored_weights`), and a model that runs its layers as a graph rather
than as modules (slimkit's static int8 ``QuantizedModel``) lists them with
:func:`register_layer_table`. Their rules are in :mod:`slimkit.measure.cost_rules`.

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
StoredRule = Callable[[nn.Module], list[torch.Tensor]]
TableRule = Callable[[nn.Module, tuple[Any, ...], Any], list["LayerCost"]]
_MAC_RULES: dict[type[nn.Module], MacRule] = {}
_STORED_RULES: dict[type[nn.Module], StoredRule] = {}
_TABLE_RULES: dict[type[nn.Module], TableRule] = {}


def register_mac_rule(*module_types: type[nn.Module]) -> Callable[[MacRule], MacRule]:
    """Register ``rule(module, inputs, output) -> macs`` for the given module types."""

    def decorator(rule: MacRule) -> MacRule:
        for module_type in module_types:
            _MAC_RULES[module_type] = rule
        return rule

    return decorator


def register_stored_weights(*module_types: type[nn.Module]) -> Callable[[StoredRule], StoredRule]:
    """Register ``rule(module) -> tensors``: weights a module stores outside its parameters
    (an int8 weight kept in a buffer); they count as the module's parameters."""

    def decorator(rule: StoredRule) -> StoredRule:
        for module_type in module_types:
            _STORED_RULES[module_type] = rule
        return rule

    return decorator


def register_layer_table(*module_types: type[nn.Module]) -> Callable[[TableRule], TableRule]:
    """Register ``rule(module, inputs, output) -> [LayerCost, ...]`` for a leaf module that
    computes several layers itself (an int8 graph): its rows replace the module's own row."""

    def decorator(rule: TableRule) -> TableRule:
        for module_type in module_types:
            _TABLE_RULES[module_type] = rule
        return rule

    return decorator


def _rule_for(rules: dict[type[nn.Module], Any], module: nn.Module) -> Any:
    """The rule registered for ``module``'s type, or for the nearest registered base class."""
    rule = rules.get(type(module))
    if rule is None:
        rule = next((r for t, r in rules.items() if isinstance(module, t)), None)
    return rule


def stored_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The values ``module`` itself stores as weights: its own parameters plus the tensors its
    :func:`register_stored_weights` rule names."""
    own = list(module.parameters(recurse=False))
    rule = _rule_for(_STORED_RULES, module)
    return own + (rule(module) if rule is not None else [])


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
    """Number of distinct stored weight values (shared ones count once; int8 weights count)."""
    return _total_params(model, excluded=set())


def _total_params(model: nn.Module, excluded: set[int]) -> int:
    """Every distinct parameter and stored weight of ``model`` not in ``excluded`` (by id)."""
    seen = set(excluded)
    total = 0
    for tensor in [*model.parameters(), *(t for m in model.modules() for t in stored_tensors(m))]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel()
    return total


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
        own = [t for t in stored_tensors(module) if id(t) not in seen]
        seen.update(id(t) for t in own)
        table = _rule_for(_TABLE_RULES, module)
        if table is not None:
            rows.extend(table(module, inputs, output))
            return
        rule = _rule_for(_MAC_RULES, module)
        macs = rule(module, inputs, output) if rule is not None else 0
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
        rows.append(
            LayerCost(
                name=names.get(module, ""),
                type=type(module).__name__,
                output_shape=shape[1:] if shape else (),
                params=sum(t.numel() for t in own),
                macs=int(macs),
            )
        )

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if not list(m.children()) or type(m) in _MAC_RULES or type(m) in _TABLE_RULES
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
    params = _total_params(model, excluded)
    return ModelCost(
        layers=tuple(rows),
        params=params,
        macs=sum(r.macs for r in rows),
        include_batchnorm=include_batchnorm,
    )


# the rules of slimkit's own layers register themselves on import
from slimkit.measure import cost_rules  # noqa: E402, F401

"""Hard-sigmoid and hard-swish (Howard et al. 2019, "Searching for MobileNetV3", ICCV 2019).

Piecewise-linear stand-ins for the sigmoid and for swish ``x * sigmoid(x)`` (Ramachandran et al.
2017) that cost no exponential and quantize well::

    hard_sigmoid(x) = relu6(x + 3) / 6
    hard_swish(x)   = x * relu6(x + 3) / 6

Both subclass PyTorch's own modules, so that the ONNX exporter writes the ``HardSigmoid`` and
``HardSwish`` operators and quantization tools that know ``nn.Hardswish`` recognise them.
:func:`make_activation` builds any activation of this library by name.

Example:
    >>> import torch
    >>> HardSwish()(torch.tensor([-4.0, 0.0, 1.0, 4.0])).tolist()
    [-0.0, 0.0, 0.6666666865348816, 4.0]
"""

from __future__ import annotations

from torch import nn

from slimkit.errors import check_choice

ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "gelu")


class HardSigmoid(nn.Hardsigmoid):
    """``relu6(x + 3) / 6``: a sigmoid made of three line segments (MobileNetV3)."""


class HardSwish(nn.Hardswish):
    """``x * relu6(x + 3) / 6``: swish with the sigmoid replaced by :class:`HardSigmoid`."""


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name: one of :data:`ACTIVATIONS`.

    Raises:
        ConfigError: for an unknown name.
    """
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "hardswish":
        return HardSwish()
    if name == "hardsigmoid":
        return HardSigmoid()
    if name == "sigmoid":
        return nn.Sigmoid()
    return nn.GELU()

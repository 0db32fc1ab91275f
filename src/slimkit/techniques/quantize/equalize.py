"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV).

For two layers joined by a positively homogeneous function (ReLU, max pooling, flatten, or
nothing), scaling output channel ``c`` of the first by ``1/s_c`` and the matching input channel of
the second by ``s_c`` leaves the network's function unchanged. Choosing
``s_c = sqrt(r1_c / r2_c)``, with ``r1_c`` the range of the first layer's output channel and
``r2_c`` that of the second layer's input channel, equalizes both ranges, which makes per-tensor
weight quantization far less lossy (depthwise convolutions gain the most).
"""

from __future__ import annotations

import logging

import torch

from slimkit.techniques.quantize.graph import QGraph, QOp

logger = logging.getLogger(__name__)

BETWEEN = ("maxpool", "flatten")


def _consumers(graph: QGraph) -> dict[str, list[QOp]]:
    users: dict[str, list[QOp]] = {}
    for op in graph.ops:
        for name in op.inputs:
            users.setdefault(name, []).append(op)
    return users


def equalization_pairs(graph: QGraph) -> list[tuple[QOp, QOp, bool]]:
    """``(first, second, through_flatten)`` layer pairs that can be equalized."""
    users = _consumers(graph)
    pairs = []
    for op in graph.ops:
        if op.kind not in ("conv", "linear") or op.activation == "relu6":
            continue
        tensor, flattened = op.output, False
        while True:
            consumers = users.get(tensor, [])
            if len(consumers) != 1:
                break
            nxt = consumers[0]
            if nxt.kind in BETWEEN or (nxt.kind == "relu" and nxt.activation == "relu"):
                flattened = flattened or nxt.kind == "flatten"
                tensor = nxt.output
                continue
            if nxt.kind in ("conv", "linear") and nxt.weight is not None:
                pairs.append((op, nxt, flattened))
            break
    return pairs


def _input_channel_view(second: QOp, channels: int) -> torch.Tensor:
    """The second layer's weight viewed as (out, channels, rest) over the first's channels."""
    weight = second.weight
    assert weight is not None
    if second.kind == "conv" and second.attrs["groups"] == channels and weight.shape[1] == 1:
        return weight.reshape(1, channels, -1)  # depthwise: input channel c is output channel c
    if second.kind == "conv":
        return weight.reshape(weight.shape[0], channels, -1)
    return weight.reshape(weight.shape[0], channels, -1)  # linear after flatten: (out, C, H*W)


def equalize(graph: QGraph, *, iterations: int = 3) -> int:
    """Equalize every eligible layer pair in place; returns the number of pairs.

    Iterating a few times lets scales propagate along chains of more than two layers.
    """
    pairs = equalization_pairs(graph)
    for _ in range(iterations):
        for first, second, _flattened in pairs:
            assert first.weight is not None and second.weight is not None
            channels = first.weight.shape[0]
            if second.kind == "conv" and second.attrs["groups"] not in (1, channels):
                continue
            view = _input_channel_view(second, channels)
            if second.kind == "linear" and second.weight.shape[1] % channels:
                continue
            r1 = first.weight.reshape(channels, -1).abs().amax(dim=1)
            r2 = view.abs().amax(dim=(0, 2))
            scale = torch.sqrt(r1 / r2.clamp_min(1e-12)).clamp(1e-4, 1e4)
            scale = torch.where((r1 > 0) & (r2 > 0), scale, torch.ones_like(scale))
            shape = [-1] + [1] * (first.weight.dim() - 1)
            first.weight = first.weight / scale.reshape(shape)
            if first.bias is not None:
                first.bias = first.bias / scale
            second.weight = (view * scale.reshape(1, -1, 1)).reshape(second.weight.shape)
    logger.info("cross-layer equalization: %d layer pairs", len(pairs))
    return len(pairs)

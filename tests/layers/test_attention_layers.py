"""Attention kernels against reference formulas and PyTorch's own multi-head attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError
from slimkit.layers import LinearAttention, MultiHeadAttention, SoftmaxAttention, TransformerBlock


def _qkv(length: int = 7, keys: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, length, 4, generator=generator)
    k = torch.randn(2, 3, keys, 4, generator=generator)
    v = torch.randn(2, 3, keys, 6, generator=generator)
    return q, k, v


def test_softmax_attention_equals_pytorch_sdpa() -> None:
    q, k, v = _qkv()
    expected = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(SoftmaxAttention()(q, k, v), expected, atol=1e-6)


def test_linear_attention_equals_the_quadratic_form_of_its_kernel() -> None:
    q, k, v = _qkv()
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    # reference: out_i = Σ_j sim(q_i, k_j) v_j / Σ_j sim(q_i, k_j), sim = φ(q)·φ(k), built as L x S
    similarity = phi_q @ phi_k.transpose(-2, -1)  # (N, h, L, S)
    expected = (similarity @ v) / (similarity.sum(dim=-1, keepdim=True) + 1e-6)
    assert torch.allclose(LinearAttention()(q, k, v), expected, atol=1e-5)


def test_multi_head_softmax_attention_equals_torch_multihead_attention() -> None:
    dim, heads = 16, 4
    ours = MultiHeadAttention(dim, heads, "softmax").eval()
    reference = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        # torch stacks the q, k and v projections in one (3·dim, dim) matrix, as ours does
        reference.in_proj_weight.copy_(ours.qkv.weight)
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.proj.weight)
        reference.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(3, 9, dim)
    expected, _ = reference(x, x, x, need_weights=False)
    assert torch.allclose(ours(x), expected, atol=1e-5)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_transformer_block_keeps_the_shape_and_learns(attention: str) -> None:
    block = TransformerBlock(dim=8, num_heads=2, mlp_ratio=2, attention=attention)
    x = torch.randn(2, 5, 8, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_attention_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ConfigError, match="attention must be one of softmax, linear"):
        MultiHeadAttention(8, 2, "performer")

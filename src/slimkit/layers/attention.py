"""Multi-head attention with a quadratic (softmax) or a linear kernel, and a transformer block.

Standard attention (Vaswani et al. 2017, "Attention Is All You Need") builds the ``L x L`` matrix
``softmax(Q Kᵀ / sqrt(d)) V``: time and memory grow with the square of the sequence length ``L``.
Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", ICML 2020) replaces the softmax kernel with a feature map
``φ(x) = elu(x) + 1`` and reorders the products::

    out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / (φ(q_i)ᵀ Σ_j φ(k_j))

so the ``d x d`` matrix ``Σ_j φ(k_j) v_jᵀ`` is built once and the cost is linear in ``L``.

Both kernels are written with plain matrix products (no fused operator), so that they export to
ONNX as ``MatMul`` nodes and the MAC counter sees them: the kernels are leaf modules of their own
(:class:`SoftmaxAttention`, :class:`LinearAttention`) between the ``qkv`` and ``proj`` layers.
Per head of width ``d`` over ``L`` queries and ``S`` keys the products cost ``2 L S d`` MACs for
softmax attention (``Q Kᵀ`` and ``A V``) and ``(L + S) d² + L d`` for linear attention
(``φ(K)ᵀ V``, ``φ(Q) (φ(K)ᵀ V)`` and the normalizer); the counter's rules live in
:mod:`slimkit.measure.cost_rules`.

Example:
    >>> import torch
    >>> block = TransformerBlock(dim=32, num_heads=4, attention="linear")
    >>> block(torch.zeros(2, 10, 32)).shape
    torch.Size([2, 10, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ConfigError, check_choice
from slimkit.layers.conv import check_channels

ATTENTION_KINDS = ("softmax", "linear")


class SoftmaxAttention(nn.Module):
    """``softmax(Q Kᵀ / sqrt(d)) V`` per head, with explicit matrix products.

    Inputs ``q`` of shape ``(N, h, L, d)``, ``k`` of ``(N, h, S, d)`` and ``v`` of
    ``(N, h, S, d_v)``; output ``(N, h, L, d_v)``. Memory holds the ``(N, h, L, S)`` attention
    matrix.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scale = q.shape[-1] ** -0.5
        scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (N, h, L, S)
        return torch.matmul(scores.softmax(dim=-1), v)  # (N, h, L, d_v)


class LinearAttention(nn.Module):
    """Linear attention with the ``elu(x) + 1`` feature map (Katharopoulos et al. 2020).

    Same inputs and output as :class:`SoftmaxAttention`; time and memory are linear in ``L``.

    Args:
        eps: added to the normalizer to avoid division by zero (1e-6 as in the paper's code).
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = F.elu(q) + 1.0  # φ(Q): (N, h, L, d)
        k = F.elu(k) + 1.0  # φ(K): (N, h, S, d)
        kv = torch.matmul(k.transpose(-2, -1), v)  # Σ_j φ(k_j) v_jᵀ: (N, h, d, d_v)
        k_sum = k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # Σ_j φ(k_j): (N, h, d, 1)
        normalizer = torch.matmul(q, k_sum) + self.eps  # (N, h, L, 1)
        return torch.matmul(q, kv) / normalizer  # (N, h, L, d_v)


class MultiHeadAttention(nn.Module):
    """Self-attention over ``(N, L, dim)`` tokens: one ``qkv`` projection, a kernel, ``proj``.

    Args:
        dim: token width (split evenly over the heads).
        num_heads: number of heads ``h``; each has width ``head_dim = dim / h`` (head pruning,
            :func:`slimkit.techniques.prune.prune_heads`, lowers ``num_heads`` and keeps
            ``head_dim``: ``qkv`` then has ``3·h·head_dim`` outputs, ``proj`` ``h·head_dim``
            inputs).
        attention: ``"softmax"`` (quadratic in L) or ``"linear"`` (linear in L).
        qkv_bias: give the ``qkv`` projection a bias.
    """

    def __init__(
        self, dim: int, num_heads: int, attention: str = "softmax", qkv_bias: bool = True
    ) -> None:
        super().__init__()
        check_channels(dim=dim, num_heads=num_heads)
        check_choice("attention", attention, ATTENTION_KINDS)
        if dim % num_heads:
            raise ConfigError(f"dim must be divisible by num_heads ({num_heads}); got {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads  # kept when heads are pruned (num_heads·head_dim < dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.kernel: nn.Module = SoftmaxAttention() if attention == "softmax" else LinearAttention()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        h, d = self.num_heads, self.head_dim
        # (N, L, 3·h·d) -> (3, N, h, L, d)
        qkv = self.qkv(x).reshape(n, length, 3, h, d).permute(2, 0, 3, 1, 4)
        out = self.kernel(qkv[0], qkv[1], qkv[2])  # (N, h, L, d)
        return self.proj(out.transpose(1, 2).reshape(n, length, h * d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        attention: ``"softmax"`` or ``"linear"``.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 2.0, attention: str = "softmax"
    ) -> None:
        super().__init__()
        if not mlp_ratio > 0:
            raise ConfigError(f"mlp_ratio must be a number > 0; got {mlp_ratio!r}")
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, L, dim) -> (N, L, dim)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

"""The modules of a transformer: ``Embedding``, ``GELU``, ``LayerNorm``,
``MultiHeadAttention``.

Each is written with the ``mlc.ops`` op that the graph compiler knows as one node
(``take``, ``gelu``, ``layer_norm``, ``softmax``), so a traced transformer keeps them
whole and the compiler lowers each to its own loops. A GPT-style block::

    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = nn.MultiHeadAttention(d, heads, causal=True)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
"""

from __future__ import annotations

import math

import numpy as np

from .. import init, ops
from ..autograd import Tensor
from .layers import Linear
from .module import Module, Parameter


class Embedding(Module):
    """Rows of a ``(num, dim)`` table picked by integer ids: ids of shape ``s`` give
    ``s + (dim,)``. The table starts as N(0, 1), as in PyTorch."""

    def __init__(self, num: int, dim: int, device=None, dtype: str = "float32"):
        super().__init__()
        self.num, self.dim = num, dim
        self.weight = Parameter(init.randn(num, dim, device=device, dtype=dtype))

    def forward(self, ids):
        return ops.take(self.weight, ids)

    def extra_repr(self) -> str:
        return f"{self.num}, {self.dim}"


class GELU(Module):
    """The exact GELU, ``x * (1 + erf(x / sqrt 2)) / 2``."""

    def forward(self, x):
        return ops.gelu(x)


class LayerNorm(Module):
    """Normalise the last axis (any leading axes), then scale by ``weight`` (ones) and
    shift by ``bias`` (zeros): one ``layer_norm`` op."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype: str = "float32"):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))

    def forward(self, x):
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm({self.dim}) got input of shape {x.shape}")
        return ops.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class MultiHeadAttention(Module):
    """Self-attention over ``x`` of shape ``(batch, time, d)`` with ``heads`` heads of
    ``d // heads`` features each.

    Per head: ``softmax(Q K^T / sqrt(d_head) + mask) V``, where the two products are
    batched matmuls over ``(batch, heads)``. With ``causal=True`` the mask is ``-inf``
    above the diagonal, so position ``t`` attends to positions ``<= t`` only: what comes
    later cannot change an earlier output.
    """

    def __init__(self, d: int, heads: int, causal: bool = False, device=None,
                 dtype: str = "float32"):
        super().__init__()
        if d % heads:
            raise ValueError(f"MultiHeadAttention: d={d} is not a multiple of heads={heads}")
        self.d, self.heads, self.causal = d, heads, causal
        self.q = Linear(d, d, device=device, dtype=dtype)
        self.k = Linear(d, d, device=device, dtype=dtype)
        self.v = Linear(d, d, device=device, dtype=dtype)
        self.out = Linear(d, d, device=device, dtype=dtype)

    def _heads(self, x, b, t):
        """(b, t, d) -> (b, heads, t, d_head)."""
        return ops.permute(ops.reshape(x, (b, t, self.heads, self.d // self.heads)),
                           (0, 2, 1, 3))

    def forward(self, x):
        if x.ndim != 3 or x.shape[-1] != self.d:
            raise ValueError(f"MultiHeadAttention({self.d}) expects (batch, time, {self.d}), "
                             f"got shape {x.shape}")
        b, t, _ = x.shape
        q, k, v = (self._heads(f(x), b, t) for f in (self.q, self.k, self.v))
        scores = ops.mul_scalar(q @ ops.transpose(k), 1.0 / math.sqrt(self.d // self.heads))
        if self.causal:
            # on the tape (requires_grad), so a traced graph keeps one (t, t) constant and
            # broadcasts it, instead of a constant the size of this batch's scores; it is
            # not a Parameter, so no optimizer changes it
            mask = Tensor(np.triu(np.full((t, t), -np.inf, dtype=x.dtype), k=1),
                          device=x.device, dtype=x.dtype, requires_grad=True)
            scores = scores + ops.broadcast_to(mask, scores.shape)
        att = ops.softmax(scores, axis=-1) @ v                     # (b, heads, t, d_head)
        return self.out(ops.reshape(ops.permute(att, (0, 2, 1, 3)), (b, t, self.d)))

    def extra_repr(self) -> str:
        return f"{self.d}, heads={self.heads}, causal={self.causal}"

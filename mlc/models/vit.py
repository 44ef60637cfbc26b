"""A tiny vision transformer on the 8x8 digits: each image row is a token.

``(N, 64) -> (N, 8 rows, 8 pixels) -> Linear(8, d) + position embedding -> one encoder
block (x + attention(LayerNorm x), x + MLP(LayerNorm x), GELU MLP) -> LayerNorm -> mean
over the 8 tokens -> Linear(d, 10)``. Small enough to train in seconds with ``mlc``'s own
autograd, large enough to have every op a transformer compiles: layer norm, batched
matmuls, softmax, GELU, residual adds.
"""

from __future__ import annotations

import numpy as np

from .. import init, nn, ops
from ..data import load_digits
from .train import fit, accuracy

ROWS, PIXELS = 8, 8


class TinyViT(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4, blocks: int = 1, classes: int = 10):
        super().__init__()
        self.d = d
        self.embed = nn.Linear(PIXELS, d)
        self.pos = nn.Parameter(init.randn(ROWS, d, std=0.1))
        self.blocks = nn.Sequential(*[EncoderBlock(d, heads) for _ in range(blocks)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != ROWS * PIXELS:
            raise ValueError(f"TinyViT expects flattened 8x8 digits of shape (batch, 64), "
                             f"got {x.shape}")
        b = x.shape[0]
        h = self.embed(ops.reshape(x, (b, ROWS, PIXELS)))
        h = h + ops.broadcast_to(ops.reshape(self.pos, (1, ROWS, self.d)), h.shape)
        h = self.norm(self.blocks(h))
        return self.head(ops.reduce_mean(h, axes=(1,)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1 x)``, then ``x + mlp(ln2 x)``; with
    ``causal=True`` it is a GPT block."""

    def __init__(self, d: int, heads: int, causal: bool = False, mlp_ratio: int = 2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiHeadAttention(d, heads, causal=causal)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(),
                                 nn.Linear(mlp_ratio * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def tiny_vit(batch: int = 1, seed: int = 0, d: int = 32, heads: int = 4):
    """An untrained :class:`TinyViT` (eval mode) and ``batch`` test digits as the example."""
    np.random.seed(seed)
    model = TinyViT(d, heads)
    model.eval()
    X = load_digits()[2]
    return model, X[:batch].copy()


def train_tiny_vit(model, epochs: int = 12, lr: float = 3e-3, seed: int = 0) -> float:
    """Train on the digits' training split with Adam; return the test accuracy (0..1)."""
    Xtr, ytr, Xte, yte = load_digits()
    fit(model, Xtr, ytr, epochs=epochs, lr=lr, batch_size=64, seed=seed)
    return accuracy(model, Xte, yte)

"""Small models that exercise the graph compiler's ops: a transformer-style block with
layer norm and softmax, an MLP with batch norm to fold, a GPT-style block on token ids.
Each function returns ``(model, example_input)`` with a fixed seed, so lectures, tests and
benchmarks agree. The digits MLP and CNN the units share are ``mlc.models.digits_mlp``
and ``mlc.models.digits_cnn``."""

from __future__ import annotations

import numpy as np

from .. import nn, ops


class NormSoftmax(nn.Module):
    """``softmax(LayerNorm(x @ W + b) ...)``: the reductions of a transformer block."""

    def __init__(self, dim: int = 32, classes: int = 16):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm1d(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = ops.relu(self.norm(self.fc(x)))
        return ops.softmax(self.head(h), axis=-1)


def norm_softmax(batch: int = 4, dim: int = 32, classes: int = 16, seed: int = 0):
    np.random.seed(seed)
    return NormSoftmax(dim, classes), np.random.randn(batch, dim).astype("float32")


def bn_mlp(batch: int = 4, seed: int = 0):
    """``Linear -> BatchNorm1d -> ReLU -> Linear`` with non-trivial running statistics."""
    np.random.seed(seed)
    import mlc

    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    bn = model[1]
    bn.running_mean = mlc.Tensor(np.random.randn(32).astype("float32"), requires_grad=False)
    bn.running_var = mlc.Tensor(np.random.rand(32).astype("float32") + 0.5, requires_grad=False)
    bn.weight.data = mlc.Tensor(np.random.rand(32).astype("float32") + 0.5)
    bn.bias.data = mlc.Tensor(np.random.randn(32).astype("float32"))
    return model, np.random.randn(batch, 16).astype("float32")


class GPTBlock(nn.Module):
    """A GPT-style block: token embedding, then ``x + attention(LayerNorm(x))`` (causal,
    multi-head) and ``x + MLP(LayerNorm(x))`` with a GELU MLP."""

    def __init__(self, vocab: int = 20, d: int = 8, heads: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiHeadAttention(d, heads, causal=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, ids):
        x = self.emb(ids)
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def gpt_block(batch: int = 2, time: int = 5, vocab: int = 20, d: int = 8, heads: int = 2,
              seed: int = 0):
    """A :class:`GPTBlock` (in eval mode) and int64 token ids of shape ``(batch, time)``."""
    np.random.seed(seed)
    model = GPTBlock(vocab, d, heads)
    model.eval()
    return model, np.random.randint(0, vocab, size=(batch, time)).astype("int64")

"""The course's models, ready to trace (the unit 02 digits MLP and CNN, a small
transformer-style block with layer norm and softmax, a GPT-style block on token ids). Each
function returns ``(model, example_input)`` with a fixed seed, so lectures, tests and
benchmarks agree."""

from __future__ import annotations

import numpy as np

from .. import nn, ops


def digits_mlp(batch: int = 1, seed: int = 0):
    """``Linear(64, 64) -> ReLU -> Linear(64, 10)`` on flattened 8x8 digits."""
    np.random.seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, np.random.rand(batch, 64).astype("float32")


def digits_cnn(batch: int = 1, seed: int = 0):
    """Two convolutions (8 and 16 channels, the second with stride 2) and a Linear."""
    np.random.seed(seed)
    model = nn.Sequential(nn.Conv(1, 8, 3), nn.ReLU(), nn.Conv(8, 16, 3, stride=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(256, 10))
    return model, np.random.rand(batch, 8, 8, 1).astype("float32")


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

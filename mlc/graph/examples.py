"""The course's models, ready to trace (the unit 02 digits MLP and CNN, a small
transformer-style block with layer norm and softmax). Each function returns
``(model, example_input)`` with a fixed seed, so lectures, tests and benchmarks agree."""

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

"""Normalisation layers: LayerNorm1d (per example) and BatchNorm1d (per feature).

Both centre and scale activations, ``(x - mean) / sqrt(var + eps)``, then apply a
learned scale ``weight`` and shift ``bias``. They differ in *what* they average over:
LayerNorm over the features of one example (the same in training and eval), BatchNorm
over the examples of a batch, keeping running averages for eval mode, where a batch
may hold a single example.
"""

from __future__ import annotations

from .. import init, ops
from ..autograd import no_grad
from .module import Module, Parameter


class LayerNorm1d(Module):
    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype: str = "float32"):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))

    def forward(self, x):
        if x.shape[-1] != self.dim:
            raise ValueError(f"LayerNorm1d({self.dim}) got input of shape {x.shape}")
        mean = ops.summation(x, -1, keepdims=True) / self.dim
        centred = x - mean
        var = ops.summation(centred * centred, -1, keepdims=True) / self.dim
        return centred / (var + self.eps) ** 0.5 * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class BatchNorm1d(Module):
    """``momentum`` weighs the new batch in the running averages:
    ``running = (1 - momentum) * running + momentum * batch``."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1, device=None,
                 dtype: str = "float32"):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.momentum = momentum
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("running_mean", init.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("running_var", init.ones(dim, device=device, dtype=dtype))

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"BatchNorm1d({self.dim}) expects (batch, {self.dim}), got "
                             f"shape {x.shape}")
        if self.training:
            n = x.shape[0]
            mean = ops.summation(x, 0) / n
            centred = x - mean
            var = ops.summation(centred * centred, 0) / n
            m = self.momentum
            # the running averages are statistics, not part of the graph
            with no_grad():
                self.running_mean = self.running_mean * (1 - m) + mean * m
                self.running_var = self.running_var * (1 - m) + var * m
        else:
            centred = x - self.running_mean
            var = self.running_var
        return centred / (var + self.eps) ** 0.5 * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, momentum={self.momentum}"

"""Basic layers: Linear, activations, Dropout."""

from __future__ import annotations

import math

from .. import init, ops
from .module import Module, Parameter


class Linear(Module):
    """``y = x @ W + b`` with ``W`` of shape ``(in_features, out_features)``.

    The weight is Kaiming-uniform (fan_in = in_features) as in needle; the bias is
    uniform on ``[-1/sqrt(in), 1/sqrt(in)]`` as in PyTorch (needle's differs: see "coming
    from needle" in ``mlc.autograd``). ``x`` may have any number of leading axes.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype: str = "float32"):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(init.kaiming_uniform(in_features, out_features,
                                                     device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = Parameter(init.rand(1, out_features, low=-bound, high=bound,
                                            device=device, dtype=dtype))
        else:
            self.bias = None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) got input of "
                             f"shape {x.shape}")
        y = x @ self.weight
        if self.bias is not None:
            y = y + self.bias  # (1, out) broadcasts over the batch
        return y

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)`` so the expected value is unchanged; in eval mode, the identity."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        mask = init.randb(*x.shape, p=1.0 - self.p, device=x.device, dtype=x.dtype)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

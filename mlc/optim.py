"""Optimisers: SGD with momentum and Adam (needle's conventions).

An optimiser holds a list of parameters and, after ``loss.backward()``, moves each one
against its gradient in ``step()``. The update is arithmetic on values, not part of any
model, so it runs on the NDArrays behind the tensors and records no graph; the
parameter keeps its identity (the model still refers to it) and gets a new value.

- SGD: ``u = momentum * u + (1 - momentum) * g`` (needle's dampened momentum; with
  ``momentum=0`` plain ``w -= lr * g``), then ``w -= lr * u``.
- Adam: running means of ``g`` and ``g^2`` with bias correction,
  ``w -= lr * m_hat / (sqrt(v_hat) + eps)``.

``weight_decay`` adds ``weight_decay * w`` to the gradient (L2 regularisation).
"""

from __future__ import annotations

from typing import Iterable

from .autograd import Tensor


class Optimizer:
    def __init__(self, params: Iterable[Tensor]):
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimisers take Tensors, got {type(p).__name__}")

    def step(self) -> None:
        raise NotImplementedError

    def reset_grad(self) -> None:
        """Forget the gradients (and the graphs they keep alive) before the next batch."""
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

    def _grad(self, p: Tensor, weight_decay: float):
        """The NDArray gradient of ``p``, with weight decay folded in; None when absent."""
        if p.grad is None:
            return None
        g = p.grad.realize_cached_data()
        if g.dtype != p.dtype:
            g = g.astype(p.dtype)
        if weight_decay:
            g = g + p.realize_cached_data() * weight_decay
        return g

    @staticmethod
    def _assign(p: Tensor, value) -> None:
        if value.dtype != p.dtype:  # keep float32 parameters float32
            value = value.astype(p.dtype)
        p.cached_data = value


class SGD(Optimizer):
    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.u: dict[Tensor, object] = {}

    def step(self) -> None:
        for p in self.params:
            g = self._grad(p, self.weight_decay)
            if g is None:
                continue
            if self.momentum:
                u = self.u.get(p)
                u = g * (1 - self.momentum) if u is None else (
                    u * self.momentum + g * (1 - self.momentum))
                self.u[p] = u
                g = u
            self._assign(p, p.realize_cached_data() - g * self.lr)


class Adam(Optimizer):
    def __init__(self, params, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self.m: dict[Tensor, object] = {}
        self.v: dict[Tensor, object] = {}

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for p in self.params:
            g = self._grad(p, self.weight_decay)
            if g is None:
                continue
            m, v = self.m.get(p), self.v.get(p)
            m = g * (1 - b1) if m is None else m * b1 + g * (1 - b1)
            v = g * g * (1 - b2) if v is None else v * b2 + g * g * (1 - b2)
            self.m[p], self.v[p] = m, v
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            self._assign(p, p.realize_cached_data() - m_hat / (v_hat.sqrt() + self.eps)
                         * self.lr)

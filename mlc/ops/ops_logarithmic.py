"""``logsumexp`` and ``log_softmax``, computed without overflow (``softmax`` itself is one
op, in ops_transformer.py).

``log(sum(exp(z)))`` overflows float32 as soon as some ``z > 88``. Subtracting the
maximum first changes nothing mathematically,

    logsumexp(z) = max(z) + log(sum(exp(z - max(z)))),

but now every exponent is <= 0, so ``exp`` stays in [0, 1] and the sum is >= 1.
The gradient of logsumexp is the softmax, ``exp(z - logsumexp(z))``.
"""

from __future__ import annotations

from ..autograd.tensor import TensorOp  # the module: see the end of tensor.py
from .ops_mathematic import exp
from .ops_shape import broadcast_to, normalize_axes, reduce_axes, reshape


class LogSumExp(TensorOp):
    def __init__(self, axes: tuple[int, ...], keepdims: bool = False):
        self.axes = axes
        self.keepdims = keepdims

    def compute(self, z):
        zmax = reduce_axes(z, self.axes, "max", keepdims=True)
        shifted = z - zmax.broadcast_to(z.shape)
        out = reduce_axes(shifted.exp(), self.axes, "sum", keepdims=True).log() + zmax
        if not self.keepdims:
            out = out.compact().reshape(
                tuple(n for i, n in enumerate(z.shape) if i not in self.axes))
        return out

    def gradient(self, out_grad, node):
        z = node.inputs[0]
        kept = tuple(1 if i in self.axes else n for i, n in enumerate(z.shape))
        lse = broadcast_to(reshape(node, kept), z.shape)
        softmax = exp(z - lse)  # a tensor expression: the gradient can be differentiated
        return broadcast_to(reshape(out_grad, kept), z.shape) * softmax


def logsumexp(a, axes=None, keepdims: bool = False):
    """``log(sum(exp(a), axes))``, stable for large values."""
    return LogSumExp(normalize_axes(axes, a.ndim, "logsumexp"), keepdims)(a)


def log_softmax(a, axis: int = -1):
    """``a - logsumexp(a)`` along ``axis``: log-probabilities, stable."""
    ax = normalize_axes(axis, a.ndim, "log_softmax")
    return a - broadcast_to(logsumexp(a, ax, keepdims=True), a.shape)


def logsoftmax(a, axis: int = -1):
    """needle's name for :func:`log_softmax`."""
    return log_softmax(a, axis)

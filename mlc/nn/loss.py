"""``SoftmaxLoss``: cross-entropy of softmax probabilities, averaged over the batch.

For logits ``z`` (one row per example) and the true class ``y``,

    loss = mean( logsumexp(z) - z[y] ) = mean( -log softmax(z)[y] ),

written with ``logsumexp`` so that large logits do not overflow. ``z[y]`` is taken as
``sum(z * one_hot(y))``.
"""

from __future__ import annotations

from .. import init, ops
from .module import Module


class SoftmaxLoss(Module):
    def forward(self, logits, y):
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxLoss expects logits (batch, classes), got shape "
                             f"{logits.shape}")
        n, k = logits.shape
        y_shape = tuple(getattr(y, "shape", ()))
        if y_shape != (n,):
            raise ValueError(f"SoftmaxLoss: labels of shape {y_shape} for logits of shape "
                             f"{logits.shape}; expected ({n},)")
        y_one_hot = init.one_hot(k, y, device=logits.device, dtype=logits.dtype)
        picked = ops.summation(logits * y_one_hot, axes=(1,))
        return ops.summation(ops.logsumexp(logits, axes=(1,)) - picked) / n

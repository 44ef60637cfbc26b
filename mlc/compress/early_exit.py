"""Dynamic computation: early exit (BranchyNet, Teerapittayanon et al. 2016).

Most digits are easy. A network that answers after its first block when it is already
sure, and runs the rest only for the hard cases, spends less on average:

    h = stem(x)                     every example pays for the stem
    z1 = exit_head(h)               ... and the small first classifier
    if max softmax(z1) >= threshold: answer argmax z1
    else:                           z = rest(h), answer argmax z

Trained with both classifiers' losses added (``EarlyExitNet.loss``), so the stem learns
features that the early head can already use. The *threshold* moves along a curve:
``1.0`` never exits early (full accuracy, full cost), ``0.0`` always exits (the cost of
the stem and head, the early head's accuracy); :func:`early_exit_curve` measures accuracy
against the average FLOPs per example in between. The saving is in FLOPs and, per
example, in time; a batched kernel must split the batch into the two groups, which is
what :meth:`EarlyExitNet.predict_early` does.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from .flops import count_flops
from ..models.train import default_device, set_seed

__all__ = ["EarlyExitNet", "early_exit_mlp", "early_exit_curve"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class EarlyExitNet(nn.Module):
    """``stem`` -> (``exit_head`` | ``rest``). In training, forward returns
    ``(early_logits, final_logits)``; in eval, the final logits (the full network)."""

    def __init__(self, stem: nn.Module, exit_head: nn.Module, rest: nn.Module,
                 exit_weight: float = 1.0):
        super().__init__()
        self.stem, self.exit_head, self.rest = stem, exit_head, rest
        self.exit_weight = exit_weight

    def forward(self, x):
        h = self.stem(x)
        if self.training:
            return self.exit_head(h), self.rest(h)
        return self.rest(h)

    def loss(self, outputs, xb, yb):
        """``exit_weight * CE(early) + CE(final)``: the ``loss_fn`` for ``models.fit``."""
        early, final = outputs
        ce = nn.SoftmaxLoss()
        return ce(early, yb) * self.exit_weight + ce(final, yb)

    def flops_per_path(self, example) -> tuple[int, int]:
        """``(FLOPs of an early exit, FLOPs of the full path)`` per example."""
        x = np.asarray(example, np.float32)[:1]
        self.eval()
        with no_grad():
            h = self.stem(Tensor(x, device=_device(self), requires_grad=False)).numpy()
        stem, head, rest = (count_flops(self.stem, x), count_flops(self.exit_head, h),
                            count_flops(self.rest, h))
        return stem + head, stem + head + rest

    def predict_early(self, X: np.ndarray, threshold: float):
        """``(predictions, exited)`` for all of ``X``: ``exited[i]`` when the early head's
        top softmax probability reached ``threshold``; only the others run ``rest``."""
        self.eval()
        dev = _device(self)
        with no_grad():
            h = self.stem(Tensor(X, device=dev, requires_grad=False))
            z1 = self.exit_head(h).numpy()
            conf = _softmax(z1).max(axis=1)
            exited = conf >= threshold
            pred = z1.argmax(axis=1)
            hard = np.nonzero(~exited)[0]
            if hard.size:
                h_hard = Tensor(h.numpy()[hard], device=dev, requires_grad=False)
                pred[hard] = self.rest(h_hard).numpy().argmax(axis=1)
        return pred, exited


def _device(model):
    ps = model.parameters()
    return ps[0].device if ps else default_device()


def early_exit_mlp(hidden: int = 256, device=None, seed: int | None = None) -> EarlyExitNet:
    """The digits MLP with an exit after its first hidden layer:
    stem ``Linear(64, hidden) + ReLU``, exit head ``Linear(hidden, 10)``, rest
    ``Linear(hidden, hidden) + ReLU + Linear(hidden, 10)``."""
    set_seed(seed)
    d = device or default_device()
    stem = nn.Sequential(nn.Linear(64, hidden, device=d), nn.ReLU())
    head = nn.Linear(hidden, 10, device=d)
    rest = nn.Sequential(nn.Linear(hidden, hidden, device=d), nn.ReLU(),
                         nn.Linear(hidden, 10, device=d))
    return EarlyExitNet(stem, head, rest)


def early_exit_curve(model: EarlyExitNet, X: np.ndarray, y: np.ndarray,
                     thresholds=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01)) -> list[dict]:
    """For each threshold: ``exit_fraction``, ``accuracy`` and ``flops`` (average per
    example), plus the full network's as ``flops_full`` for reference."""
    early_f, full_f = model.flops_per_path(X[:1])
    rows = []
    for t in thresholds:
        pred, exited = model.predict_early(X, t)
        frac = float(exited.mean())
        rows.append(dict(threshold=float(t), exit_fraction=frac,
                         accuracy=float((pred == np.asarray(y)).mean()),
                         flops=frac * early_f + (1.0 - frac) * full_f, flops_full=full_f))
    return rows

"""The training loop and scoring every unit's models share, written once.

To read a trade (compression's bytes for accuracy, quantization's, deployment's) you need
the same model trained the same way before and after. So the units train and score with:

- :func:`fit`: Adam on mini-batches, the loop of ``tests/test_nn_train.py``, with an
  optional ``loss_fn`` (distillation and early exit bring their own) and ``seed``;
- :func:`accuracy` and :func:`predict`: eval mode, no graph, one forward for all of ``X``;
- :func:`clone`: an independent copy of a model (``copy.deepcopy`` stumbles on the device
  objects, which hold a Python module; they are shared, everything else is copied);
- :func:`set_seed` and :func:`default_device` (the Numba cpu backend).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from .. import ndarray as nd
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..data import DataLoader, NDArrayDataset

__all__ = ["fit", "predict", "accuracy", "clone", "set_seed", "default_device"]


def default_device():
    """The device the course's experiments train on: the Numba cpu backend."""
    return nd.cpu()


def set_seed(seed: int | None) -> None:
    """Seed numpy's global generator, which ``mlc.init`` and ``DataLoader`` draw from."""
    if seed is not None:
        np.random.seed(seed)


def fit(model: nn.Module, X: np.ndarray, y: np.ndarray, epochs: int = 10, lr: float = 0.01,
        batch_size: int = 64, loss_fn: Callable | None = None, seed: int | None = None,
        device=None, weight_decay: float = 0.0) -> list[float]:
    """Train ``model`` in place with Adam; return the mean training loss of each epoch.

    ``loss_fn(output, xb, yb) -> Tensor`` defaults to softmax cross-entropy of the output
    (it gets the input batch too, so a teacher can look at it). ``seed`` fixes the batch
    order. Masks set by :func:`mlc.compress.prune_magnitude` stay applied: the forward pass
    multiplies by them, so a pruned weight gets zero gradient and stays zero in effect.
    """
    set_seed(seed)
    device = device or _device_of(model)
    if loss_fn is None:
        ce = nn.SoftmaxLoss()

        def loss_fn(out, xb, yb):
            return ce(out, yb)

    opt = optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(NDArrayDataset(X, y), batch_size=batch_size, shuffle=True,
                        device=device)
    losses = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            opt.reset_grad()
            loss = loss_fn(model(xb), xb, yb)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        losses.append(total / len(X))
    opt.reset_grad()
    model.eval()
    return losses


def predict(model: nn.Module, X: np.ndarray, device=None) -> np.ndarray:
    """Logits of ``model`` for all of ``X`` (eval mode, no graph), as a numpy array."""
    device = device or _device_of(model)
    model.eval()
    with no_grad():
        out = model(Tensor(X, device=device, requires_grad=False))
    return out.numpy()


def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, device=None) -> float:
    """Fraction of ``X`` whose largest logit is the label ``y``."""
    return float((predict(model, X, device).argmax(1) == np.asarray(y)).mean())


def _tensors(model: nn.Module) -> list[Tensor]:
    return [t for _, t in model.named_parameters() + model.named_buffers()]


def _device_of(model: nn.Module):
    ts = _tensors(model)
    return ts[0].device if ts else default_device()


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``: new parameters, buffers and masks; the same devices."""
    memo = {id(d): d for d in nd.all_devices()}
    for t in _tensors(model):
        memo[id(t.device)] = t.device
    for t in _tensors(model):
        t.grad = None  # gradients keep whole graphs alive: not worth copying
    return copy.deepcopy(model, memo)

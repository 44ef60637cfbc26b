"""The models every technique is measured on, and the few lines that train and score them.

Compression is always a trade: bytes, FLOPs or latency bought with accuracy. To read the
trade you need the same model, trained the same way, before and after. This module holds
that common ground:

- :func:`digits_mlp` and :func:`digits_cnn`: the two baselines on the shipped 8x8 digits
  (``mlc.data.load_digits``);
- :func:`fit`: Adam on mini-batches, the loop of ``tests/test_nn_train.py``, with an
  optional ``loss_fn`` (distillation and early exit bring their own) and ``seed``;
- :func:`accuracy` and :func:`predict`: eval mode, no graph, one forward for all of ``X``;
- :func:`clone`: an independent copy of a model (``copy.deepcopy`` stumbles on the device
  objects, which hold a Python module; they are shared, everything else is copied).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from .. import ndarray as nd
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..data import DataLoader, NDArrayDataset

__all__ = ["digits_mlp", "digits_cnn", "fit", "predict", "accuracy", "clone", "set_seed",
           "default_device"]


def default_device():
    """The device the compression experiments run on: the Numba cpu backend."""
    return nd.cpu()


def set_seed(seed: int | None) -> None:
    """Seed numpy's global generator, which ``mlc.init`` and ``DataLoader`` draw from."""
    if seed is not None:
        np.random.seed(seed)


def digits_mlp(hidden=(256, 256), device=None, seed: int | None = None) -> nn.Sequential:
    """``64 -> hidden[0] -> ReLU -> ... -> 10``: the MLP on flattened digits.

    Wider than the 64-64-10 of ``test_nn_train``: a compression experiment needs weights to
    spare, and 256 hidden units give matmuls big enough that halving them shows in time.
    """
    set_seed(seed)
    device = device or default_device()
    sizes = (64, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b, device=device), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], 10, device=device))
    return nn.Sequential(*layers)


def digits_cnn(channels=(16, 32), device=None, seed: int | None = None,
               conv: Callable | None = None) -> nn.Sequential:
    """Two 3x3 convolutions (the second with stride 2) and a classifier, on NHWC digits.

    ``(N, 8, 8, 1) -> conv 3x3 -> ReLU -> (N, 8, 8, c0) -> conv 3x3 / 2 -> ReLU ->
    (N, 4, 4, c1) -> Flatten -> Linear(16 c1, 10)``. ``conv(c_in, c_out, k, stride=,
    device=)`` builds the second convolution (default ``nn.Conv``): pass
    ``DepthwiseSeparableConv`` to compare the MobileNet block with the standard one.
    """
    set_seed(seed)
    device = device or default_device()
    conv = conv or nn.Conv
    c0, c1 = channels
    return nn.Sequential(
        nn.Conv(1, c0, 3, device=device), nn.ReLU(),
        conv(c0, c1, 3, stride=2, device=device), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * c1, 10, device=device))


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

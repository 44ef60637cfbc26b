"""Tensor initialisers: constants, random tensors and the Xavier/Kaiming schemes.

Random numbers come from numpy's global generator (``np.random.seed`` makes a run
repeatable) and are moved to the requested device. The schemes choose a weight's scale
so that activations neither vanish nor explode through many layers:

- Xavier/Glorot (for tanh/sigmoid nets) keeps the variance of activations *and* of
  gradients: ``Var(w) = 2 / (fan_in + fan_out)``.
- Kaiming/He (for ReLU nets, which zero half their inputs) keeps the variance of
  activations: ``Var(w) = 2 / fan_in``.

A uniform draw on ``[-a, a]`` has variance ``a^2 / 3``, hence the ``sqrt(6 / ...)``
bounds below.
"""

from __future__ import annotations

import math

import numpy as np

from . import ndarray as nd
from .autograd import Tensor


def _shape(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _tensor(array: np.ndarray, device, dtype, requires_grad) -> Tensor:
    return Tensor(nd.array(array, dtype=dtype, device=device), requires_grad=requires_grad)


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False):
    """Uniform on ``[low, high)``."""
    return _tensor(np.random.uniform(low, high, _shape(shape)), device, dtype, requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False):
    """Gaussian with the given mean and standard deviation."""
    return _tensor(np.random.normal(mean, std, _shape(shape)), device, dtype, requires_grad)


def randb(*shape, p=0.5, device=None, dtype="float32", requires_grad=False):
    """Bernoulli: 1 with probability ``p``, else 0 (dropout masks)."""
    return _tensor(np.random.rand(*_shape(shape)) < p, device, dtype, requires_grad)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    return Tensor(nd.full(_shape(shape), c, dtype=dtype, device=device),
                  requires_grad=requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def ones_like(t: Tensor, *, device=None, requires_grad=False):
    return ones(*t.shape, device=device or t.device, dtype=t.dtype, requires_grad=requires_grad)


def zeros_like(t: Tensor, *, device=None, requires_grad=False):
    return zeros(*t.shape, device=device or t.device, dtype=t.dtype,
                 requires_grad=requires_grad)


def one_hot(n: int, i, device=None, dtype="float32", requires_grad=False):
    """Rows of the ``n x n`` identity picked by the integer labels ``i`` (Tensor or array)."""
    labels = np.asarray(i.numpy() if isinstance(i, Tensor) else i)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"one_hot: labels must lie in [0, {n}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    return _tensor(np.eye(n)[labels.astype(np.int64)], device, dtype, requires_grad)


# --- the initialisation schemes ---------------------------------------------------------

_GAINS = {"relu": math.sqrt(2.0), "linear": 1.0, "tanh": 5.0 / 3.0, "sigmoid": 1.0}


def _gain(nonlinearity: str) -> float:
    if nonlinearity not in _GAINS:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; known: {sorted(_GAINS)}")
    return _GAINS[nonlinearity]


def xavier_uniform(fan_in, fan_out, gain=1.0, shape=None, **kwargs):
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rand(*(shape or (fan_in, fan_out)), low=-a, high=a, **kwargs)


def xavier_normal(fan_in, fan_out, gain=1.0, shape=None, **kwargs):
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return randn(*(shape or (fan_in, fan_out)), mean=0.0, std=std, **kwargs)


def kaiming_uniform(fan_in, fan_out, nonlinearity="relu", shape=None, **kwargs):
    """Uniform with ``Var = gain^2 / fan_in``; ``shape`` overrides ``(fan_in, fan_out)``
    (a conv kernel ``(K, K, C_in, C_out)`` has ``fan_in = K * K * C_in``)."""
    bound = _gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    return rand(*(shape or (fan_in, fan_out)), low=-bound, high=bound, **kwargs)


def kaiming_normal(fan_in, fan_out, nonlinearity="relu", shape=None, **kwargs):
    std = _gain(nonlinearity) / math.sqrt(fan_in)
    return randn(*(shape or (fan_in, fan_out)), mean=0.0, std=std, **kwargs)

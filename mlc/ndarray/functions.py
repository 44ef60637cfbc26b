"""Free functions in the style of needle's ``backend_ndarray`` (and of numpy).

``nd.exp(a)`` is ``a.exp()``, ``nd.sum(a, axis)`` is ``a.sum(axis)``, and so on: code
written against an "array API" module (``array_api.exp(x)``) can use ``mlc.ndarray``
in place of numpy for the operations listed here.
"""

from __future__ import annotations

from . import shapes as S
from .ndarray import NDArray


def broadcast_to(a: NDArray, new_shape) -> NDArray:
    return a.broadcast_to(new_shape)


def reshape(a: NDArray, new_shape) -> NDArray:
    return a.reshape(new_shape)


def permute(a: NDArray, axes) -> NDArray:
    return a.permute(axes)


def flip(a: NDArray, axes=None) -> NDArray:
    """Reverse the order along ``axes`` (all by default): a view with negative strides."""
    axes = S.normalize_axes(axes, a.ndim)
    return a[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(a.ndim))]


def maximum(a: NDArray, b) -> NDArray:
    return a.maximum(b)


def minimum(a: NDArray, b) -> NDArray:
    return a.minimum(b)


def log(a: NDArray) -> NDArray:
    return a.log()


def exp(a: NDArray) -> NDArray:
    return a.exp()


def tanh(a: NDArray) -> NDArray:
    return a.tanh()


def sqrt(a: NDArray) -> NDArray:
    return a.sqrt()


def abs(a: NDArray) -> NDArray:  # noqa: A001 (numpy's name)
    return a.abs()


def sum(a: NDArray, axis=None, keepdims: bool = False) -> NDArray:  # noqa: A001
    return a.sum(axis=axis, keepdims=keepdims)


summation = sum


def max(a: NDArray, axis=None, keepdims: bool = False) -> NDArray:  # noqa: A001
    return a.max(axis=axis, keepdims=keepdims)

"""Elementwise ops and their gradients.

Each op is a class with ``compute`` (NDArrays in, NDArray out) and ``gradient``
(the vector-Jacobian product, written with tensor ops), plus a lowercase function that
applies it. The chain rule per op is local: for ``c = a * b`` the gradient that reaches
``a`` is ``out_grad * b``, whatever came before or after.

Binary ops follow numpy broadcasting: ``add(a, b)`` with shapes (4, 3) and (3,) first
inserts an explicit ``broadcast_to`` node for ``b``, so the elementwise op itself only
sees equal shapes, and the sum over the broadcast axes in the backward pass is the
gradient of ``broadcast_to`` (see ops_shape.py), written once.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd.tensor import Tensor, TensorOp  # the module: see the end of tensor.py
from .ops_shape import _same_dtype, broadcast_to


def _check_scalar(scalar, opname: str):
    if isinstance(scalar, Tensor):
        raise TypeError(f"{opname}: expected a Python number, got a Tensor (use the tensor op)")
    if isinstance(scalar, np.ndarray) and scalar.size == 1 and scalar.dtype.kind in "biuf":
        scalar = scalar.reshape(()).item()  # a 0-d or 1-element array is a number (needle)
    if not isinstance(scalar, (numbers.Number, np.number)):
        raise TypeError(f"{opname}: expected a Python number, got {type(scalar).__name__}")
    return scalar.item() if isinstance(scalar, np.number) else scalar


def broadcast_pair(a: Tensor, b: Tensor, opname: str) -> tuple[Tensor, Tensor]:
    """Make the shapes of ``a`` and ``b`` equal with explicit ``broadcast_to`` nodes."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{opname}: expected two Tensors, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    _same_dtype(a, b, opname)
    if a.shape == b.shape:
        return a, b
    try:
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ValueError(f"{opname}: shapes {a.shape} and {b.shape} do not broadcast "
                         "(trailing axes must be equal or 1)") from None
    if a.shape != shape:
        a = broadcast_to(a, shape)
    if b.shape != shape:
        b = broadcast_to(b, shape)
    return a, b


def _mask(array, dtype):
    """A comparison result as 0/1 values of ``dtype``, wrapped as a constant tensor."""
    if array.dtype != dtype:
        array = array.astype(dtype)
    return Tensor.make_const(array)


# --- addition, multiplication, division -----------------------------------------------


class EWiseAdd(TensorOp):
    def compute(self, a, b):
        return a + b

    def gradient(self, out_grad, node):
        return out_grad, out_grad


def add(a, b):
    return EWiseAdd()(*broadcast_pair(a, b, "add"))


class AddScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _check_scalar(scalar, "add_scalar")

    def compute(self, a):
        return a + self.scalar

    def gradient(self, out_grad, node):
        return out_grad


def add_scalar(a, scalar):
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    def compute(self, a, b):
        return a * b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b, out_grad * a


def multiply(a, b):
    return EWiseMul()(*broadcast_pair(a, b, "multiply"))


class MulScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _check_scalar(scalar, "mul_scalar")

    def compute(self, a):
        return a * self.scalar

    def gradient(self, out_grad, node):
        return out_grad * self.scalar


def mul_scalar(a, scalar):
    return MulScalar(scalar)(a)


class EWiseDiv(TensorOp):
    def compute(self, a, b):
        return a / b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        # d(a/b)/da = 1/b,  d(a/b)/db = -a/b^2
        return out_grad / b, negate(out_grad * a / (b * b))


def divide(a, b):
    return EWiseDiv()(*broadcast_pair(a, b, "divide"))


class DivScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _check_scalar(scalar, "divide_scalar")

    def compute(self, a):
        return a / self.scalar

    def gradient(self, out_grad, node):
        return out_grad / self.scalar


def divide_scalar(a, scalar):
    return DivScalar(scalar)(a)


class Negate(TensorOp):
    def compute(self, a):
        return a * -1

    def gradient(self, out_grad, node):
        return negate(out_grad)


def negate(a):
    return Negate()(a)


# --- powers, logs, exponentials ---------------------------------------------------------


class PowerScalar(TensorOp):
    """``a ** n`` for a number ``n``: gradient ``n * a ** (n - 1)``."""

    def __init__(self, scalar):
        self.scalar = _check_scalar(scalar, "power_scalar")

    def compute(self, a):
        return a ** self.scalar

    def gradient(self, out_grad, node):
        (a,) = node.inputs
        n = self.scalar
        if n == 0:
            return out_grad * 0
        if n == 1:
            return out_grad
        return out_grad * (power_scalar(a, n - 1) * n)


def power_scalar(a, scalar):
    return PowerScalar(scalar)(a)


class EWisePow(TensorOp):
    """``a ** b`` elementwise (``a > 0`` where the gradient in ``b`` is needed)."""

    def compute(self, a, b):
        return a ** b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b * a ** (b - 1), out_grad * node * log(a)


def power(a, b):
    return EWisePow()(*broadcast_pair(a, b, "power"))


class Log(TensorOp):
    def compute(self, a):
        return a.log()

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


def log(a):
    return Log()(a)


class Exp(TensorOp):
    def compute(self, a):
        return a.exp()

    def gradient(self, out_grad, node):
        # the output is its own derivative; ``node`` is a Tensor, so this stays in the graph
        return out_grad * node


def exp(a):
    return Exp()(a)


# --- activations -----------------------------------------------------------------------


class ReLU(TensorOp):
    def compute(self, a):
        return a.maximum(0)

    def gradient(self, out_grad, node):
        a = node.inputs[0].realize_cached_data()
        return out_grad * _mask(a > 0, a.dtype)


def relu(a):
    return ReLU()(a)


class Tanh(TensorOp):
    def compute(self, a):
        return a.tanh()

    def gradient(self, out_grad, node):
        return out_grad * (1 - node * node)


def tanh(a):
    return Tanh()(a)


class Sigmoid(TensorOp):
    """``1 / (1 + exp(-a))``; the derivative is ``s * (1 - s)`` of the output ``s``."""

    def compute(self, a):
        # exp(-|a|) never overflows: for a >= 0 use 1/(1+e^-a), for a < 0 use e^a/(1+e^a).
        e = (a.abs() * -1).exp()
        pos = a >= 0
        if pos.dtype != a.dtype:
            pos = pos.astype(a.dtype)
        num = pos + e * (pos * -1 + 1)
        return num / (e + 1)

    def gradient(self, out_grad, node):
        return out_grad * node * (1 - node)


def sigmoid(a):
    return Sigmoid()(a)


class Maximum(TensorOp):
    """Elementwise maximum; ties send the gradient to the first argument."""

    def compute(self, a, b):
        return a.maximum(b)

    def gradient(self, out_grad, node):
        a, b = (x.realize_cached_data() for x in node.inputs)
        first = _mask(a >= b, a.dtype)
        return out_grad * first, out_grad * (1 - first)


class MaximumScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = _check_scalar(scalar, "maximum")

    def compute(self, a):
        return a.maximum(self.scalar)

    def gradient(self, out_grad, node):
        a = node.inputs[0].realize_cached_data()
        return out_grad * _mask(a >= self.scalar, a.dtype)


def maximum(a, b):
    """Elementwise maximum of two tensors, or of a tensor and a number."""
    if isinstance(b, Tensor):
        return Maximum()(*broadcast_pair(a, b, "maximum"))
    return MaximumScalar(b)(a)

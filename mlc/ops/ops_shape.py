"""Ops that move data around or reduce it: transpose, reshape, broadcast, sum, matmul.

Their gradients are each other: the gradient of ``broadcast_to`` is a ``summation`` over
the broadcast axes, the gradient of ``summation`` is a ``broadcast_to`` back to the input
shape, the gradient of ``reshape`` is a ``reshape`` back, of a permutation its inverse.
``matmul`` sends ``out_grad @ B^T`` to ``A`` and ``A^T @ out_grad`` to ``B``.
"""

from __future__ import annotations

import numpy as np

from ..autograd.tensor import Tensor, TensorOp  # the module: see the end of tensor.py


def normalize_axes(axes, ndim: int, opname: str) -> tuple[int, ...]:
    """``axes`` (None, an int or a sequence, negatives allowed) as sorted non-negative ints."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)):
            raise TypeError(f"{opname}: axes must be ints, got {ax!r}")
        if not -ndim <= ax < ndim:
            raise ValueError(f"{opname}: axis {ax} is out of range for a tensor with {ndim} axes")
        out.append(int(ax) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{opname}: repeated axis in {tuple(axes)}")
    return tuple(sorted(out))


def _same_dtype(a, b, opname: str) -> None:
    """Tensors of two dtypes are refused, not promoted (numpy and needle would promote
    float32 with float64 to float64). Deliberately: one float64 operand, often a constant
    built from a numpy default, would silently turn a float32 model's activations and
    gradients into float64 (twice the bytes and time, and a gradient whose dtype is not its
    parameter's), the kind of slip this course wants caught where it happens. Python and
    numpy *scalars* are weak and never promote: ``x ** 2.0`` and ``x / np.float64(3)``
    stay float32."""
    if a.dtype != b.dtype:
        raise TypeError(f"{opname}: dtypes differ ({a.dtype} and {b.dtype}); mlc does not "
                        f"promote between tensors: build both with the same dtype= (e.g. "
                        f"mlc.Tensor(x.numpy(), dtype=\"{a.dtype}\"))")


# --- permutations -----------------------------------------------------------------------


class Permute(TensorOp):
    """Reorder the axes (a view); the gradient applies the inverse permutation."""

    def __init__(self, axes):
        self.axes = tuple(int(a) for a in axes)

    def compute(self, a):
        return a.permute(self.axes)

    def gradient(self, out_grad, node):
        return permute(out_grad, tuple(np.argsort(self.axes)))


def permute(a, axes):
    axes = tuple(int(x) % max(a.ndim, 1) for x in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"permute: {axes} is not a permutation of the axes of shape {a.shape}")
    return Permute(axes)(a)


class Transpose(Permute):
    """Swap two axes: the last two by default (needle's ``transpose``)."""

    def __init__(self, axes=None, ndim: int = 2):
        self.swap = axes
        i, j = axes if axes is not None else (ndim - 2, ndim - 1)
        perm = list(range(ndim))
        perm[i], perm[j] = perm[j], perm[i]
        super().__init__(perm)

    def gradient(self, out_grad, node):
        return transpose(out_grad, self.swap)  # a swap is its own inverse


def transpose(a, axes=None):
    """Swap axes ``axes = (i, j)``, by default the last two."""
    if axes is None:
        if a.ndim < 2:
            raise ValueError(f"transpose: needs at least 2 axes, got shape {a.shape}")
        return Transpose(None, a.ndim)(a)
    if len(axes) != 2:
        raise ValueError(f"transpose: axes must name two axes to swap, got {axes!r}")
    for ax in axes:
        if not -a.ndim <= ax < a.ndim:
            raise ValueError(f"transpose: axis {ax} is out of range for shape {a.shape}")
    return Transpose((int(axes[0]) % a.ndim, int(axes[1]) % a.ndim), a.ndim)(a)


# --- reshape and broadcast --------------------------------------------------------------


class Reshape(TensorOp):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        # A view is only possible on compact data; compact() is free when it already is.
        return a.compact().reshape(self.shape)

    def gradient(self, out_grad, node):
        return reshape(out_grad, node.inputs[0].shape)


def reshape(a, shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 allowed, got {shape}")
    size = int(np.prod(a.shape, dtype=np.int64))
    if -1 in shape:
        rest = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if rest == 0 or size % rest:
            raise ValueError(f"reshape: cannot reshape shape {a.shape} into {shape}")
        shape = tuple(size // rest if s == -1 else s for s in shape)
    if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) != size:
        raise ValueError(f"reshape: cannot reshape shape {a.shape} ({size} elements) "
                         f"into {shape}")
    if shape == a.shape:
        return a
    return Reshape(shape)(a)


class BroadcastTo(TensorOp):
    """Repeat along new leading axes and along axes of length 1 (a view with stride 0)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        return a.broadcast_to(self.shape)

    def gradient(self, out_grad, node):
        in_shape = node.inputs[0].shape
        lead = len(self.shape) - len(in_shape)
        # every copy of an input element sends its gradient back to it: sum the copies
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(in_shape) if n == 1 and self.shape[lead + i] != 1)
        grad = summation(out_grad, axes) if axes else out_grad
        return reshape(grad, in_shape)


def broadcast_to(a, shape):
    shape = tuple(int(s) for s in shape)
    lead = len(shape) - a.ndim
    if lead < 0 or any(n != 1 and n != m for n, m in zip(a.shape, shape[lead:], strict=True)):
        raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} to {shape}")
    if shape == a.shape:
        return a
    return BroadcastTo(shape)(a)


# --- reductions -------------------------------------------------------------------------


def reduce_axes(a, axes: tuple[int, ...], how: str = "sum", keepdims: bool = False):
    """Reduce an NDArray over several axes at once (``how`` is "sum" or "max")."""
    if not axes:  # nothing to reduce; keep the value, not a copy
        return a
    return getattr(a, how)(axis=tuple(axes), keepdims=keepdims)


class Summation(TensorOp):
    def __init__(self, axes: tuple[int, ...], keepdims: bool = False):
        self.axes = axes
        self.keepdims = keepdims

    def compute(self, a):
        return reduce_axes(a, self.axes, "sum", self.keepdims)

    def gradient(self, out_grad, node):
        in_shape = node.inputs[0].shape
        kept = tuple(1 if i in self.axes else n for i, n in enumerate(in_shape))
        return broadcast_to(reshape(out_grad, kept), in_shape)


def summation(a, axes=None, keepdims: bool = False):
    """Sum over ``axes`` (None: all of them, giving shape ``()``)."""
    return Summation(normalize_axes(axes, a.ndim, "summation"), keepdims)(a)


# --- matmul -----------------------------------------------------------------------------


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: over the leading axes ``shape`` lacks and over the
    axes where ``shape`` has 1 (the adjoint of numpy broadcasting)."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = summation(grad, axes)
    return reshape(grad, shape) if grad.shape != tuple(shape) else grad


class MatMul(TensorOp):
    """``a @ b`` on the last two axes: equal batch axes, ``(..., n, k) @ (k, m)`` or
    ``(n, k) @ (..., k, m)``, one node each way, whose gradient in the 2-D operand sums
    over the batch that shared it."""

    def compute(self, a, b):
        return a @ b

    def gradient(self, out_grad, node):
        a, b = node.inputs
        if b.ndim == 2 and a.ndim > 2:
            # (..., n, k) @ (k, m): the batch folds into the rows, on the way back too
            k, m = b.shape
            ga = matmul(out_grad, transpose(b))
            gb = matmul(transpose(reshape(a, (-1, k))), reshape(out_grad, (-1, m)))
            return ga, gb
        if a.ndim == 2 and b.ndim > 2:
            # (n, k) @ (..., k, m): every batch used the same a, so its gradient adds them
            batch = tuple(range(b.ndim - 2))
            return summation(matmul(out_grad, transpose(b)), batch), matmul(transpose(a), out_grad)
        ga = matmul(out_grad, transpose(b))
        gb = matmul(transpose(a), out_grad)
        return _unbroadcast(ga, a.shape), _unbroadcast(gb, b.shape)


def matmul(a, b):
    """Matrix product on the last two axes, broadcasting the batch axes as numpy does.

    ``(..., n, k) @ (k, m)`` and ``(n, k) @ (..., k, m)`` are one ``MatMul`` node
    (``out.op`` is a MatMul and its ``gradient_as_tuple`` is matmul's, with each gradient
    shaped like its operand, as in needle); the NDArray product folds the batch into the
    rows, one tall 2-D product, in the first case. Other batch shapes are broadcast explicitly
    first, so the gradient of ``broadcast_to`` sums over the batches sharing an operand.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul: expected two Tensors, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both operands need at least 2 axes, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    _same_dtype(a, b, "matmul")
    if b.ndim == 2 or a.ndim == 2:
        return MatMul()(a, b)
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise ValueError(f"matmul: batch axes of shapes {a.shape} and {b.shape} do not "
                         "broadcast") from None
    # batch against batch: explicit broadcast_to nodes, so that the MatMul node sees equal
    # batch axes and the gradient of broadcast_to sums over the batches that shared one
    a = broadcast_to(a, batch + a.shape[-2:])
    b = broadcast_to(b, batch + b.shape[-2:])
    return MatMul()(a, b)

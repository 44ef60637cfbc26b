"""Ops that assemble tensors: tuples, ``stack``/``split``, ``flip``, ``pad``/``crop``,
``dilate``/``undilate``.

They come in adjoint pairs, which is all their gradients need: the gradient of ``stack``
is ``split`` of the incoming gradient and vice versa; ``pad`` and ``crop`` (keep a
window) undo each other, and so do ``dilate`` and ``undilate``; ``flip`` is its own
inverse.
"""

from __future__ import annotations

# the module, not the package: see the end of tensor.py
from ..autograd.tensor import Tensor, TensorOp, TensorTuple, TensorTupleOp
from .. import ndarray as nd
from .ops_shape import normalize_axes

# --- tuples -----------------------------------------------------------------------------


class MakeTensorTuple(TensorTupleOp):
    def compute(self, *args):
        return tuple(args)

    def gradient(self, out_grad, node):
        return tuple(out_grad[i] for i in range(len(out_grad)))


def make_tuple(*args):
    return MakeTensorTuple()(*args)


class TupleGetItem(TensorOp):
    def __init__(self, index: int):
        self.index = index

    def compute(self, a):
        return a[self.index]

    def gradient(self, out_grad, node):
        # only element ``index`` was used; the others get zeros
        (tup,) = node.inputs
        parts = [out_grad if i == self.index else
                 Tensor.make_const(nd.full(x.shape, 0.0, dtype=x.dtype, device=x.device))
                 for i, x in enumerate(tup.realize_cached_data())]
        return make_tuple(*parts)


def tuple_get_item(value: TensorTuple, index: int):
    n = len(value)
    if not -n <= index < n:
        raise IndexError(f"tuple index {index} out of range for a TensorTuple of {n}")
    return TupleGetItem(index % n)(value)


# --- stack and split --------------------------------------------------------------------


def _window(ndim: int, axis: int, sl: slice) -> tuple:
    return tuple(sl if i == axis else slice(None) for i in range(ndim))


class Stack(TensorOp):
    """Join equally shaped tensors along a new axis ``axis``."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, args):
        shape = tuple(args[0].shape)
        out_shape = shape[:self.axis] + (len(args),) + shape[self.axis:]
        one = shape[:self.axis] + (1,) + shape[self.axis:]
        out = nd.empty(out_shape, dtype=args[0].dtype, device=args[0].device)
        for i, arr in enumerate(args):
            out[_window(len(out_shape), self.axis, slice(i, i + 1))] = arr.compact().reshape(one)
        return out

    def gradient(self, out_grad, node):
        return split(out_grad, self.axis)


def stack(args, axis: int = 0):
    """``stack([a, b, c], axis)``: shape (..., 3, ...) with the new axis at ``axis``."""
    args = list(args)
    if not args:
        raise ValueError("stack: needs at least one tensor")
    shape, dtype = args[0].shape, args[0].dtype
    for t in args:
        if t.shape != shape or t.dtype != dtype:
            raise ValueError(f"stack: all tensors need the same shape and dtype, got "
                             f"{shape} {dtype} and {t.shape} {t.dtype}")
    if not -len(shape) - 1 <= axis <= len(shape):
        raise ValueError(f"stack: axis {axis} out of range for tensors of shape {shape}")
    return Stack(axis % (len(shape) + 1))(make_tuple(*args))


class Split(TensorTupleOp):
    """The slices of a tensor along ``axis``, that axis removed (inverse of ``stack``)."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, a):
        shape = tuple(a.shape)
        rest = shape[:self.axis] + shape[self.axis + 1:]
        return tuple(a[_window(a.ndim, self.axis, slice(i, i + 1))].compact().reshape(rest)
                     for i in range(shape[self.axis]))

    def gradient(self, out_grad, node):
        return stack(list(out_grad), self.axis)


def split(a, axis: int = 0):
    """``split(a, axis)``: a TensorTuple of ``a.shape[axis]`` tensors (iterate or index it)."""
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"split: axis {axis} out of range for shape {a.shape}")
    return Split(axis % a.ndim)(a)


# --- flip -------------------------------------------------------------------------------


class Flip(TensorOp):
    """Reverse the order of elements along ``axes``."""

    def __init__(self, axes: tuple[int, ...]):
        self.axes = axes

    def compute(self, a):
        # a view with negative steps, made compact so later kernels read it forwards
        idx = tuple(slice(None, None, -1) if i in self.axes else slice(None)
                    for i in range(a.ndim))
        return a[idx].compact()

    def gradient(self, out_grad, node):
        return flip(out_grad, self.axes)


def flip(a, axes=None):
    return Flip(normalize_axes(axes, a.ndim, "flip"))(a)


# --- pad and crop -----------------------------------------------------------------------


def _check_pads(a, pads, opname: str) -> tuple:
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if len(pads) != a.ndim:
        raise ValueError(f"{opname}: needs one (before, after) pair per axis of shape "
                         f"{a.shape}, got {len(pads)}")
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(f"{opname}: amounts must be >= 0, got {pads}")
    return pads


class Pad(TensorOp):
    """Surround with zeros: ``axes[i] = (before, after)`` for every axis ``i``."""

    def __init__(self, axes: tuple):
        self.axes = axes

    def compute(self, a):
        return a.pad(self.axes)

    def gradient(self, out_grad, node):
        return crop(out_grad, self.axes)


def pad(a, axes):
    """``pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))`` adds a border of one zero in H and W."""
    return Pad(_check_pads(a, axes, "pad"))(a)


class Crop(TensorOp):
    """Drop ``before`` and ``after`` elements of every axis (the adjoint of ``pad``)."""

    def __init__(self, axes: tuple):
        self.axes = axes

    def compute(self, a):
        window = tuple(slice(lo, n - hi)
                       for n, (lo, hi) in zip(a.shape, self.axes, strict=True))
        return a[window].compact()

    def gradient(self, out_grad, node):
        return pad(out_grad, self.axes)


def crop(a, axes):
    axes = _check_pads(a, axes, "crop")
    if any(lo + hi > n for n, (lo, hi) in zip(a.shape, axes, strict=True)):
        raise ValueError(f"crop: cannot remove {axes} from shape {a.shape}")
    return Crop(axes)(a)


# --- dilate / undilate (needle's strided convolution backward) ---------------------------


def _strided_window(shape, axes, step):
    """The index that picks every ``step``-th element along ``axes``, all of the others."""
    return tuple(slice(0, n, step) if i in axes else slice(0, n) for i, n in enumerate(shape))


class Dilate(TensorOp):
    """Insert ``dilation`` zeros after every element along ``axes``: a length ``n`` axis
    becomes ``n * (dilation + 1)`` (as needle does, trailing zeros included).

    This is how needle writes a strided convolution's backward: the output gradient of
    a stride-``s`` convolution, dilated by ``s - 1``, is the gradient of the stride-1
    convolution that computed every position the strided one skipped."""

    def __init__(self, axes: tuple, dilation: int):
        self.axes, self.dilation = axes, dilation

    def compute(self, a):
        shape = tuple(n * (self.dilation + 1) if i in self.axes else n
                      for i, n in enumerate(a.shape))
        out = nd.full(shape, 0.0, dtype=a.dtype, device=a.device)
        out[_strided_window(shape, self.axes, self.dilation + 1)] = a
        return out

    def gradient(self, out_grad, node):
        return undilate(out_grad, self.axes, self.dilation)


class UnDilate(TensorOp):
    """Keep every ``dilation + 1``-th element along ``axes`` (the adjoint of dilate)."""

    def __init__(self, axes: tuple, dilation: int):
        self.axes, self.dilation = axes, dilation

    def compute(self, a):
        return a[_strided_window(a.shape, self.axes, self.dilation + 1)].compact()

    def gradient(self, out_grad, node):
        return dilate(out_grad, self.axes, self.dilation)


def _check_dilation(a, axes, dilation, opname):
    if not isinstance(a, Tensor):
        raise TypeError(f"{opname}: expected a Tensor, got {type(a).__name__}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(f"{opname}: dilation must be an int >= 0, got {dilation!r}")
    return normalize_axes(axes, a.ndim, opname)


def dilate(a, axes, dilation: int):
    """``dilate(x, (2, 3), 1)`` puts a zero after every element of axes 2 and 3."""
    return Dilate(_check_dilation(a, axes, dilation, "dilate"), dilation)(a)


def undilate(a, axes, dilation: int):
    """Every ``dilation + 1``-th element along ``axes``: ``undilate(dilate(x, ax, d), ax, d)``
    is ``x``."""
    axes = _check_dilation(a, axes, dilation, "undilate")
    return UnDilate(axes, dilation)(a)

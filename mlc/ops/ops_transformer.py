"""The ops a transformer needs, with their gradients.

- ``take(table, ids)``: rows of ``table`` picked by integer ``ids`` (an embedding); its
  gradient *scatter-adds* ``out_grad`` back into the rows (a token seen twice gets both
  contributions);
- ``cast(a, dtype)``, ``concat(tensors, axis)``, ``slice(a, starts, stops)``,
  ``where(cond, x, y)``;
- ``erf`` and the exact ``gelu(x) = x * (1 + erf(x / sqrt 2)) / 2``;
- ``softmax(x, axis)`` and ``layer_norm(x, weight, bias, eps)`` as *one op each*: a
  compiler sees the whole softmax and writes one kernel with one ``exp`` per element,
  where the textbook ``exp(x - logsumexp(x))`` computes it twice;
- ``reduce_mean(a, axes, keepdims)``.

Gather and scatter have no kernel in ``mlc.ndarray``: ``take`` and its gradient index with
numpy on the host (a device array is copied there and back). The compiled graph does
not: ``take`` lowers to a load at a computed index, like any injective op.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ndarray as nd
from ..autograd.tensor import Tensor, TensorOp  # the module: see the end of tensor.py
from .ops_mathematic import exp, mul_scalar, power_scalar
from .ops_shape import _same_dtype, broadcast_to, normalize_axes, reshape, summation
from .ops_tensor import pad

_SQRT2, _SQRT_2PI = math.sqrt(2.0), math.sqrt(2.0 * math.pi)


def _on(array: np.ndarray, like) -> nd.NDArray:
    return nd.array(array, dtype=str(array.dtype), device=like.device)


def _kept(shape, axes) -> tuple:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


# --- gather rows and its adjoint ----------------------------------------------------------


class Take(TensorOp):
    """``table[ids]``: shape ``ids.shape + table.shape[1:]``."""

    def compute(self, table, ids):
        return _on(table.numpy()[ids.numpy()], table)

    def gradient(self, out_grad, node):
        table, ids = node.inputs
        return ScatterAddRows(table.shape[0])(out_grad, ids), None


class ScatterAddRows(TensorOp):
    """``out[ids[i]] += g[i]`` into ``rows`` zero rows: the gradient of :class:`Take`."""

    def __init__(self, rows: int):
        self.rows = rows

    def compute(self, g, ids):
        gn = g.numpy()
        out = np.zeros((self.rows,) + gn.shape[ids.ndim:], dtype=gn.dtype)
        np.add.at(out, ids.numpy(), gn)
        return _on(out, g)

    def gradient(self, out_grad, node):
        return Take()(out_grad, node.inputs[1]), None


def take(table, ids):
    """Rows of ``table`` (2-D or more) at the integer ``ids`` (any shape)."""
    if not isinstance(table, Tensor) or not isinstance(ids, Tensor):
        raise TypeError("take: expected two Tensors (table, ids)")
    if not ids.dtype.startswith(("int", "uint")):
        raise TypeError(f"take: ids must be integers, got {ids.dtype}")
    if table.ndim < 1:
        raise ValueError("take: the table needs at least one axis")
    idv = ids.numpy()
    if idv.size and (idv.min() < 0 or idv.max() >= table.shape[0]):
        raise IndexError(f"take: ids must lie in [0, {table.shape[0]}), got "
                         f"[{idv.min()}, {idv.max()}]")
    return Take()(table, ids)


# --- dtype, concatenation, slicing, selection ----------------------------------------------


class Cast(TensorOp):
    def __init__(self, dtype: str):
        self.dtype = nd.shapes.check_dtype(dtype)

    def compute(self, a):
        return a.astype(self.dtype)

    def gradient(self, out_grad, node):
        src = node.inputs[0].dtype
        return cast(out_grad, src) if src in nd.shapes.FLOAT_DTYPES else None


def cast(a, dtype):
    """``a`` converted to ``dtype`` (floats to ints truncate toward zero)."""
    op = Cast(dtype)
    return a if a.dtype == op.dtype else op(a)


class Concat(TensorOp):
    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, *arrays):
        shape = list(arrays[0].shape)
        shape[self.axis] = sum(a.shape[self.axis] for a in arrays)
        out = nd.empty(tuple(shape), dtype=arrays[0].dtype, device=arrays[0].device)
        at = 0
        for a in arrays:
            idx = [slice(None)] * len(shape)
            idx[self.axis] = slice(at, at + a.shape[self.axis])
            out[tuple(idx)] = a
            at += a.shape[self.axis]
        return out

    def gradient(self, out_grad, node):
        grads, at = [], 0
        for x in node.inputs:
            starts = [0] * x.ndim
            stops = list(out_grad.shape)
            starts[self.axis], stops[self.axis] = at, at + x.shape[self.axis]
            grads.append(Slice(starts, stops)(out_grad))
            at += x.shape[self.axis]
        return tuple(grads)


def concat(tensors, axis: int = 0):
    """Join ``tensors`` along ``axis`` (every other axis equal)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    ax = normalize_axes(axis, tensors[0].ndim, "concat")[0]
    for t in tensors[1:]:
        _same_dtype(tensors[0], t, "concat")
        others = [i for i in range(t.ndim) if i != ax]
        if t.ndim != tensors[0].ndim or any(t.shape[i] != tensors[0].shape[i] for i in others):
            raise ValueError(f"concat along axis {ax}: shapes {tensors[0].shape} and "
                             f"{t.shape} differ on another axis")
    return Concat(ax)(*tensors)


class Slice(TensorOp):
    """``a[starts[0]:stops[0], starts[1]:stops[1], ...]`` (step 1, every axis given)."""

    def __init__(self, starts, stops):
        self.starts, self.stops = tuple(int(s) for s in starts), tuple(int(s) for s in stops)

    def compute(self, a):
        box = zip(self.starts, self.stops, strict=True)
        return a[tuple(slice(lo, hi) for lo, hi in box)].compact()

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        return pad(out_grad, tuple((lo, n - hi) for lo, hi, n in
                                   zip(self.starts, self.stops, shape, strict=True)))


def slice_(a, starts, stops):
    """The block ``[starts, stops)`` of ``a``; ``starts``/``stops`` give every axis."""
    if len(starts) != a.ndim or len(stops) != a.ndim:
        raise ValueError(f"slice: give a start and a stop for each of the {a.ndim} axes")
    for lo, hi, n in zip(starts, stops, a.shape, strict=True):
        if not 0 <= lo <= hi <= n:
            raise ValueError(f"slice: [{lo}, {hi}) is not inside an axis of length {n} "
                             f"(shape {a.shape})")
    return Slice(starts, stops)(a)


class Where(TensorOp):
    """``x`` where ``cond`` is nonzero, else ``y`` (all three of one shape)."""

    def compute(self, cond, x, y):
        return _on(np.where(cond.numpy() != 0, x.numpy(), y.numpy()), x)

    def gradient(self, out_grad, node):
        cond = node.inputs[0]
        zero = Tensor.make_const(nd.full(out_grad.shape, 0.0, dtype=out_grad.dtype,
                                         device=out_grad.device))
        return None, Where()(cond, out_grad, zero), Where()(cond, zero, out_grad)


def where(cond, x, y):
    if not cond.shape == x.shape == y.shape:
        raise ValueError(f"where: cond, x and y need one shape, got {cond.shape}, "
                         f"{x.shape}, {y.shape} (broadcast_to first)")
    _same_dtype(x, y, "where")
    return Where()(cond, x, y)


# --- erf, gelu --------------------------------------------------------------------------


class Erf(TensorOp):
    def compute(self, a):
        return a.erf()

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        return out_grad * mul_scalar(exp(-(x * x)), 2.0 / math.sqrt(math.pi))


def erf(a):
    return Erf()(a)


class GELU(TensorOp):
    """The exact GELU, ``x * Phi(x)`` with ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``."""

    def compute(self, a):
        return a * (((a / _SQRT2).erf() + 1.0) * 0.5)

    def gradient(self, out_grad, node):
        x = node.inputs[0]
        phi = mul_scalar(erf(mul_scalar(x, 1 / _SQRT2)) + 1.0, 0.5)
        density = mul_scalar(exp(mul_scalar(x * x, -0.5)), 1 / _SQRT_2PI)
        return out_grad * (phi + x * density)


def gelu(a):
    return GELU()(a)


# --- softmax, layer norm, mean: composite ops -------------------------------------------


class Softmax(TensorOp):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``: one ``exp`` per element."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, x):
        ax = (self.axis,)
        e = (x - x.max(axis=ax, keepdims=True).broadcast_to(x.shape)).exp()
        return e / e.sum(axis=ax, keepdims=True).broadcast_to(x.shape)

    def gradient(self, out_grad, node):
        s = node
        dot = summation(out_grad * s, (self.axis,), keepdims=True)
        return s * (out_grad - broadcast_to(dot, s.shape))


def softmax(a, axis: int = -1):
    """Probabilities along ``axis`` (each slice sums to 1), one op."""
    return Softmax(normalize_axes(axis, a.ndim, "softmax")[0])(a)


class ReduceMean(TensorOp):
    def __init__(self, axes, keepdims: bool = False):
        self.axes, self.keepdims = tuple(axes), keepdims

    def compute(self, a):
        if not self.axes:
            return a
        count = math.prod(a.shape[i] for i in self.axes)
        return a.sum(axis=self.axes, keepdims=self.keepdims) / count

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        count = math.prod(shape[i] for i in self.axes) if self.axes else 1
        return mul_scalar(broadcast_to(reshape(out_grad, _kept(shape, self.axes)), shape),
                          1.0 / count)


def reduce_mean(a, axes=None, keepdims: bool = False):
    return ReduceMean(normalize_axes(axes, a.ndim, "reduce_mean"), keepdims)(a)


class LayerNorm(TensorOp):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis; ``weight`` and
    ``bias`` have the last axis's length."""

    def __init__(self, eps: float):
        self.eps = float(eps)

    def compute(self, x, weight, bias):
        ax, shape = (x.ndim - 1,), x.shape
        d = x - (x.sum(axis=ax, keepdims=True) / shape[-1]).broadcast_to(shape)
        var = (d * d).sum(axis=ax, keepdims=True) / shape[-1]
        xhat = d / ((var + self.eps) ** 0.5).broadcast_to(shape)
        return xhat * weight.broadcast_to(shape) + bias.broadcast_to(shape)

    def gradient(self, out_grad, node):
        x, w, _ = node.inputs
        shape, ax = x.shape, (x.ndim - 1,)
        lead = tuple(range(x.ndim - 1))
        d = x - broadcast_to(reduce_mean(x, ax, keepdims=True), shape)
        inv = broadcast_to(power_scalar(reduce_mean(d * d, ax, keepdims=True) + self.eps,
                                        -0.5), shape)
        xhat = d * inv
        gx_hat = out_grad * broadcast_to(w, shape)
        mean_g = broadcast_to(reduce_mean(gx_hat, ax, keepdims=True), shape)
        mean_gx = broadcast_to(reduce_mean(gx_hat * xhat, ax, keepdims=True), shape)
        gx = inv * (gx_hat - mean_g - xhat * mean_gx)
        return gx, summation(out_grad * xhat, lead), summation(out_grad, lead)


def layer_norm(x, weight, bias, eps: float = 1e-5):
    """Normalise the last axis of ``x`` (any leading axes), then scale and shift."""
    if weight.shape != (x.shape[-1],) or bias.shape != (x.shape[-1],):
        raise ValueError(f"layer_norm: weight and bias must have shape ({x.shape[-1]},), got "
                         f"{weight.shape} and {bias.shape}")
    return LayerNorm(eps)(x, weight, bias)

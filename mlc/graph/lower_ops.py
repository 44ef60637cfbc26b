"""Helpers for writing a graph op as a ``te.compute`` (each op's own lowering is its
registry entry's ``te``, see :mod:`mlc.graph.ops`).

Elementwise ops are one expression per element; a
broadcast or an injective op is a *load at a computed index* (``x[i, 0]``,
``x[flat // 8, flat % 8]``, ``x[n, h * s + kh, w * s + kw, c]``); reductions use
``te.reduce_axis``; matmul is the textbook ``te.sum(A[i, k] * B[k, j], axis=k)``. Because
every op is an expression of loads, the schedule can inline a producer into its consumer
(``compute_inline``): that substitution *is* fusion at the loop level.

A 0-d tensor (a sum over every axis) is stored with shape ``(1,)``: one element.
"""

from __future__ import annotations

import math

from .. import te, tir
from ..tir.expr import is_float


def te_shape(shape) -> tuple:
    return tuple(shape) if shape else (1,)


def load(t, node, idx):
    """``t[idx]`` for the te tensor ``t`` holding ``node`` (a 0-d node is ``t[0]``)."""
    if not node.shape:
        return t[0]
    return t[tuple(idx)]


def const(v, dtype):
    return tir.const(float(v), dtype)


def power(x, p, dtype):
    """``x ** p`` as te: small integer powers by repeated products, square roots by
    ``sqrt``, the rest through ``exp(p * log(x))``."""
    if p == 0:
        return const(1.0, dtype)
    if p == 0.5:
        return te.sqrt(x)
    if p == -0.5:
        return const(1.0, dtype) / te.sqrt(x)
    if float(p).is_integer() and abs(p) <= 4:
        out = x
        for _ in range(int(abs(p)) - 1):
            out = out * x
        return out if p > 0 else const(1.0, dtype) / out
    return te.exp(const(p, dtype) * te.log(x))


def divide(a, b, dtype):
    """``a / b``; on integers ONNX's (and C's) division, which truncates toward zero:
    ``a // b`` rounds down, so it is one too small when the remainder is non-zero and the
    signs differ (``-7 / 2`` is ``-3``, ``-7 // 2`` is ``-4``)."""
    if is_float(dtype):
        return a / b
    q = te.floordiv(a, b)
    if dtype.startswith("uint"):
        return q
    zero = tir.const(0, dtype)
    inexact = tir.all_(te.floormod(a, b) != zero, (a < zero) != (b < zero))
    return te.if_then_else(inexact, q + tir.const(1, dtype), q)


def binary_power(x, y, dtype):
    """``x ** y`` elementwise as ``exp(y * log|x|)`` with the sign put back: a negative
    base to an odd integer power is negative, to an even one positive, to a fractional one
    NaN, and a zero base is decided without a log (as in numpy). Integers are computed in
    float64 and rounded (ONNX's integer Pow; float64 holds every power that fits int32
    closely enough to round right)."""
    wide = dtype if is_float(dtype) else "float64"
    xf, yf = (v if v.dtype == wide else tir.cast(wide, v) for v in (x, y))
    zero = tir.const(0.0, wide)
    mag = te.exp(yf * te.log(te.abs(xf)))
    yi = tir.cast("int64", yf)
    integral = tir.cast(wide, yi) == yf
    odd = te.floormod(yi, 2) == tir.const(1, "int64")
    nan = tir.const(math.nan, wide)
    neg = te.if_then_else(integral, te.if_then_else(odd, zero - mag, mag), nan)
    # a zero base never reaches log (log(0) raises in the python target): 0 ** y is 0 for
    # y > 0, 1 for y == 0, inf for y < 0
    at_zero = te.if_then_else(yf > zero, zero, te.if_then_else(
        yf == zero, tir.const(1.0, wide), tir.const(math.inf, wide)))
    out = te.if_then_else(xf == zero, at_zero, te.if_then_else(xf < zero, neg, mag))
    if is_float(dtype):
        return out
    half = te.if_then_else(out < zero, tir.const(-0.5, wide), tir.const(0.5, wide))
    return tir.cast(dtype, out + half)                  # round half away from zero


def _unravel(flat, shape):
    """Row-major multi-index of the flat index ``flat`` in ``shape``."""
    idx = []
    for k in range(len(shape)):
        stride = math.prod(shape[k + 1:])
        v = te.floordiv(flat, stride) if stride > 1 else flat
        idx.append(te.floormod(v, shape[k]) if k > 0 else v)
    return idx


def reshape_index(i, out_shape, in_shape):
    squeeze_out = [(n, v) for n, v in zip(out_shape, i, strict=True) if n != 1]
    squeeze_in = [n for n in in_shape if n != 1]
    if [n for n, _ in squeeze_out] == squeeze_in:  # only axes of length 1 change
        it = iter(v for _, v in squeeze_out)
        return [0 if n == 1 else next(it) for n in in_shape]
    flat = 0
    for k, v in enumerate(i):
        stride = math.prod(out_shape[k + 1:])
        flat = v * stride if k == 0 else flat + v * stride
    return _unravel(flat, in_shape)

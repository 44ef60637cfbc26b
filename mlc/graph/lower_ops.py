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

"""Numba kernels for elementwise operations on flat buffers.

Three kernels cover every elementwise op: ``ewise_binary(a, b, out, op)``,
``scalar_binary(a, val, out, op)`` and ``ewise_unary(a, out, op)``. The op code picks one
of the loops below; the branch sits *outside* the loop, so each loop is a tight
``for i in range(...)`` over slices of the block, which LLVM vectorises. One compiled
kernel per dtype serves all ops, which keeps Numba's compile time (paid once, then
cached) small.

Work is split into blocks of ``BLOCK`` elements; ``prange`` hands blocks to threads in
the parallel build (see ``jit.py``).

``exp_f32`` is a float32 exp that LLVM can vectorise: the libm ``expf`` a plain loop calls
is a scalar function call per element, several times slower than numpy's SIMD exp.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import math

from ...opcodes import (ABS, ADD, DIV, EQ, ERF, EXP, GE, GT, LE, LOG, LT, MAX, MIN, MUL, NE, NEG,
                        POW, RDIV, RPOW, RSUB, SQRT, SUB, TANH)
from .jit import kernel

BLOCK = 4096


@njit(inline="always")
def maximum(x, y):
    """numpy's maximum: NaN wins (``x > y`` alone would drop a NaN in ``x``)."""
    return x if (x > y or x != x) else y


@njit(inline="always")
def minimum(x, y):
    return x if (x < y or x != x) else y


@kernel()
def ewise_binary(a, b, out, op):
    n = out.size
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n)
        # Loop over slices from 0: Numba then knows the index is never negative and drops
        # its wrap-around check, which would otherwise stop LLVM from vectorising.
        x, y, z = a[lo:hi], b[lo:hi], out[lo:hi]
        if op == ADD:
            for i in range(hi - lo):
                z[i] = x[i] + y[i]
        elif op == SUB:
            for i in range(hi - lo):
                z[i] = x[i] - y[i]
        elif op == MUL:
            for i in range(hi - lo):
                z[i] = x[i] * y[i]
        elif op == DIV:
            for i in range(hi - lo):
                z[i] = x[i] / y[i]
        elif op == POW:
            for i in range(hi - lo):
                z[i] = x[i] ** y[i]
        elif op == MAX:
            for i in range(hi - lo):
                z[i] = maximum(x[i], y[i])
        elif op == MIN:
            for i in range(hi - lo):
                z[i] = minimum(x[i], y[i])
        elif op == EQ:
            for i in range(hi - lo):
                z[i] = x[i] == y[i]
        elif op == NE:
            for i in range(hi - lo):
                z[i] = x[i] != y[i]
        elif op == LT:
            for i in range(hi - lo):
                z[i] = x[i] < y[i]
        elif op == LE:
            for i in range(hi - lo):
                z[i] = x[i] <= y[i]
        elif op == GT:
            for i in range(hi - lo):
                z[i] = x[i] > y[i]
        elif op == GE:
            for i in range(hi - lo):
                z[i] = x[i] >= y[i]


@kernel()
def scalar_binary(a, val, out, op):
    """Like ``ewise_binary`` with a scalar of the array's dtype in place of ``b``."""
    n = out.size
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n)
        x, z = a[lo:hi], out[lo:hi]
        if op == ADD:
            for i in range(hi - lo):
                z[i] = x[i] + val
        elif op == SUB:
            for i in range(hi - lo):
                z[i] = x[i] - val
        elif op == RSUB:
            for i in range(hi - lo):
                z[i] = val - x[i]
        elif op == MUL:
            for i in range(hi - lo):
                z[i] = x[i] * val
        elif op == DIV:
            for i in range(hi - lo):
                z[i] = x[i] / val
        elif op == RDIV:
            for i in range(hi - lo):
                z[i] = val / x[i]
        elif op == POW:
            for i in range(hi - lo):
                z[i] = x[i] ** val
        elif op == RPOW:
            for i in range(hi - lo):
                z[i] = val ** x[i]
        elif op == MAX:
            for i in range(hi - lo):
                z[i] = maximum(x[i], val)
        elif op == MIN:
            for i in range(hi - lo):
                z[i] = minimum(x[i], val)
        elif op == EQ:
            for i in range(hi - lo):
                z[i] = x[i] == val
        elif op == NE:
            for i in range(hi - lo):
                z[i] = x[i] != val
        elif op == LT:
            for i in range(hi - lo):
                z[i] = x[i] < val
        elif op == LE:
            for i in range(hi - lo):
                z[i] = x[i] <= val
        elif op == GT:
            for i in range(hi - lo):
                z[i] = x[i] > val
        elif op == GE:
            for i in range(hi - lo):
                z[i] = x[i] >= val


@kernel()
def ewise_unary(a, out, op):
    n = out.size
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n)
        x, z = a[lo:hi], out[lo:hi]
        if op == NEG:
            for i in range(hi - lo):
                z[i] = -x[i]
        elif op == ABS:
            for i in range(hi - lo):
                z[i] = abs(x[i])
        elif op == LOG:
            for i in range(hi - lo):
                z[i] = np.log(x[i])
        elif op == EXP:
            for i in range(hi - lo):
                z[i] = np.exp(x[i])
        elif op == TANH:
            for i in range(hi - lo):
                z[i] = np.tanh(x[i])
        elif op == SQRT:
            for i in range(hi - lo):
                z[i] = np.sqrt(x[i])
        elif op == ERF:
            for i in range(hi - lo):
                z[i] = math.erf(x[i])


@kernel()
def astype(a, out):
    """``z[i] = x[i]`` converts to out's dtype (floats to ints truncate toward zero)."""
    n = out.size
    for blk in prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(lo + BLOCK, n)
        x, z = a[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            z[i] = x[i]


# ---- a vectorisable float32 exp (the polynomial of Cephes' expf) -------------------------
# exp(x) = 2**k * exp(r) with k = round(x / ln 2) and |r| <= ln(2)/2; exp(r) is a degree-7
# polynomial and 2**k is built from its bits, (k + 127) << 23, written through an int32
# view of a float32 scratch buffer (Numba has no scalar bitcast). The fast path covers
# x in [-87, 88], where 2**k is a normal float; anything else (overflow, denormals, NaN)
# falls back to libm, which is rare.
_f = np.float32
_LO, _HI = _f(-87.0), _f(88.0)
_LOG2E, _HALF, _ONE = _f(1.44269504088896341), _f(0.5), _f(1.0)
_C1, _C2 = _f(0.693359375), _f(-2.12194440e-4)  # ln 2 = C1 - C2, C1 exact in few bits
_P0, _P1, _P2 = _f(1.9875691500e-4), _f(1.3981999507e-3), _f(8.3334519073e-3)
_P3, _P4, _P5 = _f(4.1665795894e-2), _f(1.6666665459e-1), _f(5.0000001201e-1)
_TWO23, _BIAS = _f(8388608.0), _f(127.0 * 8388608.0)
EXP_BLOCK = 2048


@kernel(fastmath={"contract"})
def exp_f32(a, out):
    n = a.size
    for blk in prange((n + EXP_BLOCK - 1) // EXP_BLOCK):
        lo = blk * EXP_BLOCK
        m = min(EXP_BLOCK, n - lo)
        x_in = a[lo:lo + m]
        y = out[lo:lo + m]
        bits = np.empty(EXP_BLOCK, np.int32)
        scale = bits.view(np.float32)
        n_slow = 0
        for i in range(m):
            x = x_in[i]
            n_slow += not (x >= _LO and x <= _HI)
            x = x if x > _LO else _LO  # clamp (NaN becomes _LO; fixed below)
            x = x if x < _HI else _HI
            k = np.floor(x * _LOG2E + _HALF)
            r = x - k * _C1 - k * _C2
            y[i] = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * (r * r) \
                + r + _ONE
            bits[i] = k * _TWO23 + _BIAS  # the bits of the float 2**k
        for i in range(m):
            y[i] *= scale[i]
        if n_slow:
            for i in range(m):
                x = x_in[i]
                if not (x >= _LO and x <= _HI):
                    y[i] = np.exp(x)

"""Numba-CUDA kernels over flat device buffers.

Every kernel uses a **grid-stride loop**: thread ``t`` of ``T`` handles elements
``t, t + T, t + 2T, ...``. The result never depends on how many threads were launched,
so the backend (``cuda/__init__.py``) can size the grid to the data on a GPU and keep it tiny in
Numba's CUDA simulator, which runs one OS thread per CUDA thread.

Kernels that need typed shared memory (the reduction and the matmul) are built per dtype
by small factory functions, since ``cuda.shared.array`` needs its dtype and size at
compile time.

The simulator executes the kernel bodies as Python on numpy scalars, where ``math.log(0)``
raises instead of returning ``-inf``. The guards around ``log``, ``sqrt`` and ``exp``
below give numpy's answers on both the simulator and a real GPU.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from ...opcodes import (ABS, ADD, DIV, EQ, ERF, EXP, GATHER, GE, GT, LE, LOG, LT, MAX, MIN, MUL, NE,
                        NEG, POW, RDIV, RPOW, RSUB, SCATTER, SQRT, SUB, SUM, TANH)


@cuda.jit(device=True)
def _store_binary(out, i, op, x, y):
    """``out[i] = x <op> y``; each branch stores, so each keeps its own result type."""
    if op == ADD:
        out[i] = x + y
    elif op == SUB:
        out[i] = x - y
    elif op == MUL:
        out[i] = x * y
    elif op == DIV:
        out[i] = x / y
    elif op == POW:
        out[i] = x ** y
    elif op == MAX:
        out[i] = x if (x > y or x != x) else y  # NaN wins, as in numpy
    elif op == MIN:
        out[i] = x if (x < y or x != x) else y
    elif op == EQ:
        out[i] = x == y
    elif op == NE:
        out[i] = x != y
    elif op == LT:
        out[i] = x < y
    elif op == LE:
        out[i] = x <= y
    elif op == GT:
        out[i] = x > y
    elif op == GE:
        out[i] = x >= y


@cuda.jit
def ewise_binary(a, b, out, op):
    i = cuda.grid(1)
    while i < out.size:
        _store_binary(out, i, op, a[i], b[i])
        i += cuda.gridsize(1)


@cuda.jit
def scalar_binary(a, val, out, op):
    """``a <op> val``; the reflected codes RSUB/RDIV/RPOW compute ``val <op> a``."""
    i = cuda.grid(1)
    while i < out.size:
        if op == RSUB:
            _store_binary(out, i, SUB, val, a[i])
        elif op == RDIV:
            _store_binary(out, i, DIV, val, a[i])
        elif op == RPOW:
            _store_binary(out, i, POW, val, a[i])
        else:
            _store_binary(out, i, op, a[i], val)
        i += cuda.gridsize(1)


@cuda.jit
def ewise_unary(a, out, op):
    i = cuda.grid(1)
    while i < out.size:
        x = a[i]
        if op == NEG:
            out[i] = -x
        elif op == ABS:
            out[i] = abs(x)
        elif op == LOG:
            if x > 0:
                out[i] = math.log(x)
            elif x == 0:
                out[i] = -math.inf
            else:
                out[i] = math.nan
        elif op == EXP:
            if x > 709.0:  # beyond float64's range (and far beyond float32's)
                out[i] = math.inf
            else:
                out[i] = math.exp(x)
        elif op == TANH:
            out[i] = math.tanh(x)
        elif op == SQRT:
            if x >= 0:
                out[i] = math.sqrt(x)
            else:
                out[i] = math.nan
        elif op == ERF:
            out[i] = math.erf(x)
        i += cuda.gridsize(1)


@cuda.jit
def astype(a, out):
    i = cuda.grid(1)
    while i < out.size:
        out[i] = a[i]
        i += cuda.gridsize(1)


@cuda.jit
def fill(out, val):
    i = cuda.grid(1)
    while i < out.size:
        out[i] = val
        i += cuda.gridsize(1)


@cuda.jit
def walk(flat, strided, n, shape, strides, offset, mode, value):
    """Element ``k`` of the view (row-major) is ``strided[pos]``: unravel k over shape.

    Neighbouring threads take neighbouring k, so accesses to the compact side coalesce.
    """
    k = cuda.grid(1)
    while k < n:
        rem = k
        pos = offset
        for d in range(len(shape) - 1, -1, -1):
            pos += (rem % shape[d]) * strides[d]
            rem //= shape[d]
        if mode == GATHER:
            flat[k] = strided[pos]
        elif mode == SCATTER:
            strided[pos] = flat[k]
        else:
            strided[pos] = value
        k += cuda.gridsize(1)


@functools.lru_cache(maxsize=None)
def reduce_rows_kernel(dtype: str, tpb: int):
    """Block-per-row tree reduction of a compact (outer, R) array, shared memory of dtype."""
    nb_dtype = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def kernel(a, out, R, op, zero):
        buf = cuda.shared.array(tpb, dtype=nb_dtype)
        tid = cuda.threadIdx.x
        row = cuda.blockIdx.x
        while row < out.size:  # grid-stride over rows, one block per row at a time
            base = row * R
            acc = zero if op == SUM else a[base]  # max may start from any element
            r = tid
            while r < R:  # each thread folds a strided slice of the row
                x = a[base + r]
                if op == SUM:
                    acc += x
                elif x > acc or x != x:
                    acc = x
                r += tpb
            buf[tid] = acc
            cuda.syncthreads()
            s = tpb // 2
            while s > 0:  # tree: halve the active threads each step
                if tid < s:
                    if op == SUM:
                        buf[tid] += buf[tid + s]
                    elif buf[tid + s] > buf[tid] or buf[tid + s] != buf[tid + s]:
                        buf[tid] = buf[tid + s]
                cuda.syncthreads()
                s //= 2
            if tid == 0:
                out[row] = buf[0]
            cuda.syncthreads()  # buf is reused by the next row
            row += cuda.gridDim.x

    return kernel


@cuda.jit
def reduce_columns(a, out, R, inner, op, zero):
    """Thread-per-output reduction of a compact (outer, R, inner) array over R.

    Thread ``t`` walks down column ``t``; neighbouring threads read neighbouring
    addresses, so every load coalesces without shared memory.
    """
    t = cuda.grid(1)
    while t < out.size:
        o = t // inner
        i = t % inner
        base = o * R * inner + i
        acc = zero if op == SUM else a[base]
        for r in range(R):
            x = a[base + r * inner]
            if op == SUM:
                acc += x
            elif x > acc or x != x:
                acc = x
        out[t] = acc
        t += cuda.gridsize(1)


@cuda.jit
def matmul_naive(a, b, out, m, n, p, batch, zero):
    """One thread per output element: ``n`` loads of A and of B each, from global memory."""
    t = cuda.grid(1)
    while t < batch * m * p:
        k = t // (m * p)
        i = (t // p) % m
        j = t % p
        acc = zero
        for q in range(n):
            # zero + x: widen int8 to the accumulator type before multiplying
            acc += (zero + a[(k * m + i) * n + q]) * b[(k * n + q) * p + j]
        out[t] = acc
        t += cuda.gridsize(1)


@functools.lru_cache(maxsize=None)
def matmul_tiled_kernel(acc_dtype: str, tile: int):
    """Shared-memory tiled matmul: a block computes a tile x tile block of C.

    For each step along k the block loads one tile of A and one of B into shared memory
    (each thread loads one element of each), waits, and then every thread reads ``tile``
    values of each from fast shared memory: global loads drop by a factor of ``tile``.
    The tiles are staged in the accumulator's dtype (int8 inputs widen to int32 once, as
    they are loaded).
    """
    nb_dtype = numba.from_dtype(np.dtype(acc_dtype))

    @cuda.jit
    def kernel(a, b, out, m, n, p, batch, zero):
        sa = cuda.shared.array((tile, tile), dtype=nb_dtype)
        sb = cuda.shared.array((tile, tile), dtype=nb_dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tiles_i = (m + tile - 1) // tile
        tiles_j = (p + tile - 1) // tile
        blk = cuda.blockIdx.x
        while blk < batch * tiles_i * tiles_j:  # grid-stride over output tiles
            k = blk // (tiles_i * tiles_j)
            i = (blk // tiles_j) % tiles_i * tile + ty
            j = blk % tiles_j * tile + tx
            acc = zero
            for q0 in range(0, n, tile):
                # stage: each thread copies one element of each tile (0 outside)
                sa[ty, tx] = a[(k * m + i) * n + q0 + tx] if i < m and q0 + tx < n else 0
                sb[ty, tx] = b[(k * n + q0 + ty) * p + j] if q0 + ty < n and j < p else 0
                cuda.syncthreads()
                for q in range(tile):
                    acc += sa[ty, q] * sb[q, tx]
                cuda.syncthreads()  # everyone is done before the tiles are overwritten
            if i < m and j < p:
                out[(k * m + i) * p + j] = acc
            blk += cuda.gridDim.x

    return kernel

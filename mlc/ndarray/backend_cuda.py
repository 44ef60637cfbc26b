"""The CUDA backend: the device interface implemented with Numba-CUDA kernels.

Buffers are device arrays (``cuda.device_array``): data stays on the GPU between
operations and crosses to the host only in ``from_numpy`` / ``to_numpy`` (that is, in
``NDArray.to()`` and ``.numpy()``). The kernels live in ``cuda_kernels.py``; this module
picks launch sizes and calls them.

Launch sizes: on a GPU, ``THREADS`` threads per block and enough blocks to cover the
data (capped; the kernels' grid-stride loops cover the rest). In Numba's CUDA simulator
every CUDA thread is an OS thread and launches are slow, so the grid is kept to a few
dozen threads; the results are the same, since no kernel depends on the grid size.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import cuda_kernels as K
from .device import cuda_simulated
from .shapes import simplify_view

__device_name__ = "cuda"

SIMULATED = cuda_simulated()
THREADS = 32 if SIMULATED else 256      # threads per block (1-d kernels)
MAX_BLOCKS = 2 if SIMULATED else 4096   # grid-stride loops cover anything beyond
TILE = 4 if SIMULATED else 16           # matmul tile: TILE x TILE threads per block


class Array:
    """A flat buffer of ``size`` elements of ``dtype`` in GPU memory."""

    def __init__(self, size: int, dtype: str = "float32"):
        self.array = cuda.device_array(size, dtype=np.dtype(dtype))
        self.dtype = np.dtype(dtype).name

    @property
    def size(self) -> int:
        return self.array.size


def _grid(n: int) -> tuple[int, int]:
    """(blocks, threads per block) for ``n`` independent pieces of work."""
    return max(1, min(MAX_BLOCKS, (n + THREADS - 1) // THREADS)), THREADS


def _scalar(val, dtype):
    return np.dtype(dtype).type(val)


# ---- transfers and strided views -----------------------------------------------------------

def to_numpy(a: Array, shape, strides, offset) -> np.ndarray:
    host = a.array.copy_to_host()
    return np.lib.stride_tricks.as_strided(
        host[offset:], shape=tuple(shape), strides=tuple(s * host.itemsize for s in strides))


def from_numpy(a: np.ndarray, out: Array) -> None:
    if out.size:
        out.array.copy_to_device(np.ascontiguousarray(a, dtype=out.array.dtype).reshape(-1))


def fill(out: Array, val) -> None:
    if out.size:
        K.fill[_grid(out.size)](out.array, _scalar(val, out.array.dtype))


def _walk(flat, strided: Array, shape, strides, offset, mode, value=0):
    n = int(np.prod(shape)) if len(shape) else 1
    if n == 0:
        return
    shp, st = simplify_view(shape, strides)
    K.walk[_grid(n)](flat.array, strided.array, n, tuple(shp), tuple(st), offset, mode,
                     _scalar(value, strided.array.dtype))


def compact(a: Array, out: Array, shape, strides, offset) -> None:
    _walk(out, a, shape, strides, offset, K.GATHER)


def ewise_setitem(a: Array, out: Array, shape, strides, offset) -> None:
    _walk(a, out, shape, strides, offset, K.SCATTER)


def scalar_setitem(size: int, val, out: Array, shape, strides, offset) -> None:
    _walk(out, out, shape, strides, offset, K.FILL, val)


# ---- elementwise ---------------------------------------------------------------------------

def _binary(code):
    def ewise(a: Array, b: Array, out: Array) -> None:
        if out.size:
            K.ewise_binary[_grid(out.size)](a.array, b.array, out.array, code)

    return ewise


def _scalar_op(code):
    def scalar(a: Array, val, out: Array) -> None:
        if out.size:
            K.scalar_binary[_grid(out.size)](a.array, _scalar(val, a.array.dtype), out.array,
                                             code)

    return scalar


def _unary(code):
    def unary(a: Array, out: Array) -> None:
        if out.size:
            K.ewise_unary[_grid(out.size)](a.array, out.array, code)

    return unary


ewise_add, scalar_add = _binary(K.ADD), _scalar_op(K.ADD)
ewise_sub, scalar_sub, scalar_rsub = _binary(K.SUB), _scalar_op(K.SUB), _scalar_op(K.RSUB)
ewise_mul, scalar_mul = _binary(K.MUL), _scalar_op(K.MUL)
ewise_div, scalar_div, scalar_rdiv = _binary(K.DIV), _scalar_op(K.DIV), _scalar_op(K.RDIV)
ewise_power, scalar_power, scalar_rpower = _binary(K.POW), _scalar_op(K.POW), _scalar_op(K.RPOW)
ewise_maximum, scalar_maximum = _binary(K.MAX), _scalar_op(K.MAX)
ewise_minimum, scalar_minimum = _binary(K.MIN), _scalar_op(K.MIN)
ewise_eq, scalar_eq = _binary(K.EQ), _scalar_op(K.EQ)
ewise_ne, scalar_ne = _binary(K.NE), _scalar_op(K.NE)
ewise_lt, scalar_lt = _binary(K.LT), _scalar_op(K.LT)
ewise_le, scalar_le = _binary(K.LE), _scalar_op(K.LE)
ewise_gt, scalar_gt = _binary(K.GT), _scalar_op(K.GT)
ewise_ge, scalar_ge = _binary(K.GE), _scalar_op(K.GE)

ewise_neg = _unary(K.NEG)
ewise_log = _unary(K.LOG)
ewise_exp = _unary(K.EXP)
ewise_tanh = _unary(K.TANH)
ewise_abs = _unary(K.ABS)
ewise_sqrt = _unary(K.SQRT)


def ewise_astype(a: Array, out: Array) -> None:
    if out.size:
        K.astype[_grid(out.size)](a.array, out.array)


# ---- reductions ----------------------------------------------------------------------------

def _reduce(op):
    def reduce(a: Array, out: Array, reduce_size: int, inner_size: int = 1) -> None:
        if out.size == 0:
            return
        if reduce_size == 0:  # an empty sum is 0 (NDArray rejects an empty max)
            fill(out, 0)
            return
        zero = _scalar(0, out.array.dtype)
        if inner_size == 1:  # one block per row, a tree in shared memory
            kernel = K.reduce_rows_kernel(out.dtype, THREADS)
            kernel[min(out.size, MAX_BLOCKS), THREADS](a.array, out.array, reduce_size, op,
                                                       zero)
        else:  # one thread per output, walking down its column
            K.reduce_columns[_grid(out.size)](a.array, out.array, reduce_size, inner_size,
                                              op, zero)

    return reduce


reduce_sum = _reduce(K.SUM)
reduce_max = _reduce(K.MAX_)


# ---- matrix products -----------------------------------------------------------------------

def matmul_tiled(a: Array, b: Array, out: Array, m: int, n: int, p: int,
                 batch: int = 1) -> None:
    """Shared-memory tiled ``out[k] = a[k] @ b[k]`` (see ``cuda_kernels``)."""
    if out.size == 0:
        return
    tiles = batch * ((m + TILE - 1) // TILE) * ((p + TILE - 1) // TILE)
    kernel = K.matmul_tiled_kernel(out.dtype, TILE)
    kernel[min(tiles, MAX_BLOCKS), (TILE, TILE)](a.array, b.array, out.array, m, n, p, batch,
                                                 _scalar(0, out.array.dtype))


def matmul_naive(a: Array, b: Array, out: Array, m: int, n: int, p: int,
                 batch: int = 1) -> None:
    """One thread per output element, no shared memory: the baseline tiling improves on."""
    if out.size:
        K.matmul_naive[_grid(out.size)](a.array, b.array, out.array, m, n, p, batch,
                                        _scalar(0, out.array.dtype))


matmul = matmul_tiled

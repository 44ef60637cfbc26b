"""The CUDA backend: the device interface implemented with Numba-CUDA kernels.

Buffers are device arrays (``cuda.device_array``): data stays on the GPU between
operations and crosses to the host only in ``from_numpy`` / ``to_numpy`` (that is, in
``NDArray.to()`` and ``.numpy()``). The kernels live in ``kernels.py``; this module
picks launch sizes and calls them.

Launch sizes: on a GPU, ``THREADS`` threads per block and enough blocks to cover the
data (capped; the kernels' grid-stride loops cover the rest). In Numba's CUDA simulator
every CUDA thread is an OS thread and launches are slow, so the grid is kept to a few
dozen threads; the results are the same, since no kernel depends on the grid size.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ...._env import cuda_simulated
from ... import opcodes as OP
from ...accounting import CountedBuffer, counter
from ...shapes import prod, simplify_view
from ..numpy import strided_view
from . import kernels as K

__device_name__ = "cuda"

SIMULATED = cuda_simulated()
THREADS = 32 if SIMULATED else 256      # threads per block (1-d kernels)
MAX_BLOCKS = 2 if SIMULATED else 4096   # grid-stride loops cover anything beyond
TILE = 4 if SIMULATED else 16           # matmul tile: TILE x TILE threads per block


class Array(CountedBuffer):
    """A flat buffer of ``size`` elements of ``dtype`` in GPU memory (bytes counted)."""

    _counter = counter("cuda")

    def __init__(self, size: int, dtype: str = "float32"):
        self.array = cuda.device_array(size, dtype=np.dtype(dtype))
        self.dtype = np.dtype(dtype).name
        self._count(size * np.dtype(dtype).itemsize)

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
    return strided_view(a.array.copy_to_host(), shape, strides, offset)


def from_numpy(a: np.ndarray, out: Array) -> None:
    if out.size:
        out.array.copy_to_device(np.ascontiguousarray(a, dtype=out.array.dtype).reshape(-1))


def fill(out: Array, val) -> None:
    if out.size:
        K.fill[_grid(out.size)](out.array, _scalar(val, out.array.dtype))


def _walk(flat, strided: Array, shape, strides, offset, mode, value=0):
    n = prod(shape)
    if n == 0:
        return
    shp, st = simplify_view(shape, strides)
    K.walk[_grid(n)](flat.array, strided.array, n, tuple(shp), tuple(st), offset, mode,
                     _scalar(value, strided.array.dtype))


def compact(a: Array, out: Array, shape, strides, offset) -> None:
    _walk(out, a, shape, strides, offset, OP.GATHER)


def ewise_setitem(a: Array, out: Array, shape, strides, offset) -> None:
    _walk(a, out, shape, strides, offset, OP.SCATTER)


def scalar_setitem(size: int, val, out: Array, shape, strides, offset) -> None:
    _walk(out, out, shape, strides, offset, OP.FILL, val)


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


ewise_add, scalar_add = _binary(OP.ADD), _scalar_op(OP.ADD)
ewise_sub, scalar_sub, scalar_rsub = _binary(OP.SUB), _scalar_op(OP.SUB), _scalar_op(OP.RSUB)
ewise_mul, scalar_mul = _binary(OP.MUL), _scalar_op(OP.MUL)
ewise_div, scalar_div, scalar_rdiv = _binary(OP.DIV), _scalar_op(OP.DIV), _scalar_op(OP.RDIV)
ewise_power, scalar_power = _binary(OP.POW), _scalar_op(OP.POW)
scalar_rpower = _scalar_op(OP.RPOW)
ewise_maximum, scalar_maximum = _binary(OP.MAX), _scalar_op(OP.MAX)
ewise_minimum, scalar_minimum = _binary(OP.MIN), _scalar_op(OP.MIN)
ewise_eq, scalar_eq = _binary(OP.EQ), _scalar_op(OP.EQ)
ewise_ne, scalar_ne = _binary(OP.NE), _scalar_op(OP.NE)
ewise_lt, scalar_lt = _binary(OP.LT), _scalar_op(OP.LT)
ewise_le, scalar_le = _binary(OP.LE), _scalar_op(OP.LE)
ewise_gt, scalar_gt = _binary(OP.GT), _scalar_op(OP.GT)
ewise_ge, scalar_ge = _binary(OP.GE), _scalar_op(OP.GE)

ewise_neg = _unary(OP.NEG)
ewise_log = _unary(OP.LOG)
ewise_exp = _unary(OP.EXP)
ewise_tanh = _unary(OP.TANH)
ewise_abs = _unary(OP.ABS)
ewise_sqrt = _unary(OP.SQRT)
ewise_erf = _unary(OP.ERF)


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


reduce_sum = _reduce(OP.SUM)
reduce_max = _reduce(OP.MAX_)


# ---- matrix products -----------------------------------------------------------------------

def matmul_tiled(a: Array, b: Array, out: Array, m: int, n: int, p: int,
                 batch: int = 1) -> None:
    """Shared-memory tiled ``out[k] = a[k] @ b[k]`` (see ``kernels.py``)."""
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


# float16 is storage only here: each kernel computes on float32 copies (see ../half.py);
# the copies go through the host, which is slow but simple (a real fp16 path would
# convert in the kernels' loads and stores)
from ..half import widen_float16  # noqa: E402

widen_float16(globals(), to_host=lambda d: d.copy_to_host(), to_device=cuda.to_device)

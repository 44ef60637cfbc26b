"""The default CPU backend: the device interface implemented with Numba kernels.

Same functions as ``backends/numpy.py``; here each one is a thin wrapper that unpacks the
flat numpy buffers and calls a compiled kernel:

- ``strided.py``      compact / setitem: walking a strided view;
- ``elementwise.py``  elementwise ops (one kernel per family, an op code picks the
  loop) and a vectorised float32 exp;
- ``reduce.py``       sum and max;
- ``matmul.py``       a plainly tiled matmul and a packed, register-blocked one;
- ``jit.py``          how kernels are compiled (serial and parallel builds, cached).

Buffers are numpy arrays, so allocation, ``fill`` and the transfers to and from numpy
use numpy directly; all the loops are Numba's. Numba compiles each kernel once per
dtype (at first use, then caches it on disk), not once per shape.
"""

from __future__ import annotations

import numpy as np

from ... import opcodes as OP
from ...accounting import counter
from ..numpy import Array as _NumpyArray
from ..numpy import fill, from_numpy, to_numpy  # noqa: F401 (numpy buffers)
from . import elementwise as E
from . import matmul as M
from . import reduce as R
from . import strided as W

__device_name__ = "cpu"


class Array(_NumpyArray):
    """A numpy buffer, as in ``backends/numpy.py``, whose bytes count under ``cpu()``."""

    _counter = counter("cpu")


# ---- strided views -------------------------------------------------------------------------

def compact(a: Array, out: Array, shape, strides, offset) -> None:
    W.run(out.array, a.array, shape, strides, offset, OP.GATHER)


def ewise_setitem(a: Array, out: Array, shape, strides, offset) -> None:
    W.run(a.array, out.array, shape, strides, offset, OP.SCATTER)


def scalar_setitem(size: int, val, out: Array, shape, strides, offset) -> None:
    W.run(out.array, out.array, shape, strides, offset, OP.FILL, val)


# ---- elementwise ---------------------------------------------------------------------------

def _binary(code):
    def ewise(a: Array, b: Array, out: Array) -> None:
        E.ewise_binary.pick(out.size)(a.array, b.array, out.array, code)

    return ewise


def _scalar(code):
    def scalar(a: Array, val, out: Array) -> None:
        # the scalar takes the array's dtype, so float32 arithmetic stays float32
        E.scalar_binary.pick(out.size)(a.array, a.array.dtype.type(val), out.array, code)

    return scalar


def _unary(code, cost=1):
    def unary(a: Array, out: Array) -> None:
        E.ewise_unary.pick(out.size * cost)(a.array, out.array, code)

    return unary


ewise_add, scalar_add = _binary(OP.ADD), _scalar(OP.ADD)
ewise_sub, scalar_sub, scalar_rsub = _binary(OP.SUB), _scalar(OP.SUB), _scalar(OP.RSUB)
ewise_mul, scalar_mul = _binary(OP.MUL), _scalar(OP.MUL)
ewise_div, scalar_div, scalar_rdiv = _binary(OP.DIV), _scalar(OP.DIV), _scalar(OP.RDIV)
ewise_power, scalar_power, scalar_rpower = _binary(OP.POW), _scalar(OP.POW), _scalar(OP.RPOW)
ewise_maximum, scalar_maximum = _binary(OP.MAX), _scalar(OP.MAX)
ewise_minimum, scalar_minimum = _binary(OP.MIN), _scalar(OP.MIN)
ewise_eq, scalar_eq = _binary(OP.EQ), _scalar(OP.EQ)
ewise_ne, scalar_ne = _binary(OP.NE), _scalar(OP.NE)
ewise_lt, scalar_lt = _binary(OP.LT), _scalar(OP.LT)
ewise_le, scalar_le = _binary(OP.LE), _scalar(OP.LE)
ewise_gt, scalar_gt = _binary(OP.GT), _scalar(OP.GT)
ewise_ge, scalar_ge = _binary(OP.GE), _scalar(OP.GE)

ewise_neg = _unary(OP.NEG)
ewise_log = _unary(OP.LOG, cost=8)  # a libm call per element
ewise_tanh = _unary(OP.TANH, cost=8)
ewise_abs = _unary(OP.ABS)
ewise_sqrt = _unary(OP.SQRT, cost=2)
ewise_erf = _unary(OP.ERF, cost=8)


def ewise_exp(a: Array, out: Array) -> None:
    if a.array.dtype == np.float32:
        E.exp_f32.pick(out.size * 4)(a.array, out.array)
    else:
        E.ewise_unary.pick(out.size * 8)(a.array, out.array, OP.EXP)


def ewise_astype(a: Array, out: Array) -> None:
    E.astype.pick(out.size)(a.array, out.array)


# ---- reductions ----------------------------------------------------------------------------

def _reduce(op):
    def reduce(a: Array, out: Array, reduce_size: int, inner_size: int = 1) -> None:
        if out.size == 0:
            return
        if reduce_size == 0:  # an empty sum is 0 (NDArray rejects an empty max)
            out.array.fill(0)
            return
        zero = out.array.dtype.type(0)
        work = out.size * reduce_size
        if inner_size == 1:
            R.reduce_rows.pick(work)(a.array, out.array, reduce_size, op, zero)
        else:
            R.reduce_middle.pick(work)(a.array, out.array, reduce_size, inner_size, op, zero)

    return reduce


reduce_sum = _reduce(OP.SUM)
reduce_max = _reduce(OP.MAX_)


# ---- matrix products -----------------------------------------------------------------------

def _batched(fn):
    def matmul(a: Array, b: Array, out: Array, m: int, n: int, p: int, batch: int = 1) -> None:
        for k in range(batch):
            fn(a.array[k * m * n:(k + 1) * m * n], b.array[k * n * p:(k + 1) * n * p],
               out.array[k * m * p:(k + 1) * m * p], m, n, p)

    return matmul


matmul = _batched(M.matmul)
matmul_tiled = _batched(lambda a, b, out, m, n, p: M.matmul_tiled.pick(m * n * p // 2)(
    a, b, out, m, n, p))


# float16 is storage only: Numba has no float16 arithmetic, so every kernel above
# computes on float32 copies and rounds what it writes back (see ../half.py)
from ..half import widen_float16  # noqa: E402

widen_float16(globals())

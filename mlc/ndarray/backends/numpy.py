"""The reference backend: every kernel of the device interface, written with numpy.

Read this file first. Each function works on ``Array`` objects, which are nothing but a
flat 1-D buffer; shapes and strides arrive as plain arguments. The other backends
(``cpu/`` with Numba, ``cuda/`` with Numba-CUDA) implement exactly the
same functions with their own loops, and the tests check them against this one.

Conventions:
- ``out`` is always written, never returned; it is allocated by the caller.
- Elementwise kernels see compact operands of equal size: broadcasting and strides are
  handled by NDArray before the call.
- ``shape``/``strides``/``offset`` describe a strided view of a flat buffer, strides in
  elements.
"""

from __future__ import annotations

import math

import numpy as np

from ..accounting import CountedBuffer, counter
from ..shapes import STORAGE_DTYPES

__device_name__ = "cpu_numpy"


class Array(CountedBuffer):
    """A flat buffer of ``size`` elements of ``dtype`` (its bytes counted, see
    ``accounting.py``)."""

    _counter = counter("cpu_numpy")

    def __init__(self, size: int, dtype: str = "float32"):
        self.array = np.empty(size, dtype=dtype)
        # kept as a string: NDArray asks often, and numpy's dtype.name is slow
        self.dtype = dtype if type(dtype) is str else self.array.dtype.name
        self._count(self.array.nbytes)

    @property
    def size(self) -> int:
        return self.array.size


def strided_view(buf: np.ndarray, shape, strides, offset) -> np.ndarray:
    """A numpy view of the flat ``buf`` with element strides (numpy wants bytes)."""
    if buf.dtype.name in STORAGE_DTYPES[1:]:    # ml_dtypes' types: as_strided cannot read
        raw = strided_view(buf.view(f"u{buf.itemsize}"), shape, strides, offset)  # float8
        return raw.view(buf.dtype)
    return np.lib.stride_tricks.as_strided(
        buf[offset:], shape=tuple(shape), strides=tuple(s * buf.itemsize for s in strides))


def to_numpy(a: Array, shape, strides, offset) -> np.ndarray:
    return strided_view(a.array, shape, strides, offset)


def from_numpy(a: np.ndarray, out: Array) -> None:
    out.array[:] = np.ascontiguousarray(a).reshape(-1)


def fill(out: Array, val) -> None:
    out.array.fill(val)


def compact(a: Array, out: Array, shape, strides, offset) -> None:
    """Copy the strided view ``(shape, strides, offset)`` of ``a`` into compact ``out``."""
    out.array[:] = strided_view(a.array, shape, strides, offset).reshape(-1)


def ewise_setitem(a: Array, out: Array, shape, strides, offset) -> None:
    """Write the compact ``a`` into the strided view ``(shape, strides, offset)`` of out."""
    view = strided_view(out.array, shape, strides, offset)
    view[...] = a.array[: view.size].reshape(shape)


def scalar_setitem(size: int, val, out: Array, shape, strides, offset) -> None:
    """Set every element of the strided view of ``out`` to ``val``."""
    strided_view(out.array, shape, strides, offset)[...] = val


# ---- elementwise ---------------------------------------------------------------------------

def _binary(fn):
    # errstate: overflow, x/0 and log(0) give inf/nan silently, as on the other devices
    def ewise(a: Array, b: Array, out: Array) -> None:
        with np.errstate(all="ignore"):
            out.array[:] = fn(a.array, b.array)

    def scalar(a: Array, val, out: Array) -> None:
        # The scalar is cast to the array's dtype first, so float32 stays float32.
        with np.errstate(all="ignore"):
            out.array[:] = fn(a.array, a.array.dtype.type(val))

    def rscalar(a: Array, val, out: Array) -> None:
        with np.errstate(all="ignore"):
            out.array[:] = fn(a.array.dtype.type(val), a.array)

    return ewise, scalar, rscalar


ewise_add, scalar_add, _ = _binary(np.add)
ewise_sub, scalar_sub, scalar_rsub = _binary(np.subtract)
ewise_mul, scalar_mul, _ = _binary(np.multiply)
ewise_div, scalar_div, scalar_rdiv = _binary(np.true_divide)
ewise_power, scalar_power, scalar_rpower = _binary(np.power)
ewise_maximum, scalar_maximum, _ = _binary(np.maximum)
ewise_minimum, scalar_minimum, _ = _binary(np.minimum)
# Comparisons store 1 or 0 in the dtype of their inputs (needle's convention).
ewise_eq, scalar_eq, _ = _binary(np.equal)
ewise_ne, scalar_ne, _ = _binary(np.not_equal)
ewise_lt, scalar_lt, _ = _binary(np.less)
ewise_le, scalar_le, _ = _binary(np.less_equal)
ewise_gt, scalar_gt, _ = _binary(np.greater)
ewise_ge, scalar_ge, _ = _binary(np.greater_equal)
del _


def _unary(fn):
    def ewise(a: Array, out: Array) -> None:
        with np.errstate(all="ignore"):
            out.array[:] = fn(a.array)

    return ewise


ewise_neg = _unary(np.negative)
ewise_log = _unary(np.log)
ewise_exp = _unary(np.exp)
ewise_tanh = _unary(np.tanh)
ewise_abs = _unary(np.abs)
ewise_sqrt = _unary(np.sqrt)
ewise_erf = _unary(np.vectorize(math.erf, otypes=[np.float64]))


def ewise_astype(a: Array, out: Array) -> None:
    """Convert to ``out``'s dtype (floats to ints truncate toward zero)."""
    out.array[:] = a.array.astype(out.array.dtype)


# ---- reductions ----------------------------------------------------------------------------

def reduce_sum(a: Array, out: Array, reduce_size: int, inner_size: int = 1) -> None:
    """``a`` is a compact ``(outer, reduce_size, inner_size)`` array; sum its middle axis.

    With ``inner_size=1`` this is needle's "reduce over the last axis": NDArray permutes
    the reduced axes to the end and compacts. When the reduced axes are already one
    contiguous block, NDArray passes ``inner_size`` instead and nothing moves.
    """
    x = _middle(a, out, reduce_size, inner_size)
    out.array[:] = x.sum(axis=1, dtype=out.array.dtype).reshape(-1)


def reduce_max(a: Array, out: Array, reduce_size: int, inner_size: int = 1) -> None:
    """Like ``reduce_sum`` with max (``reduce_size`` must be at least 1)."""
    x = _middle(a, out, reduce_size, inner_size)
    out.array[:] = x.max(axis=1).reshape(-1)


def _middle(a: Array, out: Array, reduce_size: int, inner_size: int) -> np.ndarray:
    outer = out.size // inner_size if inner_size else 0
    return a.array[: out.size * reduce_size].reshape(outer, reduce_size, inner_size)


# ---- matrix products -----------------------------------------------------------------------

def _operands(a, b, out, m, n, p, batch):
    dt = out.array.dtype  # int8 inputs accumulate (and overflow) in int32, like the others
    A = a.array[: batch * m * n].reshape(batch, m, n).astype(dt, copy=False)
    B = b.array[: batch * n * p].reshape(batch, n, p).astype(dt, copy=False)
    return A, B


def matmul(a: Array, b: Array, out: Array, m: int, n: int, p: int, batch: int = 1) -> None:
    """``out[k] = a[k] @ b[k]`` for compact ``(batch, m, n)`` and ``(batch, n, p)``."""
    A, B = _operands(a, b, out, m, n, p, batch)
    out.array[:] = np.matmul(A, B).reshape(-1)


TILE = 32


def matmul_tiled(a: Array, b: Array, out: Array, m: int, n: int, p: int,
                 batch: int = 1) -> None:
    """The same product computed tile by tile, to show the loop structure.

    ``C[i:i+T, j:j+T] += A[i:i+T, k:k+T] @ B[k:k+T, j:j+T]``: each step touches three
    small tiles that fit in cache, instead of streaming whole rows and columns.
    """
    A, B = _operands(a, b, out, m, n, p, batch)
    C = np.zeros((batch, m, p), dtype=out.array.dtype)
    for i in range(0, m, TILE):
        for j in range(0, p, TILE):
            for k in range(0, n, TILE):
                C[:, i:i + TILE, j:j + TILE] += (
                    A[:, i:i + TILE, k:k + TILE] @ B[:, k:k + TILE, j:j + TILE])
    out.array[:] = C.reshape(-1)


# float16 is storage only: each kernel above computes on float32 copies (see half.py)
from .half import widen_float16  # noqa: E402

widen_float16(globals())

"""Numba kernels for a sparse matrix times a dense one: CSR and 2:4 compressed.

``out (M x N) = A (M x K) @ X (K x N)``, ``A`` sparse, ``X`` dense and row-major. In a
layer ``A`` is the weight transposed (one row per output unit) and ``X`` the batch of
activations transposed (one column per example): ``out`` is then ``(x @ W).T``.

**CSR** (compressed sparse row) keeps, for each row ``i``, its nonzeros
``data[indptr[i]:indptr[i+1]]`` and their columns ``indices[...]``. Row ``i`` of the
result is a sum of rows of ``X``, one per nonzero::

    out[i, :] = sum over p in row i of  data[p] * X[indices[p], :]

The loop over ``N`` is contiguous, so it vectorises; for ``N == 1`` (one example, a
matrix-vector product) it is a scalar dot product instead. What costs is the *gather*
``X[indices[p]]``: an indirect load per nonzero that the hardware cannot predict, plus the
index itself to read. That is why a sparse kernel needs many zeros to beat a dense one,
which streams through memory in order and keeps every vector lane busy.

**2:4** keeps exactly two values per group of four columns, so row ``i`` has ``K / 2``
values and the position of each in its group takes two bits. Four bits describe a group
(two positions), two groups fill a byte: ``meta[i, g // 2] >> (4 * (g % 2))``. No
``indptr`` is needed (every row has the same count) and the loads stay within one
group: regular enough for hardware (Ampere's sparse tensor cores do this at 2x).

Rows are independent, so ``prange`` shares them among threads. Each kernel is compiled
twice (serial and parallel); the caller picks by the amount of work, as the dense
kernels of ``mlc.ndarray`` do, because waking a thread pool costs more than a small
product. Numba checks no bounds: ``sparse.py`` validates every array before calling.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["csr_kernel", "sparse24_kernel", "PARALLEL_WORK"]

#: Multiply-adds from which the parallel build runs, as in ``mlc.ndarray``'s cpu kernels:
#: waking a thread pool costs tens of microseconds on an idle machine, and milliseconds on
#: a busy shared one, where a worker waits for a scheduler slice.
PARALLEL_WORK = 1 << 23

_OPTS = {"cache": True, "error_model": "numpy", "fastmath": True, "boundscheck": False}


def _csr(indptr, indices, data, x, out):
    m = indptr.shape[0] - 1
    n = x.shape[1]
    for i in prange(m):
        start, stop = indptr[i], indptr[i + 1]
        if n == 1:
            acc = np.float32(0.0)
            for p in range(start, stop):
                acc += data[p] * x[indices[p], 0]
            out[i, 0] = acc
        else:
            for j in range(n):
                out[i, j] = 0.0
            for p in range(start, stop):
                v = data[p]
                c = indices[p]
                for j in range(n):
                    out[i, j] += v * x[c, j]


def _sparse24(values, meta, x, out):
    m = values.shape[0]
    groups = values.shape[1] // 2
    n = x.shape[1]
    for i in prange(m):
        if n == 1:
            acc = np.float32(0.0)
            for g in range(groups):
                nib = (meta[i, g >> 1] >> ((g & 1) * 4)) & 15
                base = 4 * g
                acc += values[i, 2 * g] * x[base + (nib & 3), 0]
                acc += values[i, 2 * g + 1] * x[base + (nib >> 2), 0]
            out[i, 0] = acc
        else:
            for j in range(n):
                out[i, j] = 0.0
            for g in range(groups):
                nib = (meta[i, g >> 1] >> ((g & 1) * 4)) & 15
                base = 4 * g
                c0 = base + (nib & 3)
                c1 = base + (nib >> 2)
                v0 = values[i, 2 * g]
                v1 = values[i, 2 * g + 1]
                for j in range(n):
                    out[i, j] += v0 * x[c0, j] + v1 * x[c1, j]


class _TwoBuilds:
    """A serial and a parallel build of one kernel; ``pick(work)`` chooses."""

    def __init__(self, fn):
        self.serial = njit(**_OPTS)(fn)
        self.parallel = njit(parallel=True, **_OPTS)(_renamed(fn))
        self.__doc__ = fn.__doc__

    def pick(self, work: int, parallel: bool | None = None):
        if parallel is None:
            parallel = work >= PARALLEL_WORK and numba.get_num_threads() > 1
        return self.parallel if parallel else self.serial


def _renamed(fn):
    """A twin of ``fn`` under another name: Numba's disk cache keys by qualified name."""
    import types

    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    return twin


csr_kernel = _TwoBuilds(_csr)
sparse24_kernel = _TwoBuilds(_sparse24)

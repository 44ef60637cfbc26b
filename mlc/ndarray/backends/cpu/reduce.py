"""Numba kernels for sum and max over the middle axis of a compact (outer, R, inner) array.

Two shapes of work:

- ``inner == 1`` (reduce the last axis, rows of length R): each row is cut into blocks of
  ``SUM_BLOCK``; blocks are summed in parallel into a small array of partial results,
  which are then added in order. Besides the parallelism (a single huge row still uses
  every core), blocking keeps float32 sums accurate: each partial adds at most
  ``SUM_BLOCK`` numbers, much like numpy's pairwise summation. ``fastmath`` "reassoc"
  lets LLVM keep several partial sums in vector lanes.
- ``inner > 1`` (reduce a leading axis, e.g. summing the columns of a matrix): a chunk of
  ``INNER_CHUNK`` outputs stays in L1 cache while the R input rows stream past, four at a
  time, added with a vectorised loop.

``zero`` is a scalar of the output dtype: it sets the type of the accumulators (int8
inputs add up in int32 or wider, never in int8).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...opcodes import SUM
from .elementwise import maximum
from .jit import kernel

SUM_BLOCK = 4096
INNER_CHUNK = 1024


@kernel(fastmath={"reassoc", "contract", "nsz"})
def reduce_rows(a, out, R, op, zero):
    """``out[o] = reduce(a[o*R : (o+1)*R])`` for every o (requires R >= 1)."""
    outer = out.size
    nb = (R + SUM_BLOCK - 1) // SUM_BLOCK
    part = np.empty(outer * nb, dtype=out.dtype)
    for t in prange(outer * nb):
        o = t // nb
        lo = o * R + (t % nb) * SUM_BLOCK
        hi = min(lo + SUM_BLOCK, o * R + R)
        seg = a[lo:hi]  # a slice indexed from 0 vectorises (see elementwise.py)
        if op == SUM:
            acc = zero
            for j in range(hi - lo):
                acc += seg[j]
        else:
            acc = seg[0]
            for j in range(1, hi - lo):
                acc = maximum(seg[j], acc)
        part[t] = acc
    for o in range(outer):
        acc = part[o * nb]
        for t in range(o * nb + 1, o * nb + nb):
            acc = acc + part[t] if op == SUM else maximum(part[t], acc)
        out[o] = acc


@kernel(fastmath={"reassoc", "contract", "nsz"})
def reduce_middle(a, out, R, inner, op, zero):
    """``out[o, i] = reduce_r a[o, r, i]`` over a compact (outer, R, inner) array."""
    outer = out.size // inner
    nc = (inner + INNER_CHUNK - 1) // INNER_CHUNK
    for t in prange(outer * nc):
        o = t // nc
        i0 = (t % nc) * INNER_CHUNK
        i1 = min(i0 + INNER_CHUNK, inner)
        dst = out[o * inner + i0:o * inner + i1]
        src = a[o * R * inner + i0:]
        w = i1 - i0
        if op == SUM:
            for i in range(w):
                dst[i] = zero
            r = 0
            while r + 4 <= R:  # four rows per pass: one load/store of dst per 4 inputs
                r0 = src[r * inner:r * inner + w]
                r1 = src[(r + 1) * inner:(r + 1) * inner + w]
                r2 = src[(r + 2) * inner:(r + 2) * inner + w]
                r3 = src[(r + 3) * inner:(r + 3) * inner + w]
                for i in range(w):
                    dst[i] += (r0[i] + r1[i]) + (r2[i] + r3[i])
                r += 4
            for rest in range(r, R):
                row = src[rest * inner:rest * inner + w]
                for i in range(w):
                    dst[i] += row[i]
        else:
            for i in range(i1 - i0):
                dst[i] = src[i]
            for r in range(1, R):
                row = src[r * inner:r * inner + i1 - i0]
                for i in range(i1 - i0):
                    dst[i] = maximum(row[i], dst[i])

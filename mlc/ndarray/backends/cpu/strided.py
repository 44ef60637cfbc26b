"""Numba kernels that walk a strided view: compact (gather) and setitem (scatter, fill).

A view ``(shape, strides, offset)`` is first simplified in Python
(``shapes.simplify_view``): axes of length 1 are dropped and neighbouring axes that step
contiguously are merged (a compact ``(4, 5, 6)`` array is one axis of 120). The kernel
then sees the view as

    groups x rows x columns,   i.e. (leading axes..., second-to-last axis, last axis)

and walks it in row-major order of the *compact* side, without a Python loop.

Cache behaviour decides the walk order. If the columns are contiguous in the strided
buffer we copy row by row. If instead the *rows* are the contiguous direction (a
transposed matrix), a row-by-row walk reads one element per cache line; we then take
``TB`` rows at a time and go down the columns of that band, so every cache line read or
written is used ``TB`` times (a blocked transpose).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...opcodes import GATHER, SCATTER
from ...shapes import prod, simplify_view
from .jit import kernel

TB = 16  # rows per band for the transposed walk


@kernel()
def walk(flat, strided, shape, strides, offset, mode, value):
    """Copy between compact ``flat`` and the strided view of ``strided``.

    mode GATHER: flat <- view (compact); SCATTER: view <- flat (setitem);
    FILL: view <- value (scalar setitem).
    """
    nd = shape.size
    n1, s1 = shape[nd - 1], strides[nd - 1]  # columns: the last axis
    n2, s2 = shape[nd - 2], strides[nd - 2]  # rows: the second-to-last axis
    groups = 1
    for d in range(nd - 2):
        groups *= shape[d]
    tb = TB if abs(s2) < abs(s1) else 1
    bands = (n2 + tb - 1) // tb  # bands of rows per group
    for blk in prange(groups * bands):
        g = blk // bands
        i0 = (blk % bands) * tb
        rows = min(tb, n2 - i0)
        # where row i0 of group g starts: unravel g over the leading axes
        pos0 = offset + i0 * s2
        rem = g
        for d in range(nd - 3, -1, -1):
            pos0 += (rem % shape[d]) * strides[d]
            rem //= shape[d]
        k0 = (g * n2 + i0) * n1  # the same element in the compact buffer
        if tb == 1 and s1 == 1:  # contiguous rows: plain slice copies (memcpy speed)
            if mode == GATHER:
                flat[k0:k0 + n1] = strided[pos0:pos0 + n1]
            elif mode == SCATTER:
                strided[pos0:pos0 + n1] = flat[k0:k0 + n1]
            else:
                strided[pos0:pos0 + n1] = value
        elif tb == 1:  # row by row: the inner loop runs along the columns
            if mode == GATHER:
                for j in range(n1):
                    flat[k0 + j] = strided[pos0 + j * s1]
            elif mode == SCATTER:
                for j in range(n1):
                    strided[pos0 + j * s1] = flat[k0 + j]
            else:
                for j in range(n1):
                    strided[pos0 + j * s1] = value
        else:  # a band of rows: the inner loop runs down the rows, contiguous in `strided`
            for j in range(n1):
                if mode == GATHER:
                    for i in range(rows):
                        flat[k0 + i * n1 + j] = strided[pos0 + i * s2 + j * s1]
                elif mode == SCATTER:
                    for i in range(rows):
                        strided[pos0 + i * s2 + j * s1] = flat[k0 + i * n1 + j]
                else:
                    for i in range(rows):
                        strided[pos0 + i * s2 + j * s1] = value


def run(flat: np.ndarray, strided: np.ndarray, shape, strides, offset, mode, value=0):
    """Simplify the view and run ``walk`` (serial or parallel by size)."""
    size = prod(shape)
    if size == 0:
        return
    shp, st = simplify_view(shape, strides)
    walk.pick(2 * size)(flat, strided, np.array(shp, np.int64), np.array(st, np.int64), offset,
                    mode, strided.dtype.type(value))

"""The weight-only group-wise matmul on the CPU (Numba): float activations, weights in 4-
or 8-bit codes with a scale per group (:mod:`.weightonly` explains the format).

:func:`wmatmul_kernel` picks :func:`wmatmul_serial` or :func:`wmatmul_parallel` by the
work; both run :func:`_wmatmul_tile` on tiles of ``MB`` rows by ``WB`` columns.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .routines import routines

WB = 256     # output columns per task of the weight-only kernel
MB = 16      # rows of x per task: each packed row of codes is unpacked once for all of them


_unpack_row4, _unpack_row8 = routines("cpu").unpack_row4, routines("cpu").unpack_row8


@njit(cache=True)
def _wmatmul_tile(x, codes, scales, group, bits, t, out):
    """Tile ``t`` of ``out = x @ W``, ``W[k, j] = scales[g, j] * code[k, j]`` for ``k`` in
    group ``g``: ``MB`` rows of ``x`` by ``WB`` columns.

    The codes are never expanded to a float matrix. One packed row of codes is unpacked
    (:mod:`.routines`) into one or two rows of floats (``wf``, a few hundred bytes that
    stay in L1), and every row of the tile adds ``x[i, k]`` times it to its accumulators
    (no reduction in the inner loop, so LLVM vectorizes it; a dot product per output, the
    other order, did not vectorize and ran 4x slower). Unpacking once per tile, not once
    per row of ``x``, is what makes a batch cheap: a kernel that unpacked every code row
    for every row of ``x`` spent its time unpacking at batch 64 (512 token rows). A
    group's sum is scaled once.
    """
    m, k_dim = x.shape
    n = out.shape[1]
    per_byte = 2 if bits == 4 else 1
    col_blocks = (n + WB - 1) // WB
    i0, j0 = (t // col_blocks) * MB, (t % col_blocks) * WB
    rows, cols = min(MB, m - i0), min(WB, n - j0)
    wf = np.empty((2, cols), np.float32)
    acc = np.empty((rows, cols), np.float32)
    for r in range(rows):
        out[i0 + r, j0:j0 + cols] = 0.0
    w0, w1 = wf[0], wf[1]
    for g in range(k_dim // group):
        acc[:] = 0.0
        for kb in range(g * group // per_byte, (g + 1) * group // per_byte):
            if per_byte == 2:
                _unpack_row4(wf, codes[kb, j0:j0 + cols])
            else:
                _unpack_row8(wf, codes[kb, j0:j0 + cols])
            k0 = kb * per_byte
            for r in range(rows):
                a, x0 = acc[r], x[i0 + r, k0]
                if per_byte == 2:
                    x1 = x[i0 + r, k0 + 1]
                    for j in range(cols):
                        a[j] += x0 * w0[j] + x1 * w1[j]
                else:
                    for j in range(cols):
                        a[j] += x0 * w0[j]
        s = scales[g, j0:j0 + cols]
        for r in range(rows):
            o, a = out[i0 + r, j0:j0 + cols], acc[r]
            for j in range(cols):
                o[j] += s[j] * a[j]


@njit(parallel=True, cache=True)
def wmatmul_parallel(x, codes, scales, group, bits, out):
    """Every tile of the weight-only matmul (:func:`_wmatmul_tile`), split over threads."""
    tiles = ((x.shape[0] + MB - 1) // MB) * ((out.shape[1] + WB - 1) // WB)
    for t in prange(tiles):
        _wmatmul_tile(x, codes, scales, group, bits, t, out)


@njit(cache=True)
def wmatmul_serial(x, codes, scales, group, bits, out):
    """The same, tile after tile on one thread (a small product: batch 1, few columns).

    A function of its own, not ``njit(wmatmul_parallel.py_func)``: Numba's cache keys a
    function by its bytecode, closure and signature, not by ``parallel=``, so two builds of
    one function overwrite each other's cache entry (and a kernel closing over a routine
    is never found in the cache at all: the closure pickles differently in each process).
    """
    tiles = ((x.shape[0] + MB - 1) // MB) * ((out.shape[1] + WB - 1) // WB)
    for t in range(tiles):
        _wmatmul_tile(x, codes, scales, group, bits, t, out)


def wmatmul_kernel(work: int):
    """The weight-only kernel, ``(x, codes, scales, group, bits, out)``: its parallel
    build where :func:`.kernels_cpu.threaded` says the work (multiply-adds) pays for
    threads, its serial build below (the kernel that always ran its parallel build took
    8 ms per call at batch 1 under load, where the serial one takes microseconds)."""
    from .kernels_cpu import threaded

    return wmatmul_parallel if threaded(work) else wmatmul_serial

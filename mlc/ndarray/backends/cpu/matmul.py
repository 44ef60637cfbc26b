"""Numba matrix multiply: a plainly tiled kernel to read, and a fast one to use.

``C (m x p) = A (m x n) @ B (n x p)``, all compact row-major flat buffers.

``matmul_tiled`` is the textbook loop nest with cache tiling: three loops over tiles,
three loops inside a tile, the innermost running along a row of B and of C so it
vectorises.

``matmul`` goes further, in the spirit of BLAS:

1. **Pack** B transposed (``Bt``, p x n), so a column of B is a contiguous row of Bt.
2. **Register blocking**: the micro-kernel computes a 4x4 block of C as 16 dot products
   of 4 rows of A with 4 rows of Bt, held in 16 local accumulators. LLVM vectorises the
   loop over k, so each accumulator becomes a vector of partial sums in a register: per
   step 8 vector loads feed 16 fused multiply-adds (the plain loop needs a load and a
   store of C per multiply-add).
3. **Cache blocking**: k runs in blocks of ``KC`` so the 8 rows in use stay in L1, and
   columns in blocks of ``NC`` so the packed panel of Bt stays in L2 while every block of
   rows of A streams past it.
4. **Threads**: ``prange`` over blocks of 4 rows of C (the parallel build).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import kernel

MR, NR = 4, 4  # rows of A x rows of Bt per micro-kernel call
KC = 512       # depth of a k block: 8 rows of KC float32 = 16 KiB, inside L1
NC = 256       # columns of C per panel: NC x KC float32 = 512 KiB of Bt, inside L2
TILE = 32      # matmul_tiled


@kernel()
def matmul_tiled(a, b, out, m, n, p):
    """Tiled ``out = a @ b``: each tile step touches three TILE x TILE blocks."""
    for i in range(m * p):
        out[i] = 0
    for i0 in prange((m + TILE - 1) // TILE):
        for j0 in range(0, p, TILE):
            for k0 in range(0, n, TILE):
                j1 = min(j0 + TILE, p)
                for i in range(i0 * TILE, min(i0 * TILE + TILE, m)):
                    c_row = out[i * p + j0:i * p + j1]  # C[i, j0:j1]
                    for k in range(k0, min(k0 + TILE, n)):
                        aik = a[i * n + k]
                        b_row = b[k * p + j0:k * p + j1]  # B[k, j0:j1]
                        for j in range(j1 - j0):  # vectorised: 8 or 16 j at a time
                            c_row[j] += aik * b_row[j]


@kernel()
def pack_transpose(b, bt, n, p):
    """``bt (p x n) = b (n x p)`` transposed, in 32 x 32 tiles (both sides cache-friendly)."""
    for j0 in prange((p + 31) // 32):
        for i0 in range(0, n, 32):
            for j in range(j0 * 32, min(j0 * 32 + 32, p)):
                for i in range(i0, min(i0 + 32, n)):
                    bt[j * n + i] = b[i * p + j]


@njit(inline="always")
def _store(out, idx, value, accumulate):
    if accumulate:
        out[idx] += value
    else:
        out[idx] = value


@njit(inline="always")
def micro_4x4(a, bt, out, i, j, n, p, pc, kc, accumulate, zero):
    """``C[i:i+4, j:j+4] (+)= A[i:i+4, pc:pc+kc] @ Bt[j:j+4, pc:pc+kc].T`` in registers."""
    a0 = a[i * n + pc:i * n + pc + kc]
    a1 = a[(i + 1) * n + pc:(i + 1) * n + pc + kc]
    a2 = a[(i + 2) * n + pc:(i + 2) * n + pc + kc]
    a3 = a[(i + 3) * n + pc:(i + 3) * n + pc + kc]
    b0 = bt[j * n + pc:j * n + pc + kc]
    b1 = bt[(j + 1) * n + pc:(j + 1) * n + pc + kc]
    b2 = bt[(j + 2) * n + pc:(j + 2) * n + pc + kc]
    b3 = bt[(j + 3) * n + pc:(j + 3) * n + pc + kc]
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
    for k in range(kc):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        c00 += x0 * y0
        c01 += x0 * y1
        c02 += x0 * y2
        c03 += x0 * y3
        c10 += x1 * y0
        c11 += x1 * y1
        c12 += x1 * y2
        c13 += x1 * y3
        c20 += x2 * y0
        c21 += x2 * y1
        c22 += x2 * y2
        c23 += x2 * y3
        c30 += x3 * y0
        c31 += x3 * y1
        c32 += x3 * y2
        c33 += x3 * y3
    r0, r1, r2, r3 = i * p + j, (i + 1) * p + j, (i + 2) * p + j, (i + 3) * p + j
    _store(out, r0, c00, accumulate)
    _store(out, r0 + 1, c01, accumulate)
    _store(out, r0 + 2, c02, accumulate)
    _store(out, r0 + 3, c03, accumulate)
    _store(out, r1, c10, accumulate)
    _store(out, r1 + 1, c11, accumulate)
    _store(out, r1 + 2, c12, accumulate)
    _store(out, r1 + 3, c13, accumulate)
    _store(out, r2, c20, accumulate)
    _store(out, r2 + 1, c21, accumulate)
    _store(out, r2 + 2, c22, accumulate)
    _store(out, r2 + 3, c23, accumulate)
    _store(out, r3, c30, accumulate)
    _store(out, r3 + 1, c31, accumulate)
    _store(out, r3 + 2, c32, accumulate)
    _store(out, r3 + 3, c33, accumulate)


@njit(inline="always")
def edge(a, bt, out, i0, i1, j0, j1, n, p, pc, kc, accumulate, zero):
    """The leftover rows/columns that do not fill a 4x4 block: one dot product each."""
    for i in range(i0, i1):
        for j in range(j0, j1):
            acc = zero
            for k in range(pc, pc + kc):
                acc += a[i * n + k] * bt[j * n + k]
            _store(out, i * p + j, acc, accumulate)


@kernel(fastmath={"reassoc", "contract", "nsz"})
def matmul_packed(a, bt, out, m, n, p, zero):
    """``out = a @ bt.T`` with the blocking described in the module docstring."""
    n_row_blocks = (m + MR - 1) // MR
    for pc in range(0, n, KC):
        kc = min(KC, n - pc)
        accumulate = pc > 0
        for jc in range(0, p, NC):
            j_end = min(jc + NC, p)
            j_full = jc + (j_end - jc) // NR * NR  # end of the full 4-wide blocks
            for ib in prange(n_row_blocks):
                i = ib * MR
                if i + MR <= m:
                    for j in range(jc, j_full, NR):
                        micro_4x4(a, bt, out, i, j, n, p, pc, kc, accumulate, zero)
                    edge(a, bt, out, i, i + MR, j_full, j_end, n, p, pc, kc, accumulate, zero)
                else:
                    edge(a, bt, out, i, m, jc, j_end, n, p, pc, kc, accumulate, zero)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, m: int, n: int, p: int) -> None:
    """Pack ``b`` transposed, then run the blocked kernel (serial build for small work)."""
    if n == 0:
        out[:] = 0
        return
    work = m * n * p
    bt = np.empty(p * n, dtype=b.dtype)
    pack_transpose.pick(n * p)(b, bt, n, p)
    # the parallel build pays once there are enough flops to share
    matmul_packed.pick(work // 2)(a, bt, out, m, n, p, out.dtype.type(0))

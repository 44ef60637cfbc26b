"""Integer kernels on the CPU (Numba): int8 x int8 -> int32 with zero points folded.

With codes ``a`` (M x K, zero point ``z_a``) and ``w`` (K x N, zero point ``z_w[j]`` per
column), the real product needs ``sum_k (a[i,k] - z_a) * (w[k,j] - z_w[j])``. Expanding
it, as gemmlowp does, leaves *one* plain integer dot product per output and cheap
corrections::

    acc[i,j] = sum_k a[i,k] w[k,j]                (the int8 core: K multiply-adds)
             - z_w[j] * rowsum_a[i]                (one multiply per output)
             - z_a * colsum_w[j]                   (colsum_w is a constant of the layer)
             + K * z_a * z_w[j]                    (a constant of the layer)
             + bias[j]                             (int32, at scale s_a * s_w[j])

With symmetric weights (``z_w = 0``) the second and fourth terms vanish.

**The core loop.** ``w`` is packed once, transposed (``wt``, N x K), so every output is a
dot product of two contiguous int8 rows. Written as ``s += int32(a[k]) * int32(wt[k])``,
LLVM's vectorizer widens the bytes to int16 (``vpmovsxbw``) and multiplies adjacent pairs
of int16 and adds them into int32 lanes in one instruction (``vpmaddwd``; with AVX-512
VNNI the add is fused too, ``vpdpwssd``): 16 multiply-adds per 256-bit instruction,
twice the lanes of float32 FMA. ``inspect_asm(qmatmul_kernel)`` shows them (the tests
check). Attempts with several accumulators per loop (register blocking as in the float
kernel) made LLVM give up the ``vpmaddwd`` pattern and were slower; what helps instead is
cache blocking: ``IB`` rows of ``a`` meet each row of ``wt`` while it is in L1.

**The epilogue** (:func:`qlinear_kernel`) runs where the accumulator is still in a
register: offsets, bias, requantization (:mod:`mlc.quant.fixedpoint`), ReLU as a clamp
at the output zero point, and the int8 store: the int32 matrix is never written out.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .fixedpoint import requantize_nb

IB = 4     # rows of a per block: each row of wt is reused IB times while in L1
JB = 128   # columns per block: JB rows of wt (JB * K bytes) stay in L2


@njit(parallel=True, cache=True)
def qmatmul_kernel(a, wt, out):
    """``out[i, j] = sum_k a[i, k] * wt[j, k]`` in int32 (no offsets)."""
    m, k_dim = a.shape
    n = wt.shape[0]
    for ib in prange((m + IB - 1) // IB):
        i0 = ib * IB
        i1 = min(m, i0 + IB)
        for j0 in range(0, n, JB):
            j1 = min(n, j0 + JB)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    s = np.int32(0)
                    for k in range(k_dim):
                        s += np.int32(a[i, k]) * np.int32(wt[j, k])
                    out[i, j] = s


@njit(parallel=True, cache=True)
def qmatmul_offsets_kernel(a, wt, za, zw, colsum, out):
    """``out = (a - za) @ (wt - zw[:, None]).T`` in int32, offsets folded (gemmlowp)."""
    m, k_dim = a.shape
    n = wt.shape[0]
    for ib in prange((m + IB - 1) // IB):
        i0 = ib * IB
        i1 = min(m, i0 + IB)
        for i in range(i0, i1):
            r = np.int32(0)
            for k in range(k_dim):
                r += np.int32(a[i, k])
            for j0 in range(0, n, JB):
                j1 = min(n, j0 + JB)
                for j in range(j0, j1):
                    s = np.int32(0)
                    for k in range(k_dim):
                        s += np.int32(a[i, k]) * np.int32(wt[j, k])
                    out[i, j] = s - zw[j] * r - za * colsum[j] + k_dim * za * zw[j]


@njit(parallel=True, cache=True)
def qlinear_kernel(a, wt, za, zw, colsum, bias, m0, shift, z_out, lo, hi, out):
    """int8 codes ``out = requantize(offset-corrected a @ wt.T + bias)``, fused.

    The dot products of a block of rows go to a small int32 buffer first (the same loop
    as :func:`qmatmul_kernel`, so LLVM vectorizes it the same way), then the epilogue
    runs over the buffer while it is in L1: putting the requantization inside the
    dot-product loop nest made LLVM give up vectorizing the core and cost 2x.
    """
    m, k_dim = a.shape
    n = wt.shape[0]
    for ib in prange((m + IB - 1) // IB):
        i0 = ib * IB
        i1 = min(m, i0 + IB)
        acc = np.empty((IB, n), np.int32)
        for j0 in range(0, n, JB):
            j1 = min(n, j0 + JB)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    s = np.int32(0)
                    for k in range(k_dim):
                        s += np.int32(a[i, k]) * np.int32(wt[j, k])
                    acc[i - i0, j] = s
        for i in range(i0, i1):
            r = np.int32(0)
            for k in range(k_dim):
                r += np.int32(a[i, k])
            for j in range(n):
                v = acc[i - i0, j] - zw[j] * r - za * colsum[j] + k_dim * za * zw[j] + bias[j]
                out[i, j] = requantize_nb(v, m0[j], shift[j], z_out, lo, hi)


SMALL_WORK = 1 << 18   # multiply-adds below which a serial kernel beats starting threads

qmatmul_kernel_serial = njit(cache=True)(qmatmul_kernel.py_func)
qmatmul_offsets_kernel_serial = njit(cache=True)(qmatmul_offsets_kernel.py_func)
qlinear_kernel_serial = njit(cache=True)(qlinear_kernel.py_func)


def pick(kernel, work: int):
    """The parallel kernel, or its serial build when ``work`` is small."""
    if work >= SMALL_WORK:
        return kernel
    return {qmatmul_kernel: qmatmul_kernel_serial,
            qmatmul_offsets_kernel: qmatmul_offsets_kernel_serial,
            qlinear_kernel: qlinear_kernel_serial}[kernel]


def core_instructions(kernel=qmatmul_kernel, a_dtype=np.int8) -> dict:
    """How often the int8 dot-product instructions appear in ``kernel``'s machine code.

    Numba cannot show the assembly of a function loaded from its cache, so this compiles
    a fresh, uncached copy of the kernel for int8 (or uint8) inputs.
    """
    fresh = njit(parallel=True)(kernel.py_func)
    a = np.zeros((4, 8), a_dtype)
    fresh(a, np.zeros((4, 8), np.int8), np.zeros((4, 4), np.int32))
    asm = fresh.inspect_asm(fresh.signatures[0])
    names = ("vpmaddwd", "vpdpwssd", "vpmaddubsw", "vpdpbusd", "vpmovsxbw", "vpmulld")
    return {name: asm.count(name) for name in names}

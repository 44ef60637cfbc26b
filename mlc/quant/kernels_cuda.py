"""The int8 linear kernel in Numba-CUDA: one thread per output element.

Thread ``(i, j)`` computes the int32 dot product of row ``i`` of ``a`` with row ``j`` of
the packed ``wt``; the zero-point offsets (``rowsum`` is precomputed per row on the
device by a first kernel), the int32 bias and the requantization are the *same* scalar
routines the CPU kernel inlines (:mod:`.routines`, compiled here as device functions),
so the codes agree bit for bit by construction. It is the readable version: no
shared-memory tiling (unit 04 shows how), and in Numba's simulator it runs in Python,
so the tests use tiny shapes.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .routines import routines

_offsets = routines("cuda").offsets
_requantize = routines("cuda").requantize


@cuda.jit
def _rowsum(a, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        r = np.int32(0)
        for k in range(a.shape[1]):
            r += np.int32(a[i, k])
        out[i] = r


@cuda.jit
def _qlinear(a, wt, rowsum, za, zw, colsum, bias, m0, shift, z_out, lo, hi, out, raw):
    i, j = cuda.grid(2)
    if i < a.shape[0] and j < wt.shape[0]:
        k_dim = a.shape[1]
        s = np.int32(0)
        for k in range(k_dim):
            s += np.int32(a[i, k]) * np.int32(wt[j, k])
        acc = _offsets(s, rowsum[i], za, zw[j], colsum[j], k_dim, bias[j])
        if raw:
            out[i, j] = acc
        else:
            out[i, j] = _requantize(acc, m0[j], shift[j], z_out, lo, hi)


def qlinear_cuda(a, wt, za, zw, colsum, bias, m0, shift, z_out, lo, hi, out_dtype,
                 raw=False, threads=(8, 8)):
    """Run the kernel on numpy inputs; returns a numpy array (int32 when ``raw``)."""
    m, n = a.shape[0], wt.shape[0]
    d = [cuda.to_device(np.ascontiguousarray(x)) for x in (a, wt, zw, colsum, bias, m0, shift)]
    d_a, d_wt, d_zw, d_colsum, d_bias, d_m0, d_shift = d
    d_rowsum = cuda.device_array(m, dtype=np.int32)
    _rowsum[(m + 63) // 64, 64](d_a, d_rowsum)
    d_out = cuda.device_array((m, n), dtype=np.int32 if raw else out_dtype)
    grid = ((m + threads[0] - 1) // threads[0], (n + threads[1] - 1) // threads[1])
    _qlinear[grid, threads](d_a, d_wt, d_rowsum, np.int32(za), d_zw, d_colsum, d_bias, d_m0,
                            d_shift, np.int32(z_out), np.int32(lo), np.int32(hi), d_out, raw)
    return d_out.copy_to_host()


def _wmatmul_kernel(wdot):
    """Weight-only group-wise matmul, one thread per output: ``wdot`` (:mod:`.routines`,
    on the same ``unpack4`` as the CPU kernel) walks down column ``j`` of the codes, so
    neighbouring threads read neighbouring bytes (coalesced)."""
    def kernel(x, codes, scales, group, out):
        i, j = cuda.grid(2)
        if i < x.shape[0] and j < out.shape[1]:
            out[i, j] = wdot(x, i, codes, scales, j, group)
    return cuda.jit(kernel)


_WMATMUL = {4: _wmatmul_kernel(routines("cuda").wdot4), 8: _wmatmul_kernel(routines("cuda").wdot8)}


def wmatmul_cuda(x, codes, scales, bits, group, threads=(8, 8)):
    """Run the weight-only kernel on numpy inputs (checked by the caller); float32 out."""
    m, n = x.shape[0], codes.shape[1]
    d_out = cuda.device_array((m, n), dtype=np.float32)
    grid = ((m + threads[0] - 1) // threads[0], (n + threads[1] - 1) // threads[1])
    _WMATMUL[bits][grid, threads](cuda.to_device(np.ascontiguousarray(x)), cuda.to_device(codes),
                                  cuda.to_device(scales), group, d_out)
    return d_out.copy_to_host()


_qadd = routines("cuda").qadd


@cuda.jit
def _qadd_kernel(a, b, params, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = _qadd(a[i], b[i], params)


def qadd_cuda(a, b, params, threads=128):
    """``qadd`` on flat int8 codes (numpy in, numpy out), the CPU kernel's routine."""
    d_out = cuda.device_array(a.shape, dtype=np.int8)
    _qadd_kernel[(a.size + threads - 1) // threads, threads](
        cuda.to_device(a), cuda.to_device(b), cuda.to_device(params), d_out)
    return d_out.copy_to_host()


@cuda.jit
def _qmatmul_kernel(a, za, b, zb, scale, out):
    t, i, j = cuda.grid(3)
    if t < out.shape[0] and i < out.shape[1] and j < out.shape[2]:
        acc = 0.0                 # float64, summed over k in order: the CPU kernel's bits
        for k in range(a.shape[2]):
            acc += (np.float64(a[t, i, k]) - za) * (np.float64(b[t, k, j]) - zb)
        out[t, i, j] = np.float32(scale * acc)


def qmatmul_cuda(a, za, b, zb, scale, threads=(1, 8, 8)):
    """qmatmul on 3-D operands (numpy in, numpy out), one thread per output."""
    shape = (a.shape[0], a.shape[1], b.shape[2])
    d_out = cuda.device_array(shape, dtype=np.float32)
    grid = tuple((s + t - 1) // t for s, t in zip(shape, threads, strict=True))
    _qmatmul_kernel[grid, threads](cuda.to_device(a), za, cuda.to_device(b), zb, scale, d_out)
    return d_out.copy_to_host()

"""The CPU kernels (Numba) of the graph's small quantized ops: ``quantize``,
``dequantize``, ``qadd`` (elementwise, on flat buffers) and ``qmatmul`` (attention's
products, batched). ``qlinear``'s kernels are :mod:`.kernels_cpu`.

Each is one serial loop: these ops do a few operations per element, so on the sizes
of a model's activations waking threads would cost more than the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .routines import routines

_qadd = routines("cpu").qadd


@njit(cache=True)
def qadd_kernel(a, b, params, out):
    """``out[i] = qadd(a[i], b[i])`` on flat int8 codes (:func:`.routines.qadd`)."""
    for i in range(out.shape[0]):
        out[i] = _qadd(a[i], b[i], params)


@njit(cache=True)
def quantize_kernel(x, scale, zero_point, lo, hi, out):
    """``clamp(rint(x / scale) + z)`` in float64, as :func:`mlc.quant.quantize` (ties to
    even, so the codes are the reference's)."""
    for i in range(out.shape[0]):
        q = np.rint(np.float64(x[i]) / scale) + zero_point
        out[i] = min(max(q, lo), hi)


@njit(cache=True)
def dequantize_kernel(q, scale, zero_point, out):
    """``scale * (q - z)`` in float64, stored as float32 (as :func:`mlc.quant.dequantize`)."""
    for i in range(out.shape[0]):
        out[i] = np.float32(scale * (np.float64(q[i]) - zero_point))


@njit(cache=True)
def qmatmul_batched(a, za, b, zb, scale, acc, out):
    """``out[t] = scale * (a[t] - za) @ (b[t] - zb)``, summed in float64 (exact for int8
    codes) with ``acc`` (N,) as the row accumulator; either operand may be float (then
    its zero point is 0). Row-times-row order (``acc += a[i, k] b[k, :]``): no reduction
    in the inner loop, so it vectorizes."""
    for t in range(out.shape[0]):
        for i in range(out.shape[1]):
            acc[:] = 0.0
            for k in range(a.shape[2]):
                av = np.float64(a[t, i, k]) - za
                for j in range(out.shape[2]):
                    acc[j] += av * (np.float64(b[t, k, j]) - zb)
            for j in range(out.shape[2]):
                out[t, i, j] = np.float32(scale * acc[j])

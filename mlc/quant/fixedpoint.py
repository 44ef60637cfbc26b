"""Integer-only requantization: gemmlowp's fixed-point arithmetic (Jacob et al. 2018).

An int8 layer accumulates ``acc = sum((q_x - z_x) * (q_w - z_w))`` in int32. Its real
value is ``s_x * s_w * acc``; stored in the output's grid ``(s_y, z_y)`` it is::

    q_y = z_y + round(M * acc),        M = s_x * s_w / s_y      (a real number, 0 < M < 1 usually)

An integer-only chip has no float unit to multiply by ``M``. Write ``M`` as a 31-bit
fixed-point fraction and a power of two (:func:`quantize_multiplier`)::

    M = m0 * 2^(shift - 31),     m0 an int32 in [2^30, 2^31)

then ``M * acc`` is an integer multiply and two rounding shifts (:func:`requantize`):

1. ``SaturatingRoundingDoublingHighMul(acc, m0)``: the high 32 bits of the 64-bit
   product ``2 * acc * m0``, rounded to nearest; the one product that overflows,
   ``INT32_MIN * INT32_MIN``, saturates to ``INT32_MAX``. This is ``acc * m0 / 2^31``
   rounded. Mind the ties: gemmlowp adds ``2^30`` to a positive product and
   ``1 - 2^30`` to a negative one, then divides with C's truncation toward zero, so
   ``+0.5 -> 1`` but ``-0.5 -> 0`` and ``-1.5 -> -1``: ties go *up* (ARM's ``VQRDMULH``),
   not away from zero (often said, but not what the code does; the tests pin it).
2. ``RoundingDivideByPOT(x, -shift)``: an arithmetic right shift by ``-shift`` bits,
   rounded to nearest with ties away from zero: add one when the remainder
   ``x & mask`` exceeds ``mask >> 1`` (plus one more for negative ``x``, which turns
   the floor of the shift into round-half-away). A positive ``shift`` (``M >= 1``) is a
   saturating left shift instead, applied *before* the high multiply, as TFLite does.
3. add ``z_y``, clamp to the output type (and to ``z_y`` from below for a fused ReLU:
   the real number 0 is the code ``z_y``).

The rounding is double (step 1 then step 2), so the result may differ from
``round(M * acc)`` by one code near a half-way point: what matters is that every
implementation here (numpy, Numba on the CPU, Numba-CUDA) and gemmlowp/TFLite agree bit
for bit, which the tests check against an independent Python-int reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .affine import check_dtype, qrange
from .routines import routines

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real_multiplier):
    """``(m0, shift)`` with ``real_multiplier ~= m0 * 2**(shift - 31)``, as TFLite's
    ``QuantizeMultiplier``.

    ``frexp`` splits ``M = q * 2^shift`` with ``q`` in ``[0.5, 1)``; ``m0 = round(q * 2^31)``
    (half away from zero) lies in ``[2^30, 2^31]``, and the edge ``m0 == 2^31`` (when
    ``q`` rounds up to 1) becomes ``2^30`` with ``shift + 1``. ``M = 0`` gives ``(0, 0)``.
    Tiny multipliers (``shift < -31``) flush to ``(0, 0)``, as TFLite does. An array of
    multipliers (per-channel) gives two int32 arrays.
    """
    arr = np.asarray(real_multiplier, dtype=np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"quantize_multiplier: the multiplier must be finite and >= 0, got "
                         f"{real_multiplier}")
    if arr.ndim == 0:
        return _quantize_multiplier_scalar(float(arr))
    pairs = [_quantize_multiplier_scalar(float(m)) for m in arr.reshape(-1)]
    m0 = np.array([p[0] for p in pairs], dtype=np.int32).reshape(arr.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int32).reshape(arr.shape)
    return m0, shift


def _quantize_multiplier_scalar(m: float) -> tuple[int, int]:
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)                  # m = q * 2**shift, 0.5 <= q < 1
    m0 = int(math.floor(q * (1 << 31) + 0.5))  # round half away (q > 0)
    if m0 == (1 << 31):                       # q rounded up to 1.0
        m0 //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"quantize_multiplier: {m} is too large for an int32 fixed-point "
                         "multiplier (shift > 30)")
    return m0, shift


# -- numpy, vectorized --------------------------------------------------------------------


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` elementwise on int32 arrays."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b                                           # exact: |ab| <= 2^62
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    t = ab + nudge
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))      # C's division: truncate to zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError("rounding_divide_by_pot: exponent must lie in [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> e) + (remainder > threshold)).astype(np.int32)


def saturating_left_shift(x, exponent) -> np.ndarray:
    """``x * 2^exponent`` saturated to int32 (gemmlowp's ``SaturatingRoundingMultiplyByPOT``
    with a positive exponent)."""
    x = np.asarray(x, dtype=np.int64) << np.asarray(exponent, dtype=np.int64)
    return np.clip(x, INT32_MIN, INT32_MAX).astype(np.int32)


def multiply_by_quantized_multiplier(acc, m0, shift) -> np.ndarray:
    """``acc * m0 * 2^(shift - 31)`` rounded, in int32 (TFLite's
    ``MultiplyByQuantizedMultiplier``, with a saturating left shift)."""
    acc = np.asarray(acc)
    if acc.dtype != np.int32:
        raise TypeError(f"requantize: the accumulator must be int32, got {acc.dtype}")
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = saturating_left_shift(acc, left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m0), right)


def requantize(acc_int32, m0, shift, zero_point, dtype: str = "int8", relu: bool = False,
               num_bits: int | None = None) -> np.ndarray:
    """int32 accumulators -> ``dtype`` codes, integer arithmetic only (see module doc).

    ``m0``, ``shift`` and ``zero_point`` are scalars or arrays that broadcast against
    ``acc_int32`` (per-channel: one per column, the last axis). ``relu=True`` clamps at the
    zero point, which is a fused ReLU in the quantized domain.
    """
    dtype = check_dtype(dtype)
    q_min, q_max = qrange(dtype, num_bits)
    x = multiply_by_quantized_multiplier(acc_int32, m0, shift).astype(np.int64)
    x = x + np.asarray(zero_point, dtype=np.int64)
    lo = np.maximum(q_min, zero_point) if relu else q_min
    return np.clip(x, lo, q_max).astype(dtype)


# -- Numba, for use inside kernels --------------------------------------------------------


# the scalar forms live once in :mod:`.routines`, compiled here for the CPU (Numba); the
# CUDA kernels compile the same source as device functions
_CPU = routines("cpu")
srdhm_nb = _CPU.srdhm          # scalar SaturatingRoundingDoublingHighMul
rdbpot_nb = _CPU.rdbpot        # scalar RoundingDivideByPOT
requantize_nb = _CPU.requantize


@njit(cache=True)
def requantize_array_nb(acc, m0, shift, zero_point, lo, hi, out):
    """``out[i, j] = requantize(acc[i, j], m0[j], shift[j], ...)`` (per-column params)."""
    n, m = acc.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = requantize_nb(acc[i, j], m0[j], shift[j], zero_point, lo, hi)

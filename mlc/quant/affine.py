"""Affine (uniform) quantization: real numbers on an integer grid.

A real tensor ``x`` is stored as integers ``q`` with one *scale* ``s`` (a positive float)
and one *zero point* ``z`` (an integer of the storage type)::

    q = clamp(round(x / s) + z, q_min, q_max)        # quantize
    x_hat = s * (q - z)                              # dequantize

``q_min, q_max`` come from the integer type and the number of bits (:func:`qrange`):
``int8`` is ``[-128, 127]``, ``uint8`` ``[0, 255]``; with ``num_bits=4`` the same storage
holds ``[-8, 7]`` or ``[0, 15]`` (what 4-bit quantization-aware training simulates).

**Choosing s and z from a range** ``[min, max]`` (:func:`qparams`). The range is first
widened to contain 0, and ``z`` is an integer, so the real number 0 is *exactly*
representable: zero padding, ReLU's zeros and sparse weights stay exact, which
integer-only kernels rely on (padding a quantized image means writing ``z``).

* asymmetric (affine): ``s = (max - min) / (q_max - q_min)``, ``z = q_min - round(min / s)``,
  all of ``[min, max]`` is used; good for activations after a ReLU (all >= 0).
* symmetric: ``z`` is fixed (0 for signed types, 128 for uint8) and
  ``s = max(|min|, |max|) / (q_max - z)``. The integer kernels are cheaper when a
  zero point is 0 (no offset term for it), so weights are quantized symmetrically.
  The grid is then ``[-127, 127]`` for int8: -128 is never produced by rounding
  (TFLite's "narrow range" for weights).

**Per-tensor or per-channel.** With ``axis=None`` there is one ``(s, z)`` for the whole
tensor. With ``axis=k`` there is one per slice along axis ``k`` (``s`` and ``z`` are 1-D
arrays of length ``x.shape[k]``): a weight matrix whose output channels have very
different ranges loses much less precision that way.

Rounding is round-half-to-even (``np.rint``, as PyTorch's ``nearbyint``); the arithmetic
is in float64 so results do not depend on how float32 expressions were fused.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("int8", "uint8")
EPS = float(np.finfo(np.float32).eps)   # the smallest scale (an all-zero range)


def check_dtype(dtype) -> str:
    d = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    if d not in DTYPES:
        raise ValueError(f"quantized dtype must be one of {DTYPES}, got {dtype!r}")
    return d


def qrange(dtype: str = "int8", num_bits: int | None = None) -> tuple[int, int]:
    """``(q_min, q_max)`` of ``dtype`` holding ``num_bits``-bit values (default: all 8).

    >>> qrange("int8"), qrange("uint8"), qrange("int8", num_bits=4)
    ((-128, 127), (0, 255), (-8, 7))
    """
    dtype = check_dtype(dtype)
    bits = 8 if num_bits is None else int(num_bits)
    if not 2 <= bits <= 8:
        raise ValueError(f"num_bits must lie in [2, 8] for {dtype} storage, got {num_bits}")
    if dtype == "int8":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def as_numpy(x) -> np.ndarray:
    """A numpy view of ``x``: a numpy array, a list, an ``NDArray`` or an ``mlc.Tensor``."""
    if hasattr(x, "realize_cached_data"):  # mlc.Tensor
        x = x.realize_cached_data()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x)


def check_axis(axis, ndim: int) -> int | None:
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for a tensor with {ndim} axes")
    return int(axis) % ndim


def qparams(min_val, max_val, dtype: str = "int8", symmetric: bool = False,
            num_bits: int | None = None):
    """``(scale, zero_point)`` for values in ``[min_val, max_val]``.

    Scalars give a Python ``(float, int)``; arrays (per-channel ranges) give a float32
    array of scales and an int32 array of zero points. ``min_val > max_val`` is an error.
    """
    q_min, q_max = qrange(dtype, num_bits)
    lo = np.asarray(min_val, dtype=np.float64)
    hi = np.asarray(max_val, dtype=np.float64)
    if lo.shape != hi.shape:
        raise ValueError(f"min_val and max_val have shapes {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("qparams: the range must be finite (did an observer see no data?)")
    if np.any(lo > hi):
        raise ValueError(f"qparams: min_val {min_val} is greater than max_val {max_val}")
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)   # 0 must lie in the range
    if symmetric:
        z = np.full(lo.shape, 0 if q_min < 0 else (q_min + q_max + 1) // 2, dtype=np.int64)
        amax = np.maximum(-lo, hi)
        scale = np.maximum(amax / (q_max - z), EPS)
    else:
        scale = np.maximum((hi - lo) / (q_max - q_min), EPS)
        z = np.clip(q_min - np.rint(lo / scale), q_min, q_max).astype(np.int64)
    scale = scale.astype(np.float32)
    if scale.ndim == 0:
        return float(scale), int(z)
    return scale, z.astype(np.int32)


def _broadcast(p, x: np.ndarray, axis, what: str):
    """A scale or zero point shaped to broadcast against ``x`` (per-channel on ``axis``)."""
    p = np.asarray(p)
    if axis is None:
        if p.ndim != 0 and p.size != 1:
            raise ValueError(f"{what} has {p.size} values but axis is None (per-tensor); "
                             "pass axis= for per-channel quantization")
        return p.reshape(())
    axis = check_axis(axis, x.ndim)
    if p.ndim != 1 or p.shape[0] != x.shape[axis]:
        raise ValueError(f"per-channel {what} must have shape ({x.shape[axis]},) for axis "
                         f"{axis} of a tensor of shape {x.shape}, got {p.shape}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return p.reshape(shape)


def quantize(x, scale, zero_point, dtype: str = "int8", axis: int | None = None,
             num_bits: int | None = None) -> np.ndarray:
    """``clamp(round(x / scale) + zero_point, q_min, q_max)`` as a ``dtype`` numpy array."""
    q_min, q_max = qrange(dtype, num_bits)
    x = as_numpy(x)
    s = _broadcast(scale, x, axis, "scale").astype(np.float64)
    z = _broadcast(zero_point, x, axis, "zero_point").astype(np.float64)
    if np.any(s <= 0):
        raise ValueError("quantize: scales must be positive")
    q = np.rint(x.astype(np.float64) / s) + z
    return np.clip(q, q_min, q_max).astype(dtype)


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """``scale * (q - zero_point)`` as float32."""
    q = as_numpy(q)
    s = _broadcast(scale, q, axis, "scale").astype(np.float64)
    z = _broadcast(zero_point, q, axis, "zero_point").astype(np.float64)
    return (s * (q.astype(np.float64) - z)).astype(np.float32)


def fake_quantize(x, scale, zero_point, dtype: str = "int8", axis: int | None = None,
                  num_bits: int | None = None) -> np.ndarray:
    """Quantize then dequantize: the float value the integer grid would hold.

    This is what quantization-aware training and a fake-quant simulator compute: floats
    everywhere, but only values on the grid ``scale * (k - zero_point)``.
    """
    return dequantize(quantize(x, scale, zero_point, dtype, axis, num_bits), scale,
                      zero_point, axis)


def quantization_error(x, scale, zero_point, dtype="int8", axis=None, num_bits=None):
    """The mean squared error of :func:`fake_quantize` on ``x``."""
    x = as_numpy(x).astype(np.float64)
    return float(np.mean((x - fake_quantize(x, scale, zero_point, dtype, axis, num_bits)) ** 2))


def sqnr(reference, approx) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(|ref|^2 / |ref - approx|^2)``."""
    r = as_numpy(reference).astype(np.float64)
    e = r - as_numpy(approx).astype(np.float64)
    noise = float(np.sum(e * e))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(float(np.sum(r * r)), 1e-300) / noise)

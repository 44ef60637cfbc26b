"""The scalar integer routines, written once and compiled for each target.

A quantized kernel is a loop (different on a CPU and a GPU: tiles and threads on one,
a thread per output on the other) around a few *scalar* steps that must agree bit for
bit wherever they run: gemmlowp's fixed-point multiply, its rounding shift, the
requantization epilogue, the zero-point offsets, a 4-bit code taken out of its byte.
Those steps are plain Python here, in :func:`_define`, and :func:`routines` compiles
them with the target's decorator::

    cpu = routines("cpu")     # numba.njit(inline="always"): inlined into the CPU kernels
    gpu = routines("cuda")    # numba.cuda.jit(device=True): called from CUDA kernels
    cpu.requantize(acc, m0, shift, z, lo, hi)   # the same source, two compilations

so there is one copy of the arithmetic, not a CPU file and a hand-synced CUDA file.
Each routine calls the others *of its own target* (they are passed in as closure
variables, which Numba freezes as constants when it compiles the caller).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np


def _define(jit) -> SimpleNamespace:
    """The routines, compiled with ``jit`` (a decorator)."""

    @jit
    def srdhm(a, b):
        """``SaturatingRoundingDoublingHighMul`` (int32 in, int32 out)."""
        if a == -2147483648 and b == -2147483648:
            return np.int32(2147483647)
        ab = np.int64(a) * np.int64(b)
        nudge = np.int64(1073741824) if ab >= 0 else np.int64(-1073741823)
        t = ab + nudge
        # C division truncates toward zero; a shift floors, so shift |t| and restore the sign
        if t >= 0:
            return np.int32(t >> 31)
        return np.int32(-((-t) >> 31))

    @jit
    def rdbpot(x, exponent):
        """``RoundingDivideByPOT``: ``x / 2^exponent``, ties away from zero."""
        mask = (np.int32(1) << exponent) - np.int32(1)
        remainder = x & mask
        threshold = (mask >> 1) + (np.int32(1) if x < 0 else np.int32(0))
        return (x >> exponent) + (np.int32(1) if remainder > threshold else np.int32(0))

    @jit
    def requantize(acc, m0, shift, zero_point, lo, hi):
        """One int32 accumulator -> a code in ``[lo, hi]`` (``lo = max(q_min, z)`` for ReLU)."""
        x = np.int32(acc)
        if shift > 0:                  # M >= 1: a saturating left shift first, as TFLite
            w = np.int64(x) << shift
            if w > 2147483647:
                w = np.int64(2147483647)
            elif w < -2147483648:
                w = np.int64(-2147483648)
            x = np.int32(w)
            right = 0
        else:
            right = -shift
        y = np.int32(rdbpot(srdhm(x, np.int32(m0)), np.int32(right))) + np.int32(zero_point)
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        return y

    @jit
    def offsets(dot, rowsum_i, za, zw_j, colsum_j, k_dim, bias_j):
        """gemmlowp's expansion: the raw ``sum_k a w`` -> ``sum_k (a - za)(w - zw) + bias``."""
        return dot - zw_j * rowsum_i - za * colsum_j + k_dim * za * zw_j + bias_j

    @jit
    def nibble(packed, k):
        """The signed 4-bit code ``k`` of a row packed two per byte (low nibble first)."""
        b = np.int32(packed[k >> 1]) & np.int32(0xFF)
        v = (b >> np.int32(4)) if (k & 1) else (b & np.int32(0xF))
        return v - np.int32(16) if v >= np.int32(8) else v

    return SimpleNamespace(srdhm=srdhm, rdbpot=rdbpot, requantize=requantize,
                           offsets=offsets, nibble=nibble)


def _python(f):
    return f


@lru_cache(maxsize=None)
def routines(target: str) -> SimpleNamespace:
    """The routines compiled for ``target``: ``"cpu"`` (Numba, inlined), ``"cuda"`` (device
    functions; Python in the simulator) or ``"python"`` (uncompiled, to step through)."""
    if target == "cpu":
        from numba import njit

        return _define(njit(inline="always"))
    if target == "cuda":
        from numba import cuda

        return _define(cuda.jit(device=True))
    if target == "python":
        return _define(_python)
    raise ValueError(f"routines: unknown target {target!r}; use 'cpu', 'cuda' or 'python'")

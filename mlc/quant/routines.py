"""The scalar integer routines, written once and compiled for each target.

A quantized kernel is a loop (different on a CPU and a GPU: tiles and threads on one,
a thread per output on the other) around a few *scalar* steps that must agree bit for
bit wherever they run: gemmlowp's fixed-point multiply, its rounding shift, the
requantization epilogue, the zero-point offsets, two 4-bit codes taken out of a byte.
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
    def mbqm(acc, m0, shift):
        """``MultiplyByQuantizedMultiplier``: ``acc * m0 * 2^(shift - 31)`` rounded, int32."""
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
        return np.int32(rdbpot(srdhm(x, np.int32(m0)), np.int32(right)))

    @jit
    def requantize(acc, m0, shift, zero_point, lo, hi):
        """One int32 accumulator -> a code in ``[lo, hi]`` (``lo = max(q_min, z)`` for ReLU)."""
        y = mbqm(acc, m0, shift) + np.int32(zero_point)
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        return y

    @jit
    def qadd(a, b, p):
        """Two codes on their own scales -> their sum's code (TFLite's quantized add):
        each input, less its zero point and shifted up by ``p[11]`` bits of headroom, is
        rescaled to the shared accumulator grid; the sum is requantized. ``p`` is int32
        ``z_a, m_a, shift_a, z_b, m_b, shift_b, m_out, shift_out, z_out, lo, hi, left``:
        one array, so every kernel takes the op's attributes as one argument."""
        da = (np.int32(a) - p[0]) << p[11]
        db = (np.int32(b) - p[3]) << p[11]
        acc = np.int32(np.int64(mbqm(da, p[1], p[2])) + np.int64(mbqm(db, p[4], p[5])))
        return requantize(acc, p[6], p[7], p[8], p[9], p[10])

    @jit
    def offsets(dot, rowsum_i, za, zw_j, colsum_j, k_dim, bias_j):
        """gemmlowp's expansion: the raw ``sum_k a w`` -> ``sum_k (a - za)(w - zw) + bias``."""
        return dot - zw_j * rowsum_i - za * colsum_j + k_dim * za * zw_j + bias_j

    @jit
    def unpack4(byte):
        """The two signed 4-bit codes of one byte, low nibble first: ``(c0, c1)`` in
        ``[-8, 7]``. ``(v ^ 8) - 8`` sign-extends a nibble without a branch."""
        b = np.int32(byte) & np.int32(0xFF)
        return (((b & np.int32(15)) ^ np.int32(8)) - np.int32(8),
                ((b >> np.int32(4)) ^ np.int32(8)) - np.int32(8))

    @jit
    def dot4(x, i, codes, j, k0, k1):
        """``sum_k x[i, k] * c[k, j]`` over ``k0 <= k < k1`` (both even), ``c`` 4-bit codes
        packed two per byte down column ``j`` (byte ``kb`` holds rows ``2 kb, 2 kb + 1``):
        dequantized here, in registers."""
        s = np.float32(0.0)
        for kb in range(k0 >> 1, k1 >> 1):
            c0, c1 = unpack4(codes[kb, j])
            s += x[i, 2 * kb] * np.float32(c0) + x[i, 2 * kb + 1] * np.float32(c1)
        return s

    @jit
    def dot8(x, i, codes, j, k0, k1):
        """The same for int8 codes, one per byte."""
        s = np.float32(0.0)
        for k in range(k0, k1):
            s += x[i, k] * np.float32(codes[k, j])
        return s

    @jit
    def unpack_row4(wf, row):
        """A packed row of 4-bit codes as floats: ``wf[0, j]`` the low nibble of
        ``row[j]``, ``wf[1, j]`` the high one (codes of rows ``2 kb`` and ``2 kb + 1``).
        The sign is extended by shifts of an int8 (``(b << 4) >> 4`` for the low nibble),
        which LLVM vectorizes; :func:`unpack4`'s masks did not, and ran 3x slower here."""
        w0, w1 = wf[0], wf[1]
        for j in range(w0.shape[0]):
            b = row[j]
            w0[j] = np.float32(np.int8(b << 4) >> 4)
            w1[j] = np.float32(np.int8(b) >> 4)

    @jit
    def unpack_row8(wf, row):
        """A row of int8 codes as floats, into ``wf[0]``."""
        w0 = wf[0]
        for j in range(w0.shape[0]):
            w0[j] = np.float32(row[j])

    def grouped(dot):
        @jit
        def wdot(x, i, codes, scales, j, group):
            """Output ``(i, j)`` of the weight-only matmul: one scale per ``group`` codes,
            applied once to the group's sum (``K`` a multiple of ``group``)."""
            acc = np.float32(0.0)
            for g in range(x.shape[1] // group):
                acc += scales[g, j] * dot(x, i, codes, j, g * group, (g + 1) * group)
            return acc
        return wdot

    return SimpleNamespace(srdhm=srdhm, rdbpot=rdbpot, mbqm=mbqm, requantize=requantize,
                           qadd=qadd, offsets=offsets, unpack4=unpack4, dot4=dot4, dot8=dot8,
                           wdot4=grouped(dot4), wdot8=grouped(dot8), unpack_row4=unpack_row4,
                           unpack_row8=unpack_row8)


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

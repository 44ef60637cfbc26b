"""Checked entry points to the integer kernels: ``qmatmul``, ``qlinear``, ``qconv2d``.

Numba kernels do not check bounds, so everything is checked here, in Python, before a
kernel runs: dtypes (int8/uint8 codes, int32 bias and multipliers), shapes, per-column
parameter lengths. ``device`` is ``nd.cpu()`` (Numba, parallel; the default),
``nd.cuda()`` (Numba-CUDA, or its simulator) or ``nd.cpu_numpy()`` (plain numpy int64
arithmetic: the reference the kernels are tested against).

A layer's weight is packed once (:class:`PackedWeight`): transposed to ``(N, K)`` rows,
with its per-column zero points and column sums ready for the offset terms, and (on first
use by ``nd.cpu()``) widened to the int16 panel the CPU kernel reads
(:mod:`.kernels_cpu` says why); an input of a few rows reads the int8 codes instead.
"""

from __future__ import annotations

import numpy as np

from .affine import as_numpy, qrange
from .fixedpoint import requantize

CODE_DTYPES = (np.int8, np.uint8)
_CODE_NAMES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}


def _device_name(device) -> str:
    if device is None:
        return "cpu"
    name = getattr(device, "name", device)
    if name not in ("cpu", "cuda", "cpu_numpy"):
        raise ValueError(f"unknown device {device!r}: use nd.cpu(), nd.cuda() or nd.cpu_numpy()")
    if name == "cuda":
        from .. import ndarray as nd

        if not nd.cuda().enabled():
            raise RuntimeError("nd.cuda() is not available here (no GPU and no simulator)")
    return name


def _codes(x, what: str, ndim: int) -> np.ndarray:
    x = as_numpy(x)
    if x.dtype not in CODE_DTYPES:
        raise TypeError(f"{what} must hold int8 or uint8 codes, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} axes, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _per_column(p, n: int, what: str, dtype=np.int32) -> np.ndarray:
    if (type(p) is np.ndarray and p.dtype == dtype and p.shape == (n,)
            and p.flags.c_contiguous):
        return p                          # a layer's own parameters: already checked
    arr = np.asarray(p)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{what} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must be integers, got {arr.dtype}")
    return np.ascontiguousarray(arr.astype(dtype))


class PackedWeight:
    """A ``(K, N)`` int8 weight, packed for the kernels: ``wt`` (N x K), ``zero_point``
    and ``colsum`` (N,) int32; ``wt16``, the CPU kernel's int16 copy of ``wt`` (padded),
    is made on first use, as is ``wt8``, the codes as the few-rows kernel reads them
    (``wt`` itself when its shape needs no padding). ``nbytes`` counts the int8 codes
    (what a model stores); ``kernel_bytes`` the copies too, once made (what the CPU
    kernels hold at run time).
    """

    def __init__(self, w_q, zero_point=0):
        w = _codes(w_q, "the weight", 2)
        if w.dtype != np.int8:
            raise TypeError(f"weights must be int8 codes, got {w.dtype}")
        self.k, self.n = w.shape
        self.wt = np.ascontiguousarray(w.T)
        self.zero_point = _per_column(zero_point, self.n, "the weight zero point")
        self.colsum = self.wt.astype(np.int32).sum(axis=1).astype(np.int32)
        self.nbytes = self.wt.nbytes
        self._wt16 = self._wt8 = None

    @property
    def wt16(self) -> np.ndarray:
        if self._wt16 is None:
            from .kernels_cpu import NR, pack_panel

            self._wt16 = pack_panel(self.wt, NR)
        return self._wt16

    @property
    def wt8(self) -> np.ndarray:
        if self._wt8 is None:
            from .kernels_cpu import NR1, VL, pack_panel

            aligned = self.n % NR1 == 0 and self.k % VL == 0
            self._wt8 = self.wt if aligned else pack_panel(self.wt, NR1, np.int8)
        return self._wt8

    def panel(self, m: int) -> np.ndarray:
        """What the CPU kernel for ``m`` input rows reads (``kernels_cpu.qlinear``):
        ``wt8`` for a few rows, else ``wt16``."""
        from .kernels_cpu import ROWS_MAX

        return self.wt8 if m <= ROWS_MAX else self.wt16

    @property
    def kernel_bytes(self) -> int:
        copies = [c for c in (self._wt16, self._wt8) if c is not None and c is not self.wt]
        return self.nbytes + sum(c.nbytes for c in copies)

    def numpy(self) -> np.ndarray:
        return self.wt.T


def _packed(w, zw) -> PackedWeight:
    if isinstance(w, PackedWeight):
        return w
    return PackedWeight(w, zw)


def _check_a(a, pw: PackedWeight, za) -> tuple[np.ndarray, int]:
    a = _codes(a, "the input", 2)
    if a.shape[1] != pw.k:
        raise ValueError(f"shapes do not match: input {a.shape} @ weight ({pw.k}, {pw.n})")
    lo, hi = qrange(_CODE_NAMES[a.dtype])
    if not isinstance(za, (int, np.integer)) or not lo <= int(za) <= hi:
        raise ValueError(f"the input zero point must be an integer in [{lo}, {hi}], got {za!r}")
    return a, int(za)


def qmatmul(a, w, za: int = 0, zw=0, device=None) -> np.ndarray:
    """``(a - za) @ (w - zw)`` in int32: ``a`` (M, K) int8/uint8 codes, ``w`` (K, N) int8
    codes or a :class:`PackedWeight`, zero points folded in as gemmlowp's offsets."""
    dev = _device_name(device)
    pw = _packed(w, zw)
    a, za = _check_a(a, pw, za)
    m, n = a.shape[0], pw.n
    if dev == "cpu_numpy":
        return ((a.astype(np.int64) - za) @ (pw.wt.T.astype(np.int64) - pw.zero_point)
                ).astype(np.int32)
    if dev == "cuda":
        from .kernels_cuda import qlinear_cuda

        z = np.zeros(n, np.int32)
        return qlinear_cuda(a, pw.wt, za, pw.zero_point, pw.colsum, z, z, z, 0, 0, 0,
                            np.int32, raw=True)
    from .kernels_cpu import qgemm

    out = np.empty((m, n), np.int32)
    a16, rowsum = _pack_input(a)
    qgemm(m, n, pw.k)(a16, pw.wt16, np.int32(za), pw.zero_point, pw.colsum, rowsum, pw.k, out)
    return out


def _pack_input(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CPU kernel's operands for the input: its int16 panel and its row sums."""
    from .kernels_cpu import MR, pack_panel

    return pack_panel(a, MR), a.sum(axis=1, dtype=np.int32)


def qlinear(a, w, za: int, bias, m0, shift, z_out: int, zw=0, dtype: str = "int8",
            relu: bool = False, num_bits: int | None = None, device=None) -> np.ndarray:
    """One integer-only linear layer: ``dtype`` codes of
    ``requantize((a - za) @ (w - zw) + bias, m0, shift, z_out)`` (ReLU fused as a clamp).

    ``bias`` is int32 at scale ``s_a * s_w[j]`` (or None), ``m0``/``shift`` are the
    per-column (or scalar) fixed-point multipliers of ``s_a * s_w[j] / s_out``.
    """
    dev = _device_name(device)
    pw = _packed(w, zw)
    a, za = _check_a(a, pw, za)
    n = pw.n
    if bias is not None and np.asarray(bias).dtype != np.int32:
        raise TypeError(f"the bias must be int32 (at scale s_in * s_w), got "
                        f"{np.asarray(bias).dtype}")
    bias = np.zeros(n, np.int32) if bias is None else _per_column(bias, n, "the bias")
    m0 = _per_column(m0, n, "m0")
    shift = _per_column(shift, n, "shift")
    if shift.size and (shift.max() > 30 or shift.min() < -31):
        raise ValueError("shift must lie in [-31, 30]")
    q_min, q_max = qrange(dtype, num_bits)
    if not isinstance(z_out, (int, np.integer)) or not q_min <= int(z_out) <= q_max:
        raise ValueError(f"the output zero point must be an integer in [{q_min}, {q_max}]")
    lo = max(q_min, int(z_out)) if relu else q_min
    if dev == "cpu_numpy":
        acc = qmatmul(a, pw, za, device="cpu_numpy").astype(np.int64) + bias
        return requantize(acc.astype(np.int32), m0, shift, int(z_out), dtype, relu, num_bits)
    if dev == "cuda":
        from .kernels_cuda import qlinear_cuda

        return qlinear_cuda(a, pw.wt, za, pw.zero_point, pw.colsum, bias, m0, shift,
                            int(z_out), lo, q_max, np.dtype(dtype))
    from .kernels_cpu import qlinear as kernel

    m = a.shape[0]
    out = np.empty((m, n), dtype=dtype)
    a16, rowsum = _pack_input(a)
    kernel(m, n, pw.k)(a16, pw.panel(m), np.int32(za), pw.zero_point, pw.colsum, rowsum, pw.k,
                       bias, m0, shift, np.int32(z_out), np.int32(lo), np.int32(q_max), out)
    return out


def im2col_codes(x, kernel: int, stride: int = 1, padding: int = 0, pad_value: int = 0):
    """NHWC codes -> ``(N * H_out * W_out, K * K * C)`` windows (numpy, a copy).

    Padding writes ``pad_value``, the input's *zero point*: the code of the real 0.
    """
    x = _codes(x, "the input", 4)
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   constant_values=pad_value)
    n, h, w, c = x.shape
    if kernel > h or kernel > w or stride < 1:
        raise ValueError(f"kernel {kernel} with stride {stride} does not fit input {x.shape}")
    win = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))
    win = win[:, ::stride, ::stride]                     # (N, Ho, Wo, C, K, K)
    ho, wo = win.shape[1], win.shape[2]
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3))  # (N, Ho, Wo, K, K, C)
    return cols.reshape(n * ho * wo, kernel * kernel * c), (n, ho, wo)


def qconv2d(x, w, za: int, bias, m0, shift, z_out: int, stride: int = 1, padding: int = 0,
            zw=0, dtype: str = "int8", relu: bool = False, num_bits=None, device=None):
    """Integer conv on NHWC codes: im2col (padding with ``za``), then :func:`qlinear`.

    ``w`` is ``(K, K, C_in, C_out)`` int8 codes, or a :class:`PackedWeight` of its
    ``(K*K*C_in, C_out)`` reshape together with ``kernel=`` given by its shape.
    """
    x = _codes(x, "the input", 4)
    if isinstance(w, PackedWeight):
        kk = w.k // x.shape[3]
        kernel = int(round(kk ** 0.5))
        if kernel * kernel * x.shape[3] != w.k:
            raise ValueError(f"packed weight with K={w.k} does not match {x.shape[3]} channels")
        pw = w
    else:
        w = _codes(w, "the weight", 4)
        kernel = w.shape[0]
        if w.shape[1] != kernel or w.shape[2] != x.shape[3]:
            raise ValueError(f"conv weight {w.shape} does not match input {x.shape}")
        pw = PackedWeight(w.reshape(-1, w.shape[3]), zw)
    cols, (n, ho, wo) = im2col_codes(x, kernel, stride, padding, za)
    y = qlinear(cols, pw, za, bias, m0, shift, z_out, dtype=dtype, relu=relu,
                num_bits=num_bits, device=device)
    return y.reshape(n, ho, wo, pw.n)

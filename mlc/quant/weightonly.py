"""Weight-only, group-wise quantization: how language models run on laptops.

A language model generating text multiplies one activation row by every weight matrix
per token: ``1 x K @ K x N``. Each weight is read once and used once, so the time is
the time to *read the weights*, and the way to go faster is fewer bytes per weight.
Activations stay float32 (quantizing them buys nothing here, and costs accuracy);
only the weights are stored in 4 (or 8) bits:

* **Groups along K.** Each output column ``j`` is cut into groups of ``group_size``
  consecutive input channels; each group gets its own symmetric scale
  ``s[j, g] = max|W[group, j]| / q_max`` (``q_max`` 7 for 4 bits, 127 for 8). A scale
  per small group follows the weights' local range far better than one per column
  (an outlier spoils only its 32 neighbours), which is what makes 4 bits usable.
  llama.cpp's ``Q4_0`` is this scheme (groups of 32, one fp16 scale); AWQ and GPTQ
  store the same layout with scales chosen by smarter rules.
* **Packing.** 4-bit codes in ``[-8, 7]`` go two per byte, low nibble first: byte
  ``[kb, j]`` of :attr:`GroupWeight.codes` holds rows ``2 kb`` and ``2 kb + 1`` of column
  ``j`` (K/2 x N bytes). With a float32 scale per 32 weights the cost is
  ``4 + 32/32 = 5`` bits per weight: 0.156 of float32 (0.281 for 8 bits).
* **The kernel dequantizes in its inner loop** (:func:`.kernels_cpu._wmatmul_kernel`):
  a code becomes a float in a register, is multiplied and summed; the group's scale
  multiplies the group's sum once. No float copy of the weight is ever made.

::

    gw = quant.pack_weight(W, bits=4, group_size=32)   # W: (K, N) float32
    y = quant.wmatmul(x, gw)                           # x: (M, K) float32 -> (M, N)
    gw.nbytes, gw.dequantize()                          # stored bytes; the weight it means
"""

from __future__ import annotations

import numpy as np

from .affine import as_numpy

BITS = (4, 8)


class GroupWeight:
    """A ``(K, N)`` weight as group-wise symmetric codes (see the module docstring).

    ``codes``: ``(K // 2, N)`` uint8 (two 4-bit codes a byte, down each column) or
    ``(K, N)`` int8; ``scales``: ``(K // group_size, N)`` float32. ``nbytes`` counts both.
    """

    def __init__(self, codes, scales, bits: int, group_size: int, k: int):
        check_config(bits, group_size, k)
        n = scales.shape[1]
        want = (k // 2, n) if bits == 4 else (k, n)
        codes = np.ascontiguousarray(codes, np.uint8 if bits == 4 else np.int8)
        if codes.shape != want or scales.shape != (k // group_size, n):
            raise ValueError(f"codes {codes.shape} / scales {scales.shape} do not fit a "
                             f"{k} x {n} weight in {bits} bits, groups of {group_size}")
        self.codes = codes
        self.scales = np.ascontiguousarray(scales, np.float32)
        self.bits, self.group_size, self.k, self.n = bits, group_size, k, n

    @property
    def shape(self) -> tuple[int, int]:
        return self.k, self.n

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scales.nbytes

    def int_codes(self) -> np.ndarray:
        """The codes, unpacked, as a ``(K, N)`` int8 array."""
        if self.bits == 8:
            return self.codes
        b = self.codes.astype(np.int16)
        pair = np.stack([(b & 15) ^ 8, (b >> 4) ^ 8], axis=1) - 8     # (K/2, 2, N)
        return pair.reshape(self.k, self.n).astype(np.int8)

    def dequantize(self) -> np.ndarray:
        """The ``(K, N)`` float32 weight the codes stand for (for tests and the reference)."""
        s = np.repeat(self.scales, self.group_size, axis=0)
        return self.int_codes().astype(np.float32) * s

    def __repr__(self):
        return (f"GroupWeight({self.k}x{self.n}, int{self.bits}, group {self.group_size}, "
                f"{self.nbytes} bytes)")


def check_config(bits, group_size, k: int) -> None:
    """A clear ``ValueError`` for a configuration the kernels cannot run."""
    if bits not in BITS:
        raise ValueError(f"weight-only quantization supports bits in {BITS} (4-bit codes "
                         f"packed two per byte, or int8), got bits={bits!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 2 or group_size % 2:
        raise ValueError(f"group_size must be an even integer >= 2, got {group_size!r}")
    if k % group_size:
        raise ValueError(f"group_size={group_size} does not divide K={k} (the weight's "
                         "input channels): every group needs group_size channels")


def pack_weight(w, bits: int = 4, group_size: int = 32) -> GroupWeight:
    """Quantize a ``(K, N)`` float weight group-wise and pack it (module docstring)."""
    w = np.asarray(as_numpy(w), np.float32)
    if w.ndim != 2:
        raise ValueError(f"pack_weight: the weight must be 2-D (K, N), got shape {w.shape}")
    k, n = w.shape
    check_config(bits, group_size, k)
    q_max = (1 << (bits - 1)) - 1
    groups = w.reshape(k // group_size, group_size, n).astype(np.float64)
    amax = np.abs(groups).max(axis=1)
    scales = np.where(amax > 0, amax / q_max, 1.0)
    q = np.clip(np.rint(groups / scales[:, None, :]), -q_max - 1, q_max).astype(np.int16)
    q = q.reshape(k, n)
    if bits == 4:
        q = (q[0::2] & 15) | ((q[1::2] & 15) << 4)
    return GroupWeight(q, scales.astype(np.float32), bits, group_size, k)


def wmatmul(x, gw: GroupWeight, device=None) -> np.ndarray:
    """``x @ W`` for float32 ``x`` (M, K) and a :class:`GroupWeight` ``W``, float32 out.

    ``device``: ``nd.cpu()`` (Numba, the default), ``nd.cuda()`` or ``nd.cpu_numpy()`` (the
    reference: dequantize the weight, then numpy's matmul).
    """
    from .qops import _device_name

    dev = _device_name(device)
    if not isinstance(gw, GroupWeight):
        raise TypeError(f"wmatmul: the weight must be a GroupWeight (quant.pack_weight), "
                        f"got {type(gw).__name__}")
    x = np.ascontiguousarray(as_numpy(x))
    if x.dtype != np.float32:
        raise TypeError(f"wmatmul: the input must be float32, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] != gw.k:
        raise ValueError(f"wmatmul: shapes do not match: input {x.shape} @ weight {gw.shape}")
    if dev == "cpu_numpy":
        return x @ gw.dequantize()
    if dev == "cuda":
        from .kernels_cuda import wmatmul_cuda

        return wmatmul_cuda(x, gw.codes, gw.scales, gw.bits, gw.group_size)
    from . import kernels_cpu as K

    out = np.empty((x.shape[0], gw.n), np.float32)
    kernel = K.wmatmul4_kernel if gw.bits == 4 else K.wmatmul8_kernel
    kernel(x, gw.codes, gw.scales, gw.group_size, out)
    return out

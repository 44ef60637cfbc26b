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
* **fp16 scales** (``scale_dtype="float16"``, as llama.cpp stores them) make it
  ``4 + 16/32 = 4.5`` bits. That is safe: a scale rounded to fp16 moves by at most
  ``2^-11`` of itself, 1/500 of the 4-bit step it sets, and the codes are computed
  with the rounded scale, so they stay the nearest codes for the scale that is stored.
  fp16's range (6e-8 .. 65504) covers any trained weight; a larger one is refused.
* **The kernel dequantizes in its inner loop** (:func:`.kernels_weightonly._wmatmul_tile`):
  one packed row of codes becomes floats once per tile of 16 rows of ``x``, which all
  use it; the group's scale multiplies the group's sum once. No float copy of the
  weight is ever made (Numba has no float16, so fp16 scales, 1/16 of the codes, are
  widened to float32 once, when the weight is made).

::

    gw = quant.pack_weight(W, bits=4, group_size=32)   # W: (K, N) float32
    y = quant.wmatmul(x, gw)                           # x: (M, K) float32 -> (M, N)
    gw.nbytes, gw.dequantize()                          # stored bytes; the weight it means

:func:`quantize_weights` does this to every weight matrix of a graph, and
:func:`quantize_tables` stores its other float tables (a position table, an embedding)
in int8.
"""

from __future__ import annotations

import numpy as np

from .affine import as_numpy

BITS = (4, 8)
HALF_MAX = float(np.finfo(np.float16).max)
HALF_TINY = np.float16(2.0 ** -24)     # float16's smallest (subnormal) step


class GroupWeight:
    """A ``(K, N)`` weight as group-wise symmetric codes (see the module docstring).

    ``codes``: ``(K // 2, N)`` uint8 (two 4-bit codes a byte, down each column) or
    ``(K, N)`` int8; ``scales``: ``(K // group_size, N)`` float32 or float16 (kept as
    given). ``nbytes`` counts both as stored; ``scales32`` is what the kernels read.
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
        dtype = np.float16 if np.asarray(scales).dtype == np.float16 else np.float32
        self.scales = np.ascontiguousarray(scales, dtype)
        self.scales32 = self.scales.astype(np.float32)
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
        s = np.repeat(self.scales32, self.group_size, axis=0)
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


def pack_weight(w, bits: int = 4, group_size: int = 32,
                scale_dtype: str = "float32") -> GroupWeight:
    """Quantize a ``(K, N)`` float weight group-wise and pack it (module docstring);
    ``scale_dtype`` ``"float32"`` or ``"float16"`` is how the scales are stored."""
    w = np.asarray(as_numpy(w), np.float32)
    if w.ndim != 2:
        raise ValueError(f"pack_weight: the weight must be 2-D (K, N), got shape {w.shape}")
    if scale_dtype not in ("float32", "float16"):
        raise ValueError(f"pack_weight: scale_dtype must be 'float32' or 'float16', got "
                         f"{scale_dtype!r}")
    k, n = w.shape
    check_config(bits, group_size, k)
    q_max = (1 << (bits - 1)) - 1
    groups = w.reshape(k // group_size, group_size, n).astype(np.float64)
    amax = np.abs(groups).max(axis=1)
    scales = np.where(amax > 0, amax / q_max, 1.0)
    if scale_dtype == "float16":
        if scales.max(initial=0.0) > HALF_MAX:
            raise ValueError(f"pack_weight: a weight of magnitude {amax.max():.3g} needs a "
                             f"scale above float16's largest value ({HALF_MAX}); use "
                             "scale_dtype='float32'")
        # the codes are computed with the scale as stored; one that rounds to 0 (a group
        # below 2e-7) takes fp16's smallest step, so its codes stay in range
        scales = np.maximum(scales.astype(np.float16), HALF_TINY).astype(np.float64)
    q = np.clip(np.rint(groups / scales[:, None, :]), -q_max - 1, q_max).astype(np.int16)
    q = q.reshape(k, n)
    if bits == 4:
        q = (q[0::2] & 15) | ((q[1::2] & 15) << 4)
    return GroupWeight(q, scales.astype(scale_dtype), bits, group_size, k)


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

        return wmatmul_cuda(x, gw.codes, gw.scales32, gw.bits, gw.group_size)
    from .kernels_weightonly import wmatmul_kernel

    out = np.empty((x.shape[0], gw.n), np.float32)
    wmatmul_kernel(x.shape[0] * gw.k * gw.n)(x, gw.codes, gw.scales32, gw.group_size,
                                             gw.bits, out)
    return out


# -- graph passes: every weight of a graph stored in few bits --------------------------------

def _group_for(k: int, group_size: int, strict: bool):
    """The group of a weight with ``k`` input channels: ``group_size``, or (``strict=False``)
    the largest even divisor of ``k`` below it; None when there is none (odd ``k``)."""
    if k % group_size == 0 or strict:
        return group_size
    return next((d for d in range(min(group_size, k), 1, -1) if k % d == 0 and d % 2 == 0),
                None)


def quantize_weights(g, bits: int = 4, group_size: int = 32, strict: bool = True,
                     scale_dtype: str = "float32"):
    """Weight-only quantization: every ``matmul`` by a constant 2-D weight becomes a
    ``wmatmul`` reading the weight group-wise in ``bits`` bits, its scales stored as
    ``scale_dtype`` (module docstring). A weight whose input channels ``group_size`` does
    not divide is refused, or with ``strict=False`` given the largest even group that
    divides them (a ViT's 8-pixel patch embedding: one group of 8; smaller groups are
    only more accurate) and left in float only when there is none (an odd K).

    Before and after::

        %mm = matmul(%x, %w)     ->    %mm = wmatmul(%x, %w.codes, %w.scales, bits=4, ...)
    """
    from .. import graph as G
    from .passes import _sym

    g = G.eliminate_dead_code(G.fold_constants(g))

    def fn(n, ins):
        if n.op != "matmul" or n.inputs[1].op != "constant" or len(n.inputs[1].shape) != 2:
            return None
        w = n.inputs[1]
        group = _group_for(w.shape[0], group_size, strict)
        if group is None:
            return None
        try:
            gw = pack_weight(w.value, bits, group, scale_dtype)
        except ValueError as e:
            raise ValueError(f"quantize_weights: %{n.name} (weight %{w.name}, "
                             f"{w.shape[0]} x {w.shape[1]}): {e}") from None
        consts = [G.Node("constant", (), {}, v.shape, str(v.dtype), f"{w.name}.{k}", v)
                  for k, v in (("codes", gw.codes), ("scales", gw.scales))]
        return G.Node("wmatmul", [ins[0], *consts], {"bits": bits, "group_size": group,
                                                     "k": gw.k}, n.shape, "float32", n.name,
                      sym=_sym(n))
    return G.rewrite(g, fn)


def is_table(node) -> bool:
    """A float constant that is a table of weights (a position table, an embedding, a
    weight matrix left in float): at least two axes longer than 1, every value finite.
    A vector of one value per channel (a bias, a layer norm's scale and shift) is not:
    each of its values meets every output, so its error would not average out, and
    together they are a few percent of a model's bytes. A mask (``-inf`` above the
    diagonal) is not a weight either."""
    if node.op != "constant" or node.dtype != "float32":
        return False
    return sum(d > 1 for d in node.shape) >= 2 and bool(np.isfinite(node.value).all())


def quantize_tables(g):
    """Every float table of ``g`` (:func:`is_table`) stored as int8 codes with one
    symmetric scale, ``dequantize``-d where it is read. A table read by ``take`` (an
    embedding) is gathered as codes first, so only the rows a call reads are dequantized.

    Before and after (the ViT's position table, 1 KiB -> 256 B)::

        %pos = constant  # float32[1, 8, 32]        %pos.q = constant  # int8[1, 8, 32]
        %b = broadcast_to(%pos, ...)          ->    %pos = dequantize(%pos.q, scale=0.0031)
                                                    %b = broadcast_to(%pos, ...)
    """
    from .. import graph as G
    from .affine import quantize as _quantize
    from .passes import _sym

    def fn(n, ins):
        if is_table(n):
            amax = float(np.abs(n.value).max())
            attrs = {"scale": amax / 127 if amax > 0 else 1.0, "zero_point": 0}
            q = _quantize(n.value, attrs["scale"], 0, "int8")
            c = G.Node("constant", (), {}, n.shape, "int8", f"{n.name}.q", q)
            return G.Node("dequantize", [c], attrs, n.shape, "float32", n.name)
        table = ins[0] if ins else None
        if (n.op == "take" and table.op == "dequantize" and n.inputs[0].op == "constant"
                and table.inputs[0].op == "constant"):
            rows = G.Node("take", [table.inputs[0], *ins[1:]], n.attrs, n.shape, "int8",
                          f"{n.name}.q", sym=_sym(n, True))
            return G.Node("dequantize", [rows], table.attrs, n.shape, "float32", n.name,
                          sym=_sym(n))
        return None
    return G.rewrite(g, fn)

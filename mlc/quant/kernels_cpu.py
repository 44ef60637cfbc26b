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

**Why the plain loop is slow.** :func:`qmatmul_kernel` is the textbook version: ``w``
packed transposed (``wt``, N x K) so each output is a dot product of two contiguous int8
rows, ``s += int32(a[k]) * int32(wt[k])``. LLVM vectorizes it, but its vector width is
set by the widest type in the loop, the int32 accumulator: 8 lanes. So each step loads
8 bytes of each row, widens them to int16 (``vpmovsxbw``, a shuffle: one port only) and
multiplies-and-adds pairs in an *xmm* ``vpmaddwd``: 8 multiply-adds per instruction, two
shuffles per 8 multiply-adds, two loads per 8, and every output pays a horizontal sum.
Float32's kernel (``nd.cpu()`` matmul) does 16 FMAs of 8 lanes per 8 loads. Several
accumulators in one loop (register blocking) make LLVM drop the ``vpmaddwd`` pattern
for ``vpmulld`` (slower still); ``inspect_asm`` shows both.

**The fast kernel** does by hand what BLAS-like int8 kernels (ruy, oneDNN on AVX2) do:

1. **Pack to int16** once: the weight when the layer is built (:class:`PackedWeight`,
   ``wt16``), the input per call (O(M K), against O(M N K) of work); rows padded to the
   micro-tile, K to a multiple of 16 with zeros (which add nothing). The widening then
   leaves the inner loop.
2. **Micro-kernel** :func:`dot_block` (a Numba ``@intrinsic``: a few lines of LLVM IR):
   a 4 x 2 block of outputs, 8 vector accumulators of 8 int32 lanes; per step of 16
   values, 2 loads of ``wt16`` and 4 of ``a16`` feed 8 ``pmaddwd`` on 256-bit registers
   (16 multiply-adds each; with AVX-512 VNNI LLVM fuses the add: ``vpdpwssd``).
   ``pmaddwd`` sums two int16 x int16 products into int32 exactly, so the result is
   bit-exact. Without AVX2 (an ARM laptop) the same IR is written with plain vector
   multiplies and adds of sign-extended halves and LLVM picks that target's instructions.
3. **Tiles and threads**: one ``prange`` over (64 rows x 64 columns) tiles, so both
   threads start once per call (a ``prange`` per column panel restarted them 16 times
   and lost 3x on a busy machine) and a batch of one row still splits over columns.

**The epilogue** (:func:`qlinear_kernel`) runs per tile, on the tile's 64 x 64 int32
accumulators while they are in L1: offsets, bias, requantization
(:mod:`mlc.quant.fixedpoint`), ReLU as a clamp at the output zero point, and the int8
store: the int32 matrix is never written out. (Requantizing straight from the
micro-kernel's registers, inside the block loop, cost 2x: 8 scalar requantizations with
their branches between micro-kernel calls.)
"""

from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import config, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .routines import routines

# the scalar steps, shared with the CUDA kernels (module globals: Numba reads them)
_offsets = routines("cpu").offsets
_requantize = routines("cpu").requantize

MR, NR = 4, 2    # rows of a16 x rows of wt16 per micro-kernel call: 8 accumulators
VL = 16          # int16 values per vector step (256 bits); K is padded to a multiple
MB = 64          # rows per tile
NB = 64          # columns per tile: NB rows of wt16 (NB * K * 2 bytes) stay in L2


def _has_avx2() -> bool:
    if config.CPU_NAME not in (None, "host"):     # a portable (generic) target: no x86 intrinsic
        return False
    try:
        return llvm.get_host_cpu_features().get("avx2", False)
    except Exception:                              # pragma: no cover - no feature query
        return False


USE_PMADDWD = _has_avx2()


@intrinsic
def dot_block(typingctx, a16, i, b16, j):
    """``MR x NR`` int32 dot products of rows ``a16[i:i+MR]`` and ``b16[j:j+NR]``.

    Both are C-contiguous int16 with the same row length K, a multiple of ``VL``. The
    result is a tuple, row-major: ``t[r * NR + c] = a16[i + r] . b16[j + c]``.
    """
    sig = types.UniTuple(types.int32, MR * NR)(a16, types.intp, b16, types.intp)

    def codegen(context, builder, signature, args):
        aty, _, bty, _ = signature.args
        av = context.make_array(aty)(context, builder, args[0])
        bv = context.make_array(bty)(context, builder, args[2])
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vin, vacc = ir.VectorType(i16, VL), ir.VectorType(i32, VL // 2)
        k_dim = builder.extract_value(av.shape, 1)

        def row(arr, first, r):
            return builder.gep(arr.data, [builder.mul(builder.add(first, ir.Constant(i64, r)),
                                                      k_dim)])

        rows_a = [row(av, args[1], r) for r in range(MR)]
        rows_b = [row(bv, args[3], c) for c in range(NR)]
        entry = builder.block
        head = builder.append_basic_block("block.head")
        body = builder.append_basic_block("block.body")
        done = builder.append_basic_block("block.done")
        builder.branch(head)
        builder.position_at_end(head)
        k = builder.phi(i64)
        k.add_incoming(ir.Constant(i64, 0), entry)
        accs = []
        for _ in range(MR * NR):
            acc = builder.phi(vacc)
            acc.add_incoming(ir.Constant(vacc, [0] * (VL // 2)), entry)
            accs.append(acc)
        builder.cbranch(builder.icmp_signed("<", k, k_dim), body, done)

        builder.position_at_end(body)
        even = ir.Constant(ir.VectorType(i32, VL // 2), list(range(0, VL, 2)))
        odd = ir.Constant(ir.VectorType(i32, VL // 2), list(range(1, VL, 2)))

        def load(p):
            return builder.load(builder.bitcast(builder.gep(p, [k]), vin.as_pointer()), align=2)

        def madd(x, y):                       # pairwise x0*y0 + x1*y1 into int32 lanes
            if USE_PMADDWD:
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vacc, [vin, vin]), "llvm.x86.avx2.pmadd.wd")
                return builder.call(fn, [x, y])
            undef = ir.Constant(vin, ir.Undefined)
            parts = []
            for idx in (even, odd):
                xs = builder.sext(builder.shuffle_vector(x, undef, idx), vacc)
                ys = builder.sext(builder.shuffle_vector(y, undef, idx), vacc)
                parts.append(builder.mul(xs, ys))
            return builder.add(parts[0], parts[1])

        xb = [load(p) for p in rows_b]
        xa = [load(p) for p in rows_a]
        for r in range(MR):
            for c in range(NR):
                acc = accs[r * NR + c]
                acc.add_incoming(builder.add(acc, madd(xa[r], xb[c])), body)
        k.add_incoming(builder.add(k, ir.Constant(i64, VL)), body)
        builder.branch(head)

        builder.position_at_end(done)
        reduce_add = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i32, [vacc]), f"llvm.vector.reduce.add.v{VL // 2}i32")
        sums = [builder.call(reduce_add, [acc]) for acc in accs]
        return context.make_tuple(builder, signature.return_type, sums)

    return sig, codegen


def pack_int16(x: np.ndarray, row_multiple: int) -> np.ndarray:
    """``x`` (rows x K) as int16, rows padded to ``row_multiple`` and K to ``VL``, zeros."""
    rows = -(-x.shape[0] // row_multiple) * row_multiple
    k_pad = max(VL, -(-x.shape[1] // VL) * VL)
    out = np.zeros((rows, k_pad), np.int16)
    out[:x.shape[0], :x.shape[1]] = x
    return out


@njit(parallel=True, cache=True)
def qmatmul_kernel(a, wt, out):
    """The plain loop, to read and to compare: ``out[i, j] = sum_k a[i, k] * wt[j, k]``
    in int32 (no offsets). See the module docstring for why it is slow."""
    m, k_dim = a.shape
    n = wt.shape[0]
    for i in prange(m):
        for j in range(n):
            s = np.int32(0)
            for k in range(k_dim):
                s += np.int32(a[i, k]) * np.int32(wt[j, k])
            out[i, j] = s


@njit(inline="always")
def _tile(a16, b16, i0, j0, buf):
    """The raw dot products of one ``MB x NB`` tile into ``buf`` (int32, in L1)."""
    for i in range(i0, min(a16.shape[0], i0 + MB), MR):
        for j in range(j0, min(b16.shape[0], j0 + NB), NR):
            v = dot_block(a16, i, b16, j)
            for r in range(MR):
                for c in range(NR):
                    buf[i - i0 + r, j - j0 + c] = v[r * NR + c]


@njit(parallel=True, cache=True)
def qgemm_kernel(a16, b16, za, zw, colsum, rowsum, k_dim, out):
    """``out = (a - za) @ (wt - zw[:, None]).T`` in int32 from the packed int16 operands,
    offsets folded (gemmlowp); ``k_dim`` is the unpadded K."""
    m, n = out.shape
    n_i = (a16.shape[0] + MB - 1) // MB
    n_j = (b16.shape[0] + NB - 1) // NB
    for t in prange(n_i * n_j):
        i0 = (t // n_j) * MB
        j0 = (t % n_j) * NB
        buf = np.empty((MB, NB), np.int32)
        _tile(a16, b16, i0, j0, buf)
        for i in range(i0, min(m, i0 + MB)):
            for j in range(j0, min(n, j0 + NB)):
                out[i, j] = _offsets(buf[i - i0, j - j0], rowsum[i], za, zw[j], colsum[j],
                                       k_dim, 0)


@njit(parallel=True, cache=True)
def qlinear_kernel(a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                   out):
    """int8 codes ``out = requantize(offset-corrected a @ wt.T + bias)``, fused: the
    epilogue runs on each tile's accumulators while they are in L1 (see the module
    docstring); the int32 matrix is never written out."""
    m, n = out.shape
    n_i = (a16.shape[0] + MB - 1) // MB
    n_j = (b16.shape[0] + NB - 1) // NB
    for t in prange(n_i * n_j):
        i0 = (t // n_j) * MB
        j0 = (t % n_j) * NB
        buf = np.empty((MB, NB), np.int32)
        _tile(a16, b16, i0, j0, buf)
        for i in range(i0, min(m, i0 + MB)):
            for j in range(j0, min(n, j0 + NB)):
                acc = _offsets(buf[i - i0, j - j0], rowsum[i], za, zw[j], colsum[j], k_dim,
                                 bias[j])
                out[i, j] = _requantize(acc, m0[j], shift[j], z_out, lo, hi)


SMALL_WORK = 1 << 18   # multiply-adds below which a serial kernel beats starting threads

qmatmul_kernel_serial = njit(cache=True)(qmatmul_kernel.py_func)
qgemm_kernel_serial = njit(cache=True)(qgemm_kernel.py_func)
qlinear_kernel_serial = njit(cache=True)(qlinear_kernel.py_func)


def pick(kernel, work: int):
    """The parallel kernel, or its serial build when ``work`` is small."""
    if work >= SMALL_WORK:
        return kernel
    return {qmatmul_kernel: qmatmul_kernel_serial,
            qgemm_kernel: qgemm_kernel_serial,
            qlinear_kernel: qlinear_kernel_serial}[kernel]


INSTRUCTIONS = ("vpmaddwd", "vpdpwssd", "vpmaddubsw", "vpdpbusd", "vpmovsxbw", "vpmulld")


def core_instructions(kernel=None, a_dtype=np.int8) -> dict:
    """How often the int8/int16 dot-product instructions appear in ``kernel``'s machine code.

    ``kernel`` is :func:`qgemm_kernel` (the one ``quant.qmatmul`` runs; the default) or
    :func:`qmatmul_kernel` (the plain loop, on ``a_dtype`` codes). Numba cannot show the
    assembly of a function loaded from its cache, so this compiles a fresh, uncached copy.
    """
    kernel = qgemm_kernel if kernel is None else kernel
    fresh = njit(parallel=True)(kernel.py_func)
    if kernel is qgemm_kernel:
        a16 = np.zeros((MR, VL), np.int16)
        b16 = np.zeros((NR, VL), np.int16)
        z = np.zeros(NR, np.int32)
        fresh(a16, b16, np.int32(0), z, z, np.zeros(MR, np.int32), 8,
              np.zeros((MR, NR), np.int32))
    else:
        fresh(np.zeros((4, 8), a_dtype), np.zeros((4, 8), np.int8), np.zeros((4, 4), np.int32))
    asm = fresh.inspect_asm(fresh.signatures[0])
    return {name: asm.count(name) for name in INSTRUCTIONS}


# -- the graph's elementwise integer ops and the input packing of qlinear ---------------

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
def pack_input(a, a16, rowsum):
    """qlinear's per-call operands in buffers made once: ``a`` widened into the int16
    panel ``a16`` (its padding stays zero) and the row sums of ``a``."""
    m, k_dim = a.shape
    for i in range(m):
        s = np.int32(0)
        for k in range(k_dim):
            a16[i, k] = a[i, k]
            s += np.int32(a[i, k])
        rowsum[i] = s


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

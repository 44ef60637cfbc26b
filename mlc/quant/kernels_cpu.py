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
   and lost 3x on a busy machine). Threads only pay for a large product: below the
   graph's matmul threshold the serial build runs (:func:`qlinear` picks; a model's
   layers at batch 1 waited 16 ms per call for a parallel region on a busy machine).
4. **A few rows** (a batch of one: memory-bound, every weight used once per row):
   :func:`qlinear_rows` reads the int8 codes and widens them in registers
   (:func:`dot_row`, one row against 4 rows of codes), 1 byte per weight streamed
   instead of 2: 1.9x faster than the panel kernel at 1 x 1024 x 1024.

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
import numba
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
NR1 = 4          # rows of int8 codes per call of the few-rows micro-kernel (dot_row)


def _has_avx2() -> bool:
    if config.CPU_NAME not in (None, "host"):     # a portable (generic) target: no x86 intrinsic
        return False
    try:
        return llvm.get_host_cpu_features().get("avx2", False)
    except Exception:                              # pragma: no cover - no feature query
        return False


USE_PMADDWD = _has_avx2()


def _dot_intrinsic(rows: int, cols: int):
    """A Numba intrinsic ``dot(a16, i, b, j)``: the ``rows x cols`` int32 dot products of
    rows ``a16[i:i+rows]`` and ``b[j:j+cols]``, as a row-major tuple
    (``t[r * cols + c] = a16[i + r] . b[j + c]``).

    ``a16`` is C-contiguous int16; ``b`` is int16 (a panel widened ahead of time) or the
    int8 codes themselves, sign-extended to int16 in registers as they are loaded (one
    ``vpmovsxbw`` per 16 codes: half the bytes streamed, for a product that waits on
    memory). Both have the same row length K, a multiple of ``VL``.
    """
    @intrinsic
    def dot(typingctx, a16, i, b, j):
        sig = types.UniTuple(types.int32, rows * cols)(a16, types.intp, b, types.intp)

        def codegen(context, builder, signature, args):
            aty, _, bty, _ = signature.args
            av = context.make_array(aty)(context, builder, args[0])
            bv = context.make_array(bty)(context, builder, args[2])
            i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
            vin, vacc = ir.VectorType(i16, VL), ir.VectorType(i32, VL // 2)
            b_bits = bty.dtype.bitwidth
            k_dim = builder.extract_value(av.shape, 1)

            def row(arr, first, r):
                return builder.gep(arr.data, [builder.mul(
                    builder.add(first, ir.Constant(i64, r)), k_dim)])

            rows_a = [row(av, args[1], r) for r in range(rows)]
            rows_b = [row(bv, args[3], c) for c in range(cols)]
            entry = builder.block
            head = builder.append_basic_block("block.head")
            body = builder.append_basic_block("block.body")
            done = builder.append_basic_block("block.done")
            builder.branch(head)
            builder.position_at_end(head)
            k = builder.phi(i64)
            k.add_incoming(ir.Constant(i64, 0), entry)
            accs = []
            for _ in range(rows * cols):
                acc = builder.phi(vacc)
                acc.add_incoming(ir.Constant(vacc, [0] * (VL // 2)), entry)
                accs.append(acc)
            builder.cbranch(builder.icmp_signed("<", k, k_dim), body, done)

            builder.position_at_end(body)
            even = ir.Constant(ir.VectorType(i32, VL // 2), list(range(0, VL, 2)))
            odd = ir.Constant(ir.VectorType(i32, VL // 2), list(range(1, VL, 2)))

            def load(p, bits=16):
                vec = ir.VectorType(ir.IntType(bits), VL)
                v = builder.load(builder.bitcast(builder.gep(p, [k]), vec.as_pointer()),
                                 align=bits // 8)
                return v if bits == 16 else builder.sext(v, vin)

            def madd(x, y):                       # pairwise x0*y0 + x1*y1 into int32 lanes
                if USE_PMADDWD:
                    fn = cgutils.get_or_insert_function(
                        builder.module, ir.FunctionType(vacc, [vin, vin]),
                        "llvm.x86.avx2.pmadd.wd")
                    return builder.call(fn, [x, y])
                undef = ir.Constant(vin, ir.Undefined)
                parts = []
                for idx in (even, odd):
                    xs = builder.sext(builder.shuffle_vector(x, undef, idx), vacc)
                    ys = builder.sext(builder.shuffle_vector(y, undef, idx), vacc)
                    parts.append(builder.mul(xs, ys))
                return builder.add(parts[0], parts[1])

            xb = [load(p, b_bits) for p in rows_b]
            xa = [load(p) for p in rows_a]
            for r in range(rows):
                for c in range(cols):
                    acc = accs[r * cols + c]
                    acc.add_incoming(builder.add(acc, madd(xa[r], xb[c])), body)
            k.add_incoming(builder.add(k, ir.Constant(i64, VL)), body)
            builder.branch(head)

            builder.position_at_end(done)
            reduce_add = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i32, [vacc]),
                f"llvm.vector.reduce.add.v{VL // 2}i32")
            sums = [builder.call(reduce_add, [acc]) for acc in accs]
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    return dot


#: the GEMM micro-kernel: a 4 x 2 block, 8 accumulators, over the int16 panel
dot_block = _dot_intrinsic(MR, NR)
#: the few-rows micro-kernel: one row of the input against ``NR1`` rows of int8 codes
dot_row = _dot_intrinsic(1, NR1)


def pack_panel(x: np.ndarray, row_multiple: int, dtype=np.int16) -> np.ndarray:
    """``x`` (rows x K) as ``dtype`` (int16: the GEMM's panel; int8: the codes as
    :func:`qlinear_rows` reads them), rows padded to ``row_multiple`` and K to ``VL``,
    with zeros (which add nothing to a dot product)."""
    rows = -(-x.shape[0] // row_multiple) * row_multiple
    k_pad = max(VL, -(-x.shape[1] // VL) * VL)
    out = np.zeros((rows, k_pad), dtype)
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
def _origin(t, n_cols):
    """Tile ``t``'s first row and column (tiles numbered row-major, ``MB x NB`` each)."""
    return (t // ((n_cols + NB - 1) // NB)) * MB, (t % ((n_cols + NB - 1) // NB)) * NB


@njit(inline="always")
def _tiles(rows, n_cols):
    return ((rows + MB - 1) // MB) * ((n_cols + NB - 1) // NB)


@njit(inline="always")
def _tile(a16, b16, i0, j0, buf):
    """The raw dot products of one ``MB x NB`` tile into ``buf`` (int32, in L1), by 4 x 2
    blocks of the int16 panels (``a16``'s rows padded to ``MR``, ``b16``'s to ``NR``)."""
    for i in range(i0, min(a16.shape[0], i0 + MB), MR):
        for j in range(j0, min(b16.shape[0], j0 + NB), NR):
            v = dot_block(a16, i, b16, j)
            for r in range(MR):
                for c in range(NR):
                    buf[i - i0 + r, j - j0 + c] = v[r * NR + c]


@njit(inline="always")
def _tile_rows(a16, w8, m, i0, j0, buf):
    """The same from the int8 codes ``w8`` (rows padded to ``NR1``), one input row at a
    time and only the ``m`` real rows: for a few rows (a batch of one), where the product
    waits on the weight's bytes and not on the multiply-adds."""
    for i in range(i0, min(m, i0 + MB)):
        for j in range(j0, min(w8.shape[0], j0 + NB), NR1):
            v = dot_row(a16, i, w8, j)
            for c in range(NR1):
                buf[i - i0, j - j0 + c] = v[c]


@njit(inline="always")
def _gemm_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, out):
    """Tile ``t`` of ``out = (a - za) @ (wt - zw[:, None]).T`` in int32, offsets folded."""
    m, n = out.shape
    i0, j0 = _origin(t, b16.shape[0])
    buf = np.empty((MB, NB), np.int32)
    _tile(a16, b16, i0, j0, buf)
    for i in range(i0, min(m, i0 + MB)):
        for j in range(j0, min(n, j0 + NB)):
            out[i, j] = _offsets(buf[i - i0, j - j0], rowsum[i], za, zw[j], colsum[j], k_dim, 0)


@njit(inline="always")
def _epilogue(buf, i0, j0, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
              out):
    """Offsets, bias, requantization and the int8 store of one tile's accumulators."""
    m, n = out.shape
    for i in range(i0, min(m, i0 + MB)):
        for j in range(j0, min(n, j0 + NB)):
            acc = _offsets(buf[i - i0, j - j0], rowsum[i], za, zw[j], colsum[j], k_dim, bias[j])
            out[i, j] = _requantize(acc, m0[j], shift[j], z_out, lo, hi)


@njit(inline="always")
def _linear_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                 out):
    """Tile ``t`` of the fused int8 linear: its dot products, then :func:`_epilogue`."""
    i0, j0 = _origin(t, b16.shape[0])
    buf = np.empty((MB, NB), np.int32)
    _tile(a16, b16, i0, j0, buf)
    _epilogue(buf, i0, j0, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi, out)


@njit(parallel=True, cache=True)
def qgemm_kernel(a16, b16, za, zw, colsum, rowsum, k_dim, out):
    """``out = (a - za) @ (wt - zw[:, None]).T`` in int32 from the packed int16 operands,
    offsets folded (gemmlowp); ``k_dim`` is the unpadded K. Tiles split over threads."""
    for t in prange(_tiles(a16.shape[0], b16.shape[0])):
        _gemm_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, out)


@njit(cache=True)
def qgemm_serial(a16, b16, za, zw, colsum, rowsum, k_dim, out):
    """:func:`qgemm_kernel` on one thread.

    A function of its own, not ``njit(qgemm_kernel.py_func)``: Numba's disk cache keys a
    function by its name, bytecode and signature, not by ``parallel=``, so two builds of
    one function share one cache entry, and a process runs whichever build was saved
    last (the serial build of the int8 ViT ran the threaded one, 16 ms a call on a busy
    machine) or compiles it again."""
    for t in range(_tiles(a16.shape[0], b16.shape[0])):
        _gemm_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, out)


@njit(parallel=True, cache=True)
def qlinear_kernel(a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                   out):
    """int8 codes ``out = requantize(offset-corrected a @ wt.T + bias)``, fused: the
    epilogue runs on each tile's accumulators while they are in L1 (see the module
    docstring); the int32 matrix is never written out. Tiles split over threads."""
    for t in prange(_tiles(a16.shape[0], b16.shape[0])):
        _linear_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo,
                     hi, out)


@njit(cache=True)
def qlinear_serial(a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                   out):
    """:func:`qlinear_kernel` on one thread (a function of its own: see
    :func:`qgemm_serial`)."""
    for t in range(_tiles(a16.shape[0], b16.shape[0])):
        _linear_tile(t, a16, b16, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo,
                     hi, out)


@njit(cache=True)
def qlinear_rows(a16, w8, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                 out):
    """:func:`qlinear_kernel` for a few rows, on one thread, reading the int8 codes ``w8``
    (``pack_panel(wt, NR1, np.int8)``) instead of the int16 panel: 1 byte per weight, not 2."""
    m = out.shape[0]
    for t in range(_tiles(m, w8.shape[0])):
        i0, j0 = _origin(t, w8.shape[0])
        buf = np.empty((MB, NB), np.int32)
        _tile_rows(a16, w8, m, i0, j0, buf)
        _epilogue(buf, i0, j0, za, zw, colsum, rowsum, k_dim, bias, m0, shift, z_out, lo, hi,
                  out)


# Up to this many input rows qlinear reads the int8 codes (qlinear_rows): each row streams
# the weight once, at 1 byte a weight instead of the panel's 2. Measured at 1024 x 1024,
# one thread: 1.9x faster than the panel kernel for 1 row, 1.15x for 2, even for 3.
ROWS_MAX = 2


def threaded(work: int) -> bool:
    """Whether ``work`` multiply-adds go to the threaded build: from the compiled graph's
    own matmul threshold (``graph.lower.MATMUL_PARALLEL_MIN_WORK``: one fact for every
    matmul) and when more than one thread is allowed (``perf.limit_threads``). Waking
    threads costs tens of microseconds on an idle laptop and whole scheduler ticks (4 ms)
    on a busy one. Every quantized kernel picks its build with this (int8 here, the
    weight-only ones in :mod:`.kernels_weightonly`)."""
    from ..graph.lower import MATMUL_PARALLEL_MIN_WORK

    return work >= MATMUL_PARALLEL_MIN_WORK and numba.get_num_threads() > 1


def qgemm(m: int, n: int, k: int):
    """The int32 kernel for an ``m x k @ k x n`` product: threaded when the work is large
    and more than one thread is allowed (``limit_threads``), else its serial build."""
    return qgemm_kernel if threaded(m * n * k) else qgemm_serial


def qlinear(m: int, n: int, k: int):
    """The fused int8 kernel for ``m`` rows: :func:`qlinear_rows` (int8 codes) for at most
    ``ROWS_MAX`` rows, else the panel kernel, threaded as :func:`qgemm` decides. The rows
    kernel takes the padded int8 codes, the others the int16 panel (``PackedWeight``)."""
    if m <= ROWS_MAX:
        return qlinear_rows
    return qlinear_kernel if threaded(m * n * k) else qlinear_serial


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

"""Lowering a matmul group's product: which te it is written as, and its schedules.

Three shapes of product, three schedules (the group's epilogue, bias and activation, is
folded into each one's copy-back by :func:`mlc.graph.lower._schedule_matmul`):

* 2-D and at least a vector wide: the unit 06 hand schedule
  (:func:`mlc.schedule.examples.matmul_hand_schedule`), rank-1 updates of a tile;
* batched (attention's ``Q K^T`` and ``A V``, a Linear on ``(batch, time, d)``):
  :func:`batched_matmul_schedule`, the same tile under the fused batch loops;
* 2-D and narrower than a vector (a classifier's logits): :func:`dot_matmul_te` and
  :func:`schedule_dot`, dot products against B^T packed in the kernel.
"""

from __future__ import annotations

from .. import te

# A 2-D matmul narrower than this many columns (one AVX-512 vector of float32: a
# classifier's 10 logits) is computed as dot products over k (see dot_matmul_te).
DOT_MAX_COLUMNS = 16
DOT_ROWS = 4  # rows of A per column of B^T: four sums kept in registers


def divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def as_dot(n, target) -> bool:
    """Whether the matmul ``n`` is lowered by :func:`dot_matmul_te`: a float product
    narrower than a vector with at least ``DOT_ROWS`` rows, on a CPU target."""
    if target == "cuda" or n.op != "matmul" or n.dtype not in ("float32", "float64"):
        return False
    a, b = (x.shape for x in n.inputs)
    # packing copies all of B: worth it when a full tile of rows reads each packed row (a
    # decode step's one query row against a cached V would copy the cache every token)
    return (n.shape[-1] < DOT_MAX_COLUMNS and n.shape[-2] >= DOT_ROWS
            and len(a) == len(n.shape) and (len(b) == 2 or b[:-2] == a[:-2]))


def dot_matmul_te(a, b, name):
    """``C = A @ B`` as dot products of A's rows with B's columns, B copied transposed into
    ``<name>_packed`` first (``K x N`` floats, once per call).

    The rank-1 updates of the hand schedule vectorize over C's columns, which a narrow C
    (``(256, 64) @ (64, 10)``, the digits MLP's head) does not fill: ten columns are one
    partial vector, and the tile's partial sums go through memory at every k. Packed, each
    ``C[i, j]`` is a sum over k of two contiguous rows, a reduction LLVM vectorizes with
    its partial sums in registers (see ``schedule_dot``). The same layout trick as a BLAS
    packing its panels, or TVM's ``dense_pack``, here made inside the kernel::

        C[i, j] = sum_k A[i, k] * B[k, j]
          ->  B_packed[j, k] = B[k, j];  C[i, j] = sum_k A[i, k] * B_packed[j, k]
    """
    *batch, k, m = b.shape
    bt = te.compute((*batch, m, k), lambda *t: b[t[:-2] + (t[-1], t[-2])],
                    name=name + "_packed")
    r = te.reduce_axis((0, k), name="k")
    nb = len(batch)  # 0: one B for every row of A (a Linear); else B per batch item
    return te.compute(a.shape[:-1] + (m,), lambda *t: te.sum(
        a[t[:-1] + (r,)] * bt[t[len(t) - 2 - nb:-2] + (t[-1], r)], axis=r), name=name)


def schedule_dot(sch, name, n) -> None:
    """The schedule of a packed matmul (:func:`dot_matmul_te`): ``DOT_ROWS`` rows of A
    against one row of B^T at a time, their sums accumulated in a local tile whose loops
    are unrolled (so code generation holds it in scalar variables, one register each),
    the loop over k innermost (a reduction the compiler vectorizes), then the epilogue::

        for i_0 in range(n // 4):
            for j in range(m):
                C_local_0_0 = 0.0 ... C_local_3_0 = 0.0
                for k in range(K):
                    C_local_0_0 = C_local_0_0 + A[i_0 * 4, k] * B_packed[j, k]
                    ...                                  # rows 1 to 3
                C[i_0 * 4, j] = C_local_0_0 + bias[j] ...
    """
    c = sch.get_block(name)
    *batch, i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, divisor_at_most(n, DOT_ROWS)])
    sch.reorder(*batch, i0, j, k, i1)
    local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(local, j)
    init = sch.decompose_reduction(c, k)
    sch.unroll(i1)
    for blk in (init, local):
        for lp in sch.get_loops(blk)[len(batch) + 2:]:
            sch.unroll(lp)


def batched_matmul_schedule(sch, name, n, m, parallel) -> None:
    """The hand schedule for ``(..., n, k) @ (..., k, m)`` (attention's ``Q K^T`` and
    ``A V``; a Linear on ``(batch, time, d)``): the batch loops fused into one outer loop
    (parallel when the whole product is large), and under it each ``n x m`` matrix done
    as in ``matmul_hand_schedule``: a tile accumulated in a local buffer by rank-1 updates
    over ``k`` with its contiguous rows vectorized and four rows unrolled innermost, then
    copied back ((8, 64, 64) @ (8, 64, 32): 2.3 ms without the unrolled rows, 0.18 ms
    with, on one core). The generic nest
    would run ``k`` innermost, reading ``B[b, k, j]`` down a column."""
    c = sch.get_block(name)
    *batch, i, j, kk = sch.get_loops(c)
    b = sch.fuse(*batch) if len(batch) > 1 else batch[0]
    ti = divisor_at_most(n, 32)
    unroll = 4 if ti % 4 == 0 else 1
    j0, j1 = sch.split(j, factors=[None, divisor_at_most(m, 64)])
    i0, i1, i2 = sch.split(i, factors=[None, ti // unroll, unroll])
    sch.reorder(b, i0, j0, kk, i1, j1, i2)
    local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(local, j0)
    sch.decompose_reduction(c, kk)
    sch.unroll(i2)
    sch.vectorize(j1)
    if parallel:
        sch.parallel(b)

"""Worked schedules for matmul ``C[i, j] = sum_k A[i, k] * B[k, j]``: one for the CPU, one
for a GPU. Each takes a Schedule of a te matmul (a block named ``block`` with loops
``i, j, k``) and transforms it in place; read them as recipes.
"""

from __future__ import annotations


def matmul_hand_schedule(sch, block: str = "C", tile_i: int = 32, tile_j: int = 64,
                         unroll: int = 1, parallel: bool = True):
    """A fast CPU matmul: tiles, a local accumulator tile, vectorized columns.

    * split i into ``(i_0, i_1)`` and j into ``(j_0, j_1)``: a ``tile_i x tile_j`` tile of
      C per ``(i_0, j_0)``;
    * reorder to ``i_0, j_0, k, i_1, j_1``: for each k, a rank-1 update of the tile, whose
      rows ``j_1`` are contiguous in memory and vectorized (one load of ``A[i, k]`` feeds
      a whole row of multiply-adds);
    * ``cache_write`` to a "local" tile and ``reverse_compute_at`` its copy-back under
      ``j_0``: the tile (32 x 64 floats = 8 KiB) stays in the L1 cache while k runs;
    * ``decompose_reduction`` takes the ``k == 0`` branch out of the inner loop;
    * ``parallel(i_0)`` gives row tiles to the cores.

    ``unroll > 1`` further splits ``i_1`` and unrolls ``unroll`` rows innermost (more
    work per load of ``B[k, j]``; on some machines it helps, measure). ``parallel=False``
    leaves the row tiles on one core (for a tiny matmul, starting threads costs more).
    Tile sizes should divide the matrix sizes (other sizes work, with a guard). Returns
    the schedule.
    """
    c = sch.get_block(block)
    i, j, k = sch.get_loops(c)
    j0, j1 = sch.split(j, factors=[None, tile_j])
    if unroll > 1:
        i0, i1, i2 = sch.split(i, factors=[None, tile_i // unroll, unroll])
        sch.reorder(i0, j0, k, i1, j1, i2)
    else:
        i0, i1 = sch.split(i, factors=[None, tile_i])
        sch.reorder(i0, j0, k, i1, j1)
    c_local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(c_local, j0)
    sch.decompose_reduction(c, k)
    if unroll > 1:
        sch.unroll(i2)
    sch.vectorize(j1)
    if parallel:
        sch.parallel(i0)
    return sch


def matmul_gpu_schedule(sch, block: str = "C", tile: int = 4, tile_k: int = 4):
    """A shared-memory tiled GPU matmul (the classic CUDA kernel, written as a schedule).

    Each thread block computes a ``tile x tile`` tile of C, one thread per element
    (``blockIdx.x/y`` over tiles, ``threadIdx.x/y`` inside). The reduction is cut into
    ``tile_k`` slices; for each slice the threads first copy a tile of A and of B into
    shared memory (``cache_read`` + ``compute_at`` under the slice loop, the copy loops
    bound to the same threads), then multiply out of shared memory. The code generator
    puts ``cuda.syncthreads()`` between the phases. Returns the schedule.
    """
    c = sch.get_block(block)
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, tile])
    j0, j1 = sch.split(j, factors=[None, tile])
    k0, k1 = sch.split(k, factors=[None, tile_k])
    sch.reorder(i0, j0, k0, i1, j1, k1)
    sch.bind(i0, "blockIdx.x")
    sch.bind(j0, "blockIdx.y")
    for index in (0, 1):
        cache = sch.cache_read(c, index, "shared")
        sch.compute_at(cache, k0)
        a0, a1 = sch.get_loops(cache)[-2:]
        sch.bind(a0, "threadIdx.x")
        sch.bind(a1, "threadIdx.y")
    sch.bind(i1, "threadIdx.x")
    sch.bind(j1, "threadIdx.y")
    return sch


def matmul_gpu_coalesced_schedule(sch, block: str = "C", tile: int = 4, tile_k: int = 4):
    """:func:`matmul_gpu_schedule` with the two things it gets wrong put right.

    * **coalescing**: ``threadIdx.x`` (the fast-varying thread index, the lanes of a warp)
      goes to the *columns* ``j_1`` of C and to the columns of each shared tile's copy,
      so neighbouring threads load and store neighbouring addresses of the row-major A,
      B and C; ``threadIdx.y`` takes the rows. (The other schedule binds ``threadIdx.x``
      to the rows: a warp then walks down a column, one segment per thread.)
    * **a local accumulator**: ``cache_write(C, 0, "local")`` with its copy-back moved
      under the thread loops, so each thread sums into its own ``cuda.local.array`` (a
      register) and writes ``C[i, j]`` to global memory once, instead of reading and
      writing it at every step of the reduction.

    Returns the schedule.
    """
    c = sch.get_block(block)
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, tile])
    j0, j1 = sch.split(j, factors=[None, tile])
    k0, k1 = sch.split(k, factors=[None, tile_k])
    sch.reorder(i0, j0, i1, j1, k0, k1)
    sch.bind(i0, "blockIdx.y")
    sch.bind(j0, "blockIdx.x")
    sch.bind(i1, "threadIdx.y")
    sch.bind(j1, "threadIdx.x")
    local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(local, j1)
    return sch

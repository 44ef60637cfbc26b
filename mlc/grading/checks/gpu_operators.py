"""Unit 04, GPU operators: grids and blocks, 2-D indexing, shared-memory reductions and tiles.

The checks launch the student's ``@cuda.jit`` kernels themselves, on hidden tiny shapes
and launch configurations chosen to catch the usual mistakes: more threads than
elements (a missing bounds test), fewer threads than elements (a missing grid-stride
loop), shapes that are no multiple of the tile. In the simulator each launch goes
through :func:`mlc.memcount.count_memory`, so the checks also grade *traffic*: a
reduction must read each input element once, a tiled matmul must read global memory
about ``2 n^3 / T`` times instead of ``2 n^3``, and a 2-D kernel must coalesce.
On a real GPU the results are checked but traffic cannot be counted (the check says so).
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import CheckFailed, exercise, first_line

NB = "04_gpu_operators"


def _simulated() -> bool:
    import numba

    return bool(numba.config.ENABLE_CUDASIM)


def _need_kernel(ns, t, name):
    k = t.need(ns, name)
    if not (hasattr(k, "py_func") and hasattr(k, "__getitem__")):
        raise CheckFailed(f"`{name}` should be a CUDA kernel: put @cuda.jit on the line above "
                          f"`def {name}`")
    if getattr(k, "_device", False):
        raise CheckFailed(f"`{name}` is a device function (device=True); it should be a "
                          "kernel, launched as name[blocks, threads](...)")
    t.passed.append(f"`{name}` is a @cuda.jit kernel")
    return k


def _launch(what, kernel, griddim, blockdim, *args, trace=False):
    """Launch; return the memory counts in the simulator, None on a real GPU."""
    try:
        if _simulated():
            from mlc.memcount import count_memory

            return count_memory(kernel, griddim, blockdim, *args, trace=trace)
        kernel[griddim, blockdim](*args)
        return None
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        hint = ""
        if isinstance(err, IndexError):
            hint = " (a thread indexed past the end of an array: test i < n before using i)"
        raise CheckFailed(f"{what}: your kernel raised {type(err).__name__}: "
                          f"{first_line(err)}{hint}") from None


def _counts(t, counts, what):
    """The counts, or a failure explaining that traffic needs the simulator."""
    if counts is None:
        raise CheckFailed(f"{what}: memory traffic can only be counted in Numba's CUDA "
                          "simulator; grade this exercise with NUMBA_ENABLE_CUDASIM=1 set "
                          "before Python starts")
    return counts


def _all_written(t, out, what):
    """Outputs start as NaN: any NaN left means some element was never written."""
    missing = int(np.isnan(out).sum())
    t.true(missing == 0, f"{what}: writes every element of the output",
           f"{missing} of {out.size} elements were never written; does every thread find its "
           "element(s), and do the launched threads cover the whole array?")


def _rand(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


@exercise("gpu_operators.vector_add", points=1, notebook=NB,
          hint="start = cuda.grid(1), stride = cuda.gridsize(1); "
               "for i in range(start, out.size, stride): out[i] = x[i] + y[i]")
def _(ns, t):
    kernel = _need_kernel(ns, t, "vector_add")
    rng = np.random.default_rng(10)
    for n, blocks, threads, why in [(300, 3, 128, "more threads than elements"),
                                    (1000, 2, 64, "fewer threads than elements"),
                                    (1, 1, 32, "a single element")]:
        x, y, out = _rand(rng, n), _rand(rng, n), np.full(n, np.nan, np.float32)
        what = f"vector_add[{blocks}, {threads}] on {n} elements ({why})"
        counts = _launch(what, kernel, blocks, threads, x, y, out)
        _all_written(t, out, what)
        t.close(out, x + y, what)
        if counts is not None:
            t.equal((counts["x"].reads, counts["y"].reads, counts["out"].writes), (n, n, n),
                    f"{what}: reads each of x and y once and writes out once")


BIAS_BLOCK = (32, 4)  # x runs along columns (j), y along rows (i)


@exercise("gpu_operators.indexing_2d", points=2, notebook=NB,
          hint="j, i = cuda.grid(2) (x is the column), then "
               "if i < out.shape[0] and j < out.shape[1]: out[i, j] = X[i, j] + b[j]")
def _(ns, t):
    kernel = _need_kernel(ns, t, "add_bias")
    rng = np.random.default_rng(11)
    bx, by = BIAS_BLOCK
    for rows, cols in [(5, 37), (1, 1), (9, 64)]:
        X, b = _rand(rng, rows, cols), _rand(rng, cols)
        out = np.full((rows, cols), np.nan, np.float32)
        grid = (math.ceil(cols / bx), math.ceil(rows / by))
        what = f"add_bias[{grid}, {BIAS_BLOCK}] on X of shape {(rows, cols)}"
        counts = _launch(what, kernel, grid, BIAS_BLOCK, X, b, out, trace=(rows == 9))
        _all_written(t, out, what)
        t.close(out, X + b, what)
        if counts is not None:
            t.equal((counts["X"].reads, counts["out"].writes), (rows * cols, rows * cols),
                    f"{what}: reads X and writes out once per element")
        if rows == 9:
            counts = _counts(t, counts, what)
            for name, kind in (("X", "r"), ("out", "w")):
                per = counts.transactions(name, kind=kind)["per_request"]
                t.true(per <= 1.5, f"{what}: accesses to {name} coalesce (one 128-byte "
                       "segment per warp)",
                       f"a warp touches {per:.1f} segments of {name} per access; neighbouring "
                       "threads (threadIdx.x) must touch neighbouring columns j")


@exercise("gpu_operators.reduce_shared", points=3, notebook=NB, simulator=True,
          hint="each thread sums x[i] over a grid-stride loop into a register, stores it in "
               "s[threadIdx.x], then halves: step = THREADS // 2; while step > 0: if tid < "
               "step: s[tid] += s[tid + step]; cuda.syncthreads(); step //= 2. Thread 0 writes "
               "s[0] to partial[blockIdx.x]")
def _(ns, t):
    kernel = _need_kernel(ns, t, "block_sum")
    threads = t.need(ns, "THREADS", callable_=False)
    t.true(isinstance(threads, int) and 32 <= threads <= 256 and threads & (threads - 1) == 0,
           "THREADS is a power of two between 32 and 256", f"THREADS = {threads!r}")
    rng = np.random.default_rng(12)
    for n, blocks in [(1000, 2), (100, 1), (0, 1), (3001, 3)]:
        x = _rand(rng, n) if n else np.zeros(0, np.float32)
        partial = np.full(blocks, np.nan, np.float32)
        what = f"block_sum[{blocks}, {threads}] on {n} elements"
        counts = _launch(what, kernel, blocks, threads, x, partial)
        t.close(partial.sum(dtype=np.float64), x.sum(dtype=np.float64),
                f"{what}: the partial sums add up to sum(x)", rtol=1e-4, atol=1e-4)
        if counts is None:
            continue
        t.equal(counts["x"].reads, n, f"{what}: reads each element of x exactly once")
        t.equal((counts["partial"].writes, counts["partial"].reads), (blocks, 0),
                f"{what}: one write of partial per block (and no reads)")
        if n:
            t.true(counts.shared_reads > 0 and counts.shared_writes > 0,
                   f"{what}: the block reduces in shared memory",
                   "make s = cuda.shared.array(THREADS, dtype=float32) and reduce in it")


@exercise("gpu_operators.matmul_tiled", points=4, notebook=NB, simulator=True,
          hint="per tile step t: sA[ty, tx] = A[i, t*TILE + tx] and sB[ty, tx] = "
               "B[t*TILE + ty, j] (0.0 when outside the matrix), cuda.syncthreads(), "
               "accumulate sA[ty, k] * sB[k, tx] for k in range(TILE), cuda.syncthreads() again")
def _(ns, t):
    kernel = _need_kernel(ns, t, "matmul_tiled")
    T = t.need(ns, "TILE", callable_=False)
    t.true(isinstance(T, int) and 2 <= T <= 16, "TILE is an int between 2 and 16",
           f"TILE = {T!r} (the simulator runs TILE*TILE threads per block: keep it small)")
    rng = np.random.default_rng(13)
    for n, k, m in [(2 * T, 2 * T, 2 * T), (T + 4, 2 * T + 4, T + 2), (1, 3, 1)]:
        A, B = _rand(rng, n, k), _rand(rng, k, m)
        C = np.full((n, m), np.nan, np.float32)
        grid = (math.ceil(m / T), math.ceil(n / T))
        what = f"matmul_tiled[{grid}, {(T, T)}] on ({n}x{k}) @ ({k}x{m})"
        counts = _launch(what, kernel, grid, (T, T), A, B, C)
        _all_written(t, C, what)
        t.close(C, A.astype(np.float64) @ B, what, rtol=1e-4, atol=1e-5)
        counts = _counts(t, counts, what)
        # each element of A is loaded once per block column, each of B once per block row
        tiled = n * k * math.ceil(m / T) + k * m * math.ceil(n / T)
        naive = 2 * n * k * m
        t.true(counts.global_reads <= 1.1 * tiled,
               f"{what}: reads global memory like a tiled kernel (at most {tiled}; "
               f"the naive kernel reads {naive})",
               f"your kernel read global memory {counts.global_reads} times: load each tile "
               "into shared memory once and read it from there TILE times")
        t.equal(counts["C"].writes, n * m, f"{what}: writes each element of C once")

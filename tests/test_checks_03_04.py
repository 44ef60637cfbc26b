"""The checks of units 03 (CPU operators) and 04 (GPU operators).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: C not zeroed, the wrong loop order,
edges of a tile forgotten, a reduction without prange; a kernel without a bounds test or
grid-stride loop, swapped 2-D indices, uncoalesced accesses, a reduction that reads its
input twice, a "tiled" matmul that reads global memory like the naive one.
"""

from pathlib import Path

import numpy as np
import pytest
from numba import cuda, njit, prange

from check_util import check_runner

import mlc
from mlc.grading.check import run_check
from mlc.grading.grader import grade_notebook

ROOT = Path(__file__).resolve().parents[1]


# ---- unit 03: reference solutions ------------------------------------------------------------

@njit(cache=True)
def matmul_ikj(A, B, C):
    n, K = A.shape
    m = B.shape[1]
    C[:] = 0
    for i in range(n):
        for k in range(K):
            a = A[i, k]
            for j in range(m):
                C[i, j] += a * B[k, j]


@njit(cache=True)
def matmul_tiled(A, B, C, tile):
    n, K = A.shape
    m = B.shape[1]
    C[:] = 0
    for i0 in range(0, n, tile):
        for k0 in range(0, K, tile):
            for j0 in range(0, m, tile):
                jn = min(tile, m - j0)
                for i in range(i0, min(i0 + tile, n)):
                    Ci = C[i, j0:j0 + jn]
                    for k in range(k0, min(k0 + tile, K)):
                        a = A[i, k]
                        Bk = B[k, j0:j0 + jn]
                        for jj in range(jn):
                            Ci[jj] += a * Bk[jj]


@njit(parallel=True, cache=True)
def parallel_sum(x):
    total = 0.0
    for i in prange(x.size):
        total += x[i]
    return total


CPU = {"matmul_ikj": matmul_ikj, "matmul_tiled": matmul_tiled, "parallel_sum": parallel_sum}


# ---- unit 04: reference solutions (tiny launches: the simulator runs a thread per thread) ---

@cuda.jit
def vector_add(x, y, out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, stride):
        out[i] = x[i] + y[i]


@cuda.jit
def add_bias(X, b, out):
    j, i = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = X[i, j] + b[j]


THREADS = 64


@cuda.jit
def block_sum(x, partial):
    s = cuda.shared.array(THREADS, dtype=np.float32)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        acc += x[i]
    s[tid] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            s[tid] += s[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = s[0]


TILE = 4


@cuda.jit
def matmul_tiled_gpu(A, B, C):
    sA = cuda.shared.array((TILE, TILE), dtype=np.float32)
    sB = cuda.shared.array((TILE, TILE), dtype=np.float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    i = cuda.blockIdx.y * TILE + ty
    j = cuda.blockIdx.x * TILE + tx
    acc = 0.0
    for t in range((A.shape[1] + TILE - 1) // TILE):
        kk = t * TILE + tx
        sA[ty, tx] = A[i, kk] if i < A.shape[0] and kk < A.shape[1] else 0.0
        kk = t * TILE + ty
        sB[ty, tx] = B[kk, j] if kk < B.shape[0] and j < B.shape[1] else 0.0
        cuda.syncthreads()
        for k in range(TILE):
            acc += sA[ty, k] * sB[k, tx]
        cuda.syncthreads()
    if i < C.shape[0] and j < C.shape[1]:
        C[i, j] = acc


GPU = {"vector_add": vector_add, "add_bias": add_bias, "block_sum": block_sum,
       "THREADS": THREADS, "matmul_tiled": matmul_tiled_gpu, "TILE": TILE}


_run, _fails = check_runner(lambda ex_id: CPU if ex_id.startswith("cpu") else GPU)


# ---- references pass ------------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", ["cpu_operators.matmul_ikj", "cpu_operators.matmul_tiled",
                                   "cpu_operators.parallel_sum", "gpu_operators.vector_add",
                                   "gpu_operators.indexing_2d", "gpu_operators.reduce_shared",
                                   "gpu_operators.matmul_tiled"])
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) >= 4


@pytest.mark.parametrize("stem,points", [("03_cpu_operators", 7), ("04_gpu_operators", 10)])
def test_solution_notebook_gets_full_marks(stem, points):
    report = grade_notebook(ROOT / "solutions" / f"{stem}.ipynb", timeout=120)
    assert (report.score, report.max_score) == (points, points), report.results


def test_missing_and_unimplemented():
    assert "`matmul_ikj` is not defined" in run_check("cpu_operators.matmul_ikj", {})["message"]

    @cuda.jit
    def todo(x, y, out):
        raise NotImplementedError("your code here")

    assert "not implemented" in _run("gpu_operators.vector_add", vector_add=todo)["message"]


# ---- unit 03: wrong solutions fail with a useful message ------------------------------------

def test_matmul_ikj_failures():
    _fails("cpu_operators.matmul_ikj", "compiled with Numba", matmul_ikj=matmul_ikj.py_func)

    @njit
    def garbage_in_c(A, B, C):  # forgets C[:] = 0
        for i in range(A.shape[0]):
            for k in range(A.shape[1]):
                for j in range(B.shape[1]):
                    C[i, j] += A[i, k] * B[k, j]

    _fails("cpu_operators.matmul_ikj", "(1x1) @ (1x1) float32", "nan",
           matmul_ikj=garbage_in_c)

    @njit
    def slow(A, B, C):  # right answer, computed by the column-walking order, three times
        for _ in range(3):
            for i in range(A.shape[0]):
                for j in range(B.shape[1]):
                    acc = 0.0
                    for k in range(A.shape[1]):
                        acc += A[i, k] * B[k, j]
                    C[i, j] = acc

    _fails("cpu_operators.matmul_ikj", "at least 2x faster", "innermost loop", matmul_ikj=slow)


def test_matmul_tiled_failures():
    @njit
    def drops_edges(A, B, C, tile):  # only whole tiles: the ragged edges stay garbage
        n, K = A.shape
        m = B.shape[1]
        C[:] = np.nan
        for i0 in range(0, n - n % tile, tile):
            for j0 in range(0, m - m % tile, tile):
                for i in range(i0, i0 + tile):
                    for j in range(j0, j0 + tile):
                        acc = 0.0
                        for k in range(K):
                            acc += A[i, k] * B[k, j]
                        C[i, j] = acc

    _fails("cpu_operators.matmul_tiled", "(37x53) @ (53x29) float32, 8", "first mismatch",
           matmul_tiled=drops_edges)

    @njit
    def slow(A, B, C, tile):
        for _ in range(3):
            matmul_tiled(A, B, C, tile)
            for i in range(A.shape[0]):
                for j in range(B.shape[1]):
                    acc = 0.0
                    for k in range(A.shape[1]):
                        acc += A[i, k] * B[k, j]
                    C[i, j] = acc

    _fails("cpu_operators.matmul_tiled", "1.2x faster", "vectorizing", matmul_tiled=slow)


def test_parallel_sum_failures():
    @njit
    def sequential(x):
        total = 0.0
        for i in range(x.size):
            total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "parallel=True", parallel_sum=sequential)

    @njit(parallel=True)
    def no_prange(x):
        return x.sum()

    _fails("cpu_operators.parallel_sum", "prange", parallel_sum=no_prange)

    @njit(parallel=True)
    def skips_first(x):
        total = 0.0
        for i in prange(1, x.size):
            total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "parallel_sum of 1 float64 elements", "expected 2.5",
           parallel_sum=skips_first)


# ---- unit 04: wrong solutions fail with a useful message ------------------------------------

def test_vector_add_failures():
    @cuda.jit
    def unguarded(x, y, out):
        i = cuda.grid(1)
        out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "more threads than elements", "IndexError", "i < n",
           vector_add=unguarded)

    @cuda.jit
    def one_per_thread(x, y, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "fewer threads than elements", "872 of 1000",
           vector_add=one_per_thread)

    _fails("gpu_operators.vector_add", "should be a CUDA kernel",
           vector_add=lambda x, y, out: None)


def test_add_bias_failures():
    @cuda.jit
    def swapped(X, b, out):  # i from x: rows and columns trade places
        i, j = cuda.grid(2)
        if i < out.shape[0] and j < out.shape[1]:
            out[i, j] = X[i, j] + b[j]

    _fails("gpu_operators.indexing_2d", "shape (5, 37)", "145 of 185 elements were never written",
           add_bias=swapped)

    @cuda.jit
    def uncoalesced(X, b, out):  # correct, but neighbouring threads walk down a column
        x0, y0 = cuda.grid(2)
        sx, sy = cuda.gridsize(2)
        for i in range(x0, out.shape[0], sx):
            for j in range(y0, out.shape[1], sy):
                out[i, j] = X[i, j] + b[j]

    _fails("gpu_operators.indexing_2d", "coalesce", "segments of X", add_bias=uncoalesced)


def test_reduce_shared_failures():
    @cuda.jit
    def reads_twice(x, partial):
        s = cuda.shared.array(THREADS, dtype=np.float32)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            acc += 2 * x[i] - x[i]
        s[tid] = acc
        cuda.syncthreads()
        if tid == 0:
            total = 0.0
            for r in range(THREADS):
                total += s[r]
            partial[cuda.blockIdx.x] = total

    _fails("gpu_operators.reduce_shared", "reads each element of x exactly once",
           "expected 1000, got 2000", block_sum=reads_twice)

    @cuda.jit
    def atomics_only(x, partial):
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            cuda.atomic.add(partial, cuda.blockIdx.x, x[i])

    # partial starts as NaN: an atomic sum into it without initialising it stays NaN
    _fails("gpu_operators.reduce_shared", "add up to sum(x)", block_sum=atomics_only)

    @cuda.jit
    def no_grid_stride(x, partial):
        s = cuda.shared.array(THREADS, dtype=np.float32)
        tid = cuda.threadIdx.x
        i = cuda.grid(1)
        s[tid] = x[i] if i < x.size else 0.0
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if tid < step:
                s[tid] += s[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            partial[cuda.blockIdx.x] = s[0]

    _fails("gpu_operators.reduce_shared", "block_sum[2, 64] on 1000 elements", "sum(x)",
           block_sum=no_grid_stride)
    _fails("gpu_operators.reduce_shared", "power of two", THREADS=48)


def test_matmul_tiled_gpu_failures():
    @cuda.jit
    def naive(A, B, C):
        j, i = cuda.grid(2)
        if i < C.shape[0] and j < C.shape[1]:
            acc = 0.0
            for k in range(A.shape[1]):
                acc += A[i, k] * B[k, j]
            C[i, j] = acc

    _fails("gpu_operators.matmul_tiled", "like a tiled kernel (at most 256",
           "read global memory 1024 times", matmul_tiled=naive)

    @cuda.jit
    def no_bounds(A, B, C):  # fine on multiples of TILE, reads past the end otherwise
        sA = cuda.shared.array((TILE, TILE), dtype=np.float32)
        sB = cuda.shared.array((TILE, TILE), dtype=np.float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        i = cuda.blockIdx.y * TILE + ty
        j = cuda.blockIdx.x * TILE + tx
        acc = 0.0
        for t in range(A.shape[1] // TILE):
            sA[ty, tx] = A[i, t * TILE + tx]
            sB[ty, tx] = B[t * TILE + ty, j]
            cuda.syncthreads()
            for k in range(TILE):
                acc += sA[ty, k] * sB[k, tx]
            cuda.syncthreads()
        C[i, j] = acc

    _fails("gpu_operators.matmul_tiled", "(8x12) @ (12x6)", "IndexError",
           matmul_tiled=no_bounds)
    _fails("gpu_operators.matmul_tiled", "TILE is an int between 2 and 16", TILE=32)


def test_traffic_needs_the_simulator(monkeypatch):
    assert mlc._env.cuda_simulated()
    from mlc.grading.checks import gpu_operators

    monkeypatch.setattr(gpu_operators, "_simulated", lambda: False)
    msg = _fails("gpu_operators.matmul_tiled", "NUMBA_ENABLE_CUDASIM=1")
    assert "can only be counted" in msg

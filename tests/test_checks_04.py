"""The checks of unit 04 (GPU operators), in Numba's CUDA simulator.

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: a kernel without a bounds test or
grid-stride loop, swapped 2-D indices, a bias per row, a row test missing, uncoalesced
accesses, a reduction that reads its input twice, a "tiled" matmul that reads global
memory like the naive one, misses a barrier, leaves a tile's edge unwritten or writes C
at every step. An untouched
stub hears only "not implemented yet", and the judge refuses traffic counts that cannot
have been measured. Launches stay tiny: the simulator runs a Python thread per thread.
"""

from pathlib import Path

import numpy as np
import pytest
from numba import cuda

from check_util import check_runner

import mlc
from mlc.grading import registry
from mlc.grading.check import run_check
from mlc.grading.protocol import NOT_IMPLEMENTED
from mlc.grading.registry import CheckFailed
from mlc.grading.source import Sources

ROOT = Path(__file__).resolve().parents[1]
IDS = ["gpu_operators.vector_add", "gpu_operators.indexing_2d", "gpu_operators.reduce_shared",
       "gpu_operators.matmul_tiled"]


# ---- reference solutions (the same as in solutions/04_gpu_operators.ipynb) ------------------

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


def _tiled_kernel(barrier_after_products=True, barrier_after_loads=True, zero_outside=True,
                  write_each_step=False):
    """The reference tiled matmul, or one of its wrong answers: without its second barrier
    (a thread that runs ahead overwrites the tile its neighbours still read), without its
    first (a thread reads the tile before its neighbours loaded it), with the part of a
    tile outside the matrix left unwritten (garbage on a GPU), or writing C at every step."""
    @cuda.jit
    def matmul_tiled(A, B, C):
        sA = cuda.shared.array((TILE, TILE), dtype=np.float32)
        sB = cuda.shared.array((TILE, TILE), dtype=np.float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        i = cuda.blockIdx.y * TILE + ty
        j = cuda.blockIdx.x * TILE + tx
        acc = 0.0
        for t in range((A.shape[1] + TILE - 1) // TILE):
            kk = t * TILE + tx
            if i < A.shape[0] and kk < A.shape[1]:
                sA[ty, tx] = A[i, kk]
            elif zero_outside:
                sA[ty, tx] = 0.0
            kk = t * TILE + ty
            if kk < B.shape[0] and j < B.shape[1]:
                sB[ty, tx] = B[kk, j]
            elif zero_outside:
                sB[ty, tx] = 0.0
            if barrier_after_loads:
                cuda.syncthreads()
            for k in range(TILE):
                acc += sA[ty, k] * sB[k, tx]
            if barrier_after_products:
                cuda.syncthreads()
            if write_each_step and i < C.shape[0] and j < C.shape[1]:
                C[i, j] = acc
        if i < C.shape[0] and j < C.shape[1]:
            C[i, j] = acc

    return matmul_tiled


matmul_tiled = _tiled_kernel()


GPU = {"vector_add": vector_add, "add_bias": add_bias, "block_sum": block_sum,
       "THREADS": THREADS, "matmul_tiled": matmul_tiled, "TILE": TILE}

_run, _fails = check_runner(GPU)


def _case(ex_id, index=0):
    return registry.get(ex_id).check.cases()[index]


def _judge(ex_id, case, obs):
    """Judge a (forged) observation of one of the grader's own cases."""
    registry.get(ex_id).check.judge(case, obs, registry.Tester())


# ---- references pass, stubs hear only "not implemented yet" ---------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) >= 4


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "04_gpu_operators.ipynb")
    assert (report.score, report.max_score) == (10, 10), report.results


def test_exercise_notebook_gets_zero_and_no_hints(graded):
    report = graded(ROOT / "exercises" / "04_gpu_operators.ipynb")
    assert (report.score, report.max_score) == (0, 10), report.results
    for r in report.results:
        assert r.message == NOT_IMPLEMENTED, r


def _stubs():
    @cuda.jit
    def vector_add(x, y, out):
        raise NotImplementedError("your code here")

    @cuda.jit
    def add_bias(X, b, out):
        raise NotImplementedError("your code here")

    @cuda.jit
    def block_sum(x, partial):
        raise NotImplementedError("your code here")

    @cuda.jit
    def matmul_tiled(A, B, C):
        raise NotImplementedError("your code here")

    return {"gpu_operators.vector_add": {"vector_add": vector_add},
            "gpu_operators.indexing_2d": {"add_bias": add_bias},
            "gpu_operators.reduce_shared": {"block_sum": block_sum, "THREADS": 128},
            "gpu_operators.matmul_tiled": {"matmul_tiled": matmul_tiled, "TILE": 8}}


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_is_not_implemented_and_gets_no_hint(ex_id):
    rec = _run(ex_id, **_stubs()[ex_id])
    assert rec["score"] == 0
    assert "not implemented yet" in rec["message"], rec["message"]
    assert rec["hint"] == ""


def test_missing_definitions():
    rec = _run("gpu_operators.vector_add", vector_add=None)
    assert rec["score"] == 0 and "`vector_add` should be a function" in rec["message"]
    ns = {k: v for k, v in GPU.items() if k != "THREADS"}
    rec = run_check("gpu_operators.reduce_shared", ns)
    assert rec["score"] == 0 and rec["hint"] == ""
    assert "`THREADS` is not defined" in rec["message"]


@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges_not_code(ex_id):
    hint = registry.get(ex_id).hint
    assert hint and not any(s in hint for s in ("=", "range(", "[", "syncthreads()"))


# ---- wrong solutions fail with a useful message ---------------------------------------------

def test_vector_add_failures():
    @cuda.jit
    def unguarded(x, y, out):
        i = cuda.grid(1)
        out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "more threads than elements", "IndexError",
           "past the end", vector_add=unguarded)

    @cuda.jit
    def one_per_thread(x, y, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "fewer threads than elements", "872 of 1000",
           vector_add=one_per_thread)

    @cuda.jit
    def reads_twice(x, y, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = x[i] + y[i] + x[i] - x[i]

    _fails("gpu_operators.vector_add", "reads each of x and y once", vector_add=reads_twice)

    _fails("gpu_operators.vector_add", "should be a CUDA kernel",
           vector_add=lambda x, y, out: None)

    @cuda.jit(device=True)
    def device_fn(x, y, out):
        pass

    _fails("gpu_operators.vector_add", "device function", vector_add=device_fn)


def test_vector_add_chunk_per_thread_or_a_wrong_stride_fails():
    @cuda.jit
    def chunk_per_thread(x, y, out):  # each element once, but a warp's addresses spread out
        nt = cuda.gridsize(1)
        chunk = (out.size + nt - 1) // nt
        start = cuda.grid(1) * chunk
        for i in range(start, min(start + chunk, out.size)):
            out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "fewer threads than elements", "coalesce",
           "8.0 segments of x", vector_add=chunk_per_thread)

    @cuda.jit
    def block_stride(x, y, out):  # steps by one block: the blocks redo each other's work
        for i in range(cuda.grid(1), out.size, cuda.blockDim.x):
            out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "reads each of x and y once", vector_add=block_stride)

    @cuda.jit
    def thread_start(x, y, out):  # starts at threadIdx.x: every block does block 0's part
        for i in range(cuda.threadIdx.x, out.size, cuda.gridsize(1)):
            out[i] = x[i] + y[i]

    _fails("gpu_operators.vector_add", "more threads than elements", vector_add=thread_start)


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


def test_add_bias_on_the_wrong_axis_or_without_the_row_test_fails():
    @cuda.jit
    def bias_per_row(X, b, out):  # b[i]: a bias per row, where the exercise adds one per column
        j, i = cuda.grid(2)
        if i < out.shape[0] and j < out.shape[1]:
            out[i, j] = X[i, j] + b[i]

    _fails("gpu_operators.indexing_2d", "shape (5, 37)", "first mismatch at index (0, 1)",
           add_bias=bias_per_row)

    @cuda.jit
    def column_test_only(X, b, out):  # the grid's last row of blocks runs past the matrix
        j, i = cuda.grid(2)
        if j < out.shape[1]:
            out[i, j] = X[i, j] + b[j]

    _fails("gpu_operators.indexing_2d", "shape (5, 37)", "IndexError", "out of bounds for axis 0",
           add_bias=column_test_only)

    @cuda.jit
    def thread_index_only(X, b, out):  # threadIdx without blockIdx: every block does block 0
        j, i = cuda.threadIdx.x, cuda.threadIdx.y
        if i < out.shape[0] and j < out.shape[1]:
            out[i, j] = X[i, j] + b[j]

    _fails("gpu_operators.indexing_2d", "57 of 185 elements were never written",
           add_bias=thread_index_only)

    @cuda.jit
    def adds_into_x(X, b, out):  # right values, but X is changed and read twice
        j, i = cuda.grid(2)
        if i < out.shape[0] and j < out.shape[1]:
            X[i, j] += b[j]
            out[i, j] = X[i, j]

    _fails("gpu_operators.indexing_2d", "reads X and writes out once per element",
           "got (370, 185)", add_bias=adds_into_x)


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

    @cuda.jit
    def no_shared(x, partial):  # right sums, but one thread per block does all the work
        if cuda.threadIdx.x == 0:
            acc = 0.0
            for i in range(cuda.blockIdx.x, x.size, cuda.gridDim.x):
                acc += x[i]
            partial[cuda.blockIdx.x] = acc

    _fails("gpu_operators.reduce_shared", "reduces in shared memory", block_sum=no_shared)

    @cuda.jit
    def serial_by_thread0(x, partial):  # shared memory, but thread 0 adds up THREADS values
        s = cuda.shared.array(THREADS, dtype=np.float32)
        tid = cuda.threadIdx.x
        acc = np.float32(0)
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            acc += x[i]
        s[tid] = acc
        cuda.syncthreads()
        if tid == 0:
            total = np.float32(0)
            for r in range(THREADS):
                total += s[r]
            partial[cuda.blockIdx.x] = total

    _fails("gpu_operators.reduce_shared", "about 2 * THREADS times, as a tree does",
           block_sum=serial_by_thread0)

    @cuda.jit
    def no_barrier_in_tree(x, partial):  # the tree, without a barrier between its steps
        s = cuda.shared.array(THREADS, dtype=np.float32)
        tid = cuda.threadIdx.x
        acc = np.float32(0)
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            acc += x[i]
        s[tid] = acc
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if tid < step:
                s[tid] += s[tid + step]
            step //= 2
        if tid == 0:
            partial[cuda.blockIdx.x] = s[0]

    # the race is found for certain, before the sum (which the simulator's interleaving
    # may or may not get wrong)
    _fails("gpu_operators.reduce_shared", "synchronise between the steps",
           "syncthreads() is missing", block_sum=no_barrier_in_tree)

    @cuda.jit
    def no_barrier_after_load(x, partial):  # the tree reads before all loads are done
        s = cuda.shared.array(THREADS, dtype=np.float32)
        tid = cuda.threadIdx.x
        acc = np.float32(0)
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            acc += x[i]
        s[tid] = acc
        step = THREADS // 2
        while step > 0:
            if tid < step:
                s[tid] += s[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            partial[cuda.blockIdx.x] = s[0]

    _fails("gpu_operators.reduce_shared", "syncthreads() is missing",
           block_sum=no_barrier_after_load)


def test_barrier_probe_finds_the_race_itself():
    """The probe reports the race even where the simulator's interleaving got the sum
    right: it compares phases, not results."""
    from mlc.grading.checks.gpu_launch import barrier_probe

    @cuda.jit
    def racy(x, out):  # thread 1 reads what thread 0 writes, with no barrier between
        s = cuda.shared.array(2, dtype=np.float32)
        t = cuda.threadIdx.x
        if t == 0:
            s[0] = x[0]
        if t == 1:
            out[0] = s[0]

    @cuda.jit
    def fenced(x, out):
        s = cuda.shared.array(2, dtype=np.float32)
        t = cuda.threadIdx.x
        if t == 0:
            s[0] = x[0]
        cuda.syncthreads()
        if t == 1:
            out[0] = s[0]

    x = np.ones(1, np.float32)
    r = barrier_probe(racy, 1, 2, x, np.zeros(1, np.float32))
    assert r["races"] and r["races"][0]["index"] == [0] and r["barriers"] == 0
    assert {r["races"][0]["writer"], r["races"][0]["other"]} == {0, 1}
    r = barrier_probe(fenced, 1, 2, x, np.zeros(1, np.float32))
    assert r["races"] == [] and r["barriers"] == 1
    assert r["shared_reads"] == [1] and r["thread_reads"] == [1]
    _fails("gpu_operators.reduce_shared", "power of two", "THREADS = 48", THREADS=48)
    _fails("gpu_operators.reduce_shared", "power of two", "THREADS = 64.0", THREADS=64.0)
    _fails("gpu_operators.reduce_shared", "power of two", "THREADS = 4096", THREADS=4096)


def test_matmul_tiled_failures():
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
    _fails("gpu_operators.matmul_tiled", "TILE is an int between 2 and 16", TILE="4")


def test_matmul_tiled_without_the_barrier_after_the_products_fails():
    """A thread that runs ahead overwrites a tile its neighbours are still reading: on a GPU
    a race whatever C comes out; the barrier probe finds it before the values are judged
    (in the simulator, whether C comes out wrong depends on how its threads interleave)."""
    _fails("gpu_operators.matmul_tiled", "(8x8) @ (8x8)", "a race",
           "a cuda.syncthreads() is missing",
           matmul_tiled=_tiled_kernel(barrier_after_products=False))


def test_matmul_tiled_without_the_barrier_after_the_loads_fails():
    _fails("gpu_operators.matmul_tiled", "(8x8) @ (8x8)", "a race", "after the same 0",
           matmul_tiled=_tiled_kernel(barrier_after_loads=False))


def test_matmul_tiled_that_leaves_a_tile_edge_unwritten_fails():
    """Skipping the part of a tile outside the matrix leaves what the shared array held:
    zeros here more often than not, garbage on a GPU; the probe sees the read itself."""
    _fails("gpu_operators.matmul_tiled", "(8x12) @ (12x6)", "before any thread of its block "
           "wrote it", matmul_tiled=_tiled_kernel(zero_outside=False))


def test_matmul_tiled_writing_c_at_every_step_fails():
    _fails("gpu_operators.matmul_tiled", "writes each element of C once", "expected 64, got 192",
           matmul_tiled=_tiled_kernel(write_each_step=True))


def test_barrier_probe_sees_a_shared_read_before_any_write():
    from mlc.grading.checks.gpu_launch import barrier_probe

    @cuda.jit
    def half_written(x, out):
        s = cuda.shared.array(4, dtype=np.float32)
        t = cuda.threadIdx.x
        if t < 2:
            s[t] = x[t]
        cuda.syncthreads()
        out[t] = s[t]

    r = barrier_probe(half_written, 1, 4, np.ones(4, np.float32), np.zeros(4, np.float32))
    assert r["races"] == [] and sorted(u["index"] for u in r["unwritten"]) == [[2], [3]]


def test_traffic_needs_the_simulator(monkeypatch):
    assert mlc._env.cuda_simulated()
    from mlc.grading.checks import gpu_launch

    monkeypatch.setattr(gpu_launch, "simulated", lambda: False)
    for ex_id in IDS:  # observed in this process, where the patch holds, not afresh
        monkeypatch.setattr(registry.get(ex_id), "fresh", "")
    for ex_id in ("gpu_operators.matmul_tiled", "gpu_operators.reduce_shared",
                  "gpu_operators.indexing_2d"):
        msg = _fails(ex_id, "NUMBA_ENABLE_CUDASIM=1")
        assert "can only be counted" in msg
    # vector_add grades its results everywhere, and its traffic only where it is counted
    rec = _run("gpu_operators.vector_add")
    assert rec["score"] == rec["max_score"], rec["message"]


# ---- source rules: the kernels are @cuda.jit kernels ----------------------------------------

@pytest.mark.parametrize("cells,ok", [
    (["@cuda.jit\ndef vector_add(x, y, out):\n    pass\n"], True),
    (["from numba import cuda\n@numba.cuda.jit()\ndef vector_add(x, y, out):\n    pass\n"], True),
    (["vector_add = cuda.jit(_impl)\n"], True),
    (["def vector_add(x, y, out):\n    pass\n"], False),
    (["@cuda.jit(device=True)\ndef vector_add(x, y, out):\n    pass\n"], False),
    ([], False),
])
def test_kernels_are_read_from_the_source(cells, ok):
    check = registry.get("gpu_operators.vector_add").check
    if ok:
        check.inspect(Sources(cells), registry.Tester())
    else:
        with pytest.raises(CheckFailed, match="decorated with @cuda.jit"):
            check.inspect(Sources(cells), registry.Tester())


# ---- the judge bounds what the worker measured ----------------------------------------------

def _vector_obs(case, counts):
    return {"kernel": "kernel", "raised": None, "out": case["x"] + case["y"],
            "counts": counts}


def _g(reads, writes=0, atomics=0):
    return {"reads": reads, "writes": writes, "atomics": atomics}


@pytest.mark.parametrize("counts", [
    {"global": [_g(300), _g(300)], "shared_reads": 0, "shared_writes": 0},   # an argument short
    {"global": [_g(-1), _g(300), _g(0, 300)], "shared_reads": 0, "shared_writes": 0},
    {"global": [_g(300.0), _g(300), _g(0, 300)], "shared_reads": 0, "shared_writes": 0},
    {"global": [_g(True), _g(300), _g(0, 300)], "shared_reads": 0, "shared_writes": 0},
    {"global": [_g(10 ** 12), _g(300), _g(0, 300)], "shared_reads": 0, "shared_writes": 0},
    {"global": [_g(300), _g(300), _g(0, 300)]},
    "lots",
])
def test_forged_counts_are_refused(counts):
    case = _case("gpu_operators.vector_add")
    with pytest.raises(CheckFailed, match="worker's memory counts"):
        _judge("gpu_operators.vector_add", case, _vector_obs(case, counts))


def test_plausible_counts_are_judged():
    case = _case("gpu_operators.vector_add")
    good = {"global": [_g(300), _g(300), _g(0, 300)], "shared_reads": 0, "shared_writes": 0}
    _judge("gpu_operators.vector_add", case, _vector_obs(case, good))
    good["global"][1] = _g(600)
    with pytest.raises(CheckFailed, match="reads each of x and y once"):
        _judge("gpu_operators.vector_add", case, _vector_obs(case, good))


@pytest.mark.parametrize("coalescing", [
    None,
    {"0r": {"requests": 18, "transactions": 18}},                    # out's missing
    {"0r": {"requests": 1, "transactions": 1}, "2w": {"requests": 18, "transactions": 18}},
    {"0r": {"requests": 18, "transactions": 17}, "2w": {"requests": 18, "transactions": 18}},
    {"0r": {"requests": 18, "transactions": 0.5}, "2w": {"requests": 18, "transactions": 18}},
])
def test_forged_coalescing_is_refused(coalescing):
    case = _case("gpu_operators.indexing_2d", 2)
    assert case["trace"]
    n = case["X"].size
    counts = {"global": [_g(n), _g(n), _g(0, n)], "shared_reads": 0, "shared_writes": 0,
              "coalescing": coalescing}
    obs = {"kernel": "kernel", "raised": None, "out": case["X"] + case["b"], "counts": counts}
    with pytest.raises(CheckFailed, match="coalescing measurement"):
        _judge("gpu_operators.indexing_2d", case, obs)
    counts["coalescing"] = {"0r": {"requests": 18, "transactions": 18},
                            "2w": {"requests": 18, "transactions": 18}}
    _judge("gpu_operators.indexing_2d", case, obs)


def test_forged_outputs_are_refused():
    case = _case("gpu_operators.matmul_tiled")
    obs = {"kernel": "kernel", "raised": None, "tile": {"value": 4, "repr": "4"},
           "C": "the right answer", "counts": None,
           "barriers": {"barriers": 4, "shared_reads": [], "thread_reads": [], "races": [],
                        "unwritten": []}}
    with pytest.raises(CheckFailed, match="expected the output array of shape"):
        _judge("gpu_operators.matmul_tiled", case, obs)
    with pytest.raises(CheckFailed, match="malformed observation"):
        _judge("gpu_operators.matmul_tiled", case, [1, 2, 3])
    with pytest.raises(CheckFailed, match="TILE is an int"):
        _judge("gpu_operators.matmul_tiled", case, {**obs, "tile": {"value": True}})


def test_lecture_counts_traffic_on_a_machine_with_a_gpu_too(tmp_path):
    """On a machine with an NVIDIA GPU (NUMBA_ENABLE_CUDASIM unset), lecture 04 still
    counts traffic: its `count_traffic` hands the kernel's Python to the simulator. No GPU
    here, so a process with the simulator off stands in for one: @cuda.jit only compiles
    at the first launch, and the counting never launches on the device."""
    import json
    import os
    import subprocess
    import sys

    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "04_gpu_operators.ipynb", as_version=4)
    setup = next(c.source for c in nb.cells if "def count_traffic" in c.source)
    script = setup + '''

assert not SIMULATED and not numba.config.ENABLE_CUDASIM


@cuda.jit
def add(x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + y[i]


TPB = 32


@cuda.jit
def block_max(x, partial):
    s = cuda.shared.array(TPB, dtype=numba.float32)
    tid = cuda.threadIdx.x
    i = cuda.grid(1)
    s[tid] = x[i] if i < x.size else -math.inf
    cuda.syncthreads()
    step = TPB // 2
    while step > 0:
        if tid < step:
            s[tid] = max(s[tid], s[tid + step])
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = s[0]


x = np.arange(50, dtype=np.float32)
out = np.zeros(50, np.float32)
c1 = count_traffic(add, 2, 32, x, x, out)
partial = np.zeros(2, np.float32)
c2 = count_traffic(block_max, 2, TPB, x, partial)
print(json.dumps({"add": [c1.global_reads, c1.global_writes, float(out.sum())],
                  "max": [c2.global_reads, c2.shared_reads, float(partial.max())],
                  "flag": bool(numba.config.ENABLE_CUDASIM)}))
'''
    script = "import json\n" + script
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["add"] == [100, 50, float(2 * x_sum(50))]
    assert got["max"][0] == 50 and got["max"][2] == 49.0
    assert got["max"][1] == 2 * (2 * 31) + 2  # per block 31 steps of two reads, then s[0]
    assert got["flag"] is False  # the simulator flag is put back


def x_sum(n):
    return n * (n - 1) // 2

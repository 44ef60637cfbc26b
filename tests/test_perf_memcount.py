"""mlc.perf.memcount: exact element counts of global and shared traffic in the CUDA simulator.

Every expected count below is derived by hand from the kernel's loops (written next to
each test), so a counting bug shows as a wrong number, not as a crash.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlc  # noqa: F401  (chooses the simulator before numba is imported)
from mlc.perf import MemCountError, count_memory
from numba import cuda
from numba.cuda.simulator import kernelapi

simulated = pytest.mark.skipif(not mlc._env.cuda_simulated(),
                               reason="memory counting needs Numba's CUDA simulator")
pytestmark = simulated


@cuda.jit
def vector_add(x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = x[i] + y[i]


@cuda.jit
def matmul_naive(A, B, C):
    i, j = cuda.grid(2)
    if i < C.shape[0] and j < C.shape[1]:
        acc = 0.0
        for k in range(A.shape[1]):
            acc += A[i, k] * B[k, j]
        C[i, j] = acc


def make_tiled(T):
    @cuda.jit
    def matmul_tiled(A, B, C):
        sA = cuda.shared.array((T, T), dtype=np.float32)
        sB = cuda.shared.array((T, T), dtype=np.float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        i = cuda.blockIdx.y * T + ty
        j = cuda.blockIdx.x * T + tx
        acc = 0.0
        for t in range(A.shape[1] // T):
            sA[ty, tx] = A[i, t * T + tx]
            sB[ty, tx] = B[t * T + ty, j]
            cuda.syncthreads()
            for k in range(T):
                acc += sA[ty, k] * sB[k, tx]
            cuda.syncthreads()
        C[i, j] = acc

    return matmul_tiled


TPB = 64


@cuda.jit
def block_sum(x, partial):
    s = cuda.shared.array(TPB, dtype=np.float32)
    tid = cuda.threadIdx.x
    i = cuda.grid(1)
    s[tid] = x[i] if i < x.size else 0.0
    cuda.syncthreads()
    step = TPB // 2
    while step > 0:
        if tid < step:
            s[tid] += s[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = s[0]


def rand(*shape):
    return np.random.rand(*shape).astype(np.float32)


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 700))
def test_vector_add_reads_2n_writes_n(n):
    x, y, out = rand(n), rand(n), np.zeros(n, np.float32)
    c = count_memory(vector_add, (n + 255) // 256, 256, x, y, out)
    np.testing.assert_allclose(out, x + y)
    assert (c.global_reads, c.global_writes) == (2 * n, n)
    assert (c["x"].reads, c["y"].reads, c["out"].writes) == (n, n, n)
    assert (c.shared_reads, c.shared_writes) == (0, 0)
    assert c.global_bytes == 3 * n * 4


def test_naive_matmul_reads_2n_cubed():
    n = 16
    A, B, C = rand(n, n), rand(n, n), np.zeros((n, n), np.float32)
    c = count_memory(matmul_naive, (2, 2), (8, 8), A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)
    # each of the n*n threads reads a row of A and a column of B: n + n elements
    assert c["A"].reads == c["B"].reads == n ** 3
    assert (c.global_reads, c.global_writes) == (2 * n ** 3, n * n)


@pytest.mark.parametrize("n,T", [(16, 4), (16, 8), (24, 8)])
def test_tiled_matmul_divides_global_reads_by_tile(n, T):
    A, B, C = rand(n, n), rand(n, n), np.zeros((n, n), np.float32)
    c = count_memory(make_tiled(T), (n // T, n // T), (T, T), A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)
    # each thread loads one element of A and one of B per tile step: n/T steps, n*n threads
    assert c.global_reads == 2 * n ** 3 // T
    assert c.global_writes == n * n
    # ... and reads 2*T shared elements per step: the same 2n^3 products, now from chip
    assert c.shared_reads == 2 * n ** 3
    assert c.shared_writes == 2 * n ** 3 // T
    assert set(c.arrays) == {"A", "B", "C", "sA", "sB"}
    assert c["sA"].space == "shared" and c["sA"].shape == (T, T)


def test_tree_reduction_counts():
    n, blocks = 150, 3  # 192 threads; the last 42 load the neutral 0 instead of x
    x, partial = rand(n), np.zeros(blocks, np.float32)
    c = count_memory(block_sum, blocks, TPB, x, partial)
    assert partial.sum() == pytest.approx(x.sum(), rel=1e-5)
    assert (c["x"].reads, c["partial"].writes) == (n, blocks)
    # per block: TPB stores of the loads, then steps 32, 16, .., 1: each active thread
    # reads two shared elements and writes one; thread 0 reads s[0] at the end
    active = TPB - 1
    assert c.shared_writes == blocks * (TPB + active)
    assert c.shared_reads == blocks * (2 * active + 1)


@cuda.jit
def atomic_sum(x, out):
    i = cuda.grid(1)
    if i < x.size:
        cuda.atomic.add(out, 0, x[i])


def test_atomics_count_one_read_and_one_write():
    n = 100
    x, out = rand(n), np.zeros(1, np.float32)
    c = count_memory(atomic_sum, 1, 128, x, out)
    assert out[0] == pytest.approx(x.sum(), rel=1e-5)
    assert (c["out"].reads, c["out"].writes, c["out"].atomics) == (n, n, n)
    assert c["x"].reads == n


@cuda.jit
def row_views(A, out):
    i = cuda.grid(1)
    if i < A.shape[0]:
        row = A[i]  # a view: no traffic of its own
        acc = 0.0
        for j in range(len(row)):
            acc += row[j]
        out[i] = acc
        out[i] += 0.0  # a read and a write
        A[i, 1:3] = 0.0  # a slice store writes two elements


def test_views_slices_and_compound_assignment():
    A, out = rand(5, 4), np.zeros(5, np.float32)
    expected = A.sum(axis=1)
    c = count_memory(row_views, 1, 8, A, out)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert (c["A"].reads, c["A"].writes) == (20, 10)
    assert (c["out"].reads, c["out"].writes) == (5, 10)
    assert np.all(A[:, 1:3] == 0)


def test_device_arrays_are_counted_and_updated():
    n = 40
    x, y = cuda.to_device(rand(n)), cuda.to_device(rand(n))
    out = cuda.device_array(n, np.float32)
    c = count_memory(vector_add, 1, 64, x, y, out)
    np.testing.assert_allclose(out.copy_to_host(), x.copy_to_host() + y.copy_to_host())
    assert (c.global_reads, c.global_writes) == (2 * n, n)


@cuda.jit
def copy_rows(A, out):  # thread x reads along a row: neighbours touch neighbours
    tx, r = cuda.threadIdx.x, cuda.blockIdx.x
    out[r, tx] = A[r, tx]


@cuda.jit
def copy_columns(A, out):  # thread x reads down a column: neighbours are a row apart
    tx, r = cuda.threadIdx.x, cuda.blockIdx.x
    out[r, tx] = A[tx, r]


def test_trace_shows_coalescing():
    A, out = rand(32, 32), np.zeros((32, 32), np.float32)
    rows = count_memory(copy_rows, 4, 32, A, out, trace=True)
    cols = count_memory(copy_columns, 4, 32, A, out, trace=True)
    np.testing.assert_array_equal(out[:4], A[:, :4].T)
    # one warp per block, one load each: 32 floats of a row are one 128-byte segment
    assert rows.transactions("A") == {"requests": 4, "transactions": 4, "per_request": 1.0}
    # ... 32 floats down a column lie in 32 different segments
    assert cols.transactions("A")["per_request"] == 32
    assert cols.transactions("out", kind="w")["per_request"] == 1
    assert len(rows.accesses) == 2 * 4 * 32
    with pytest.raises(ValueError, match="trace=True"):
        count_memory(copy_rows, 1, 32, A, out).transactions("A")
    with pytest.raises(KeyError, match="no array 'Z'"):
        rows.transactions("Z")


def test_table_lists_every_array_and_totals():
    n = 10
    c = count_memory(vector_add, 1, 16, rand(n), rand(n), np.zeros(n, np.float32))
    text = repr(c)
    for word in ("x", "y", "out", "global", "total global", "20", "16 threads"):
        assert word in text
    assert str(c) == text


def test_clear_errors():
    with pytest.raises(MemCountError, match="@cuda.jit kernel"):
        count_memory(lambda x: None, 1, 1, np.zeros(1))
    with pytest.raises(TypeError, match=r"takes 3 arguments \(x, y, out\), got 2"):
        count_memory(vector_add, 1, 1, np.zeros(1), np.zeros(1))

    @cuda.jit(device=True)
    def helper(x):
        return x

    with pytest.raises(MemCountError, match="device function"):
        count_memory(helper, 1, 1, 1.0)


def test_refuses_outside_the_simulator(monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    with pytest.raises(MemCountError, match="simulator"):
        count_memory(vector_add, 1, 1, np.zeros(1), np.zeros(1), np.zeros(1))


@cuda.jit
def out_of_bounds(x):
    i = cuda.grid(1)
    x[i] = 1.0  # no bounds test: the 9th thread writes past the end


def test_simulator_is_restored_even_after_a_failing_kernel():
    orig_array, orig_atomic = kernelapi.FakeCUDAShared.array, kernelapi.FakeCUDAModule.atomic
    with pytest.raises(IndexError):
        count_memory(out_of_bounds, 1, 16, np.zeros(8, np.float32))
    assert kernelapi.FakeCUDAShared.array is orig_array
    assert kernelapi.FakeCUDAModule.atomic is orig_atomic
    # and a plain launch still works with the simulator's own shared arrays
    x, partial = rand(64), np.zeros(1, np.float32)
    block_sum[1, TPB](x, partial)
    assert partial[0] == pytest.approx(x.sum(), rel=1e-5)

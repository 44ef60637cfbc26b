"""mlc.compress sparse formats and kernels: CSR and 2:4 equal dense; bytes; validation."""

import numpy as np
import pytest

from mlc import compress as C
from mlc.data import load_digits
from mlc.models import digits_mlp


def _sparse(shape, s, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) < s] = 0
    return a


@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("parallel", [False, True])
def test_csr_matmul_equals_dense(batch, parallel):
    a = _sparse((96, 128), 0.8)
    x = np.random.default_rng(1).standard_normal((128, batch)).astype(np.float32)
    csr = C.to_csr(a)
    assert csr.nnz == np.count_nonzero(a)
    np.testing.assert_array_equal(csr.toarray(), a)
    np.testing.assert_allclose(C.csr_matmul(csr, x, parallel=parallel), a @ x, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(csr @ x, a @ x, rtol=1e-5, atol=1e-5)


def test_csr_edge_cases():
    empty = np.zeros((5, 8), np.float32)
    x = np.ones((8, 2), np.float32)
    np.testing.assert_array_equal(C.csr_matmul(C.to_csr(empty), x), np.zeros((5, 2)))
    a = _sparse((5, 8), 0.5)
    np.testing.assert_allclose(C.csr_matmul(C.to_csr(a), x[:, 0]), a @ x[:, :1], rtol=1e-6)
    np.testing.assert_allclose(C.csr_matmul(C.to_csr(a), np.asfortranarray(x)), a @ x,
                               rtol=1e-6)


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("k", [16, 12])  # 12: an odd number of groups (half a meta byte)
def test_sparse24_matmul_equals_dense(batch, k):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((k, 40)).astype(np.float32)   # (in, out) as in nn.Linear
    a = (w * C.nm_mask(w)).T.copy()                        # (out, in): rows 2:4 along in
    assert C.is_2_4(a)
    s = C.to_2_4(a)
    assert s.values.shape == (40, k // 2) and s.meta.dtype == np.uint8
    np.testing.assert_array_equal(s.toarray(), a)
    x = rng.standard_normal((k, batch)).astype(np.float32)
    for parallel in (False, True):
        np.testing.assert_allclose(C.sparse24_matmul(s, x, parallel=parallel), a @ x,
                                   rtol=1e-5, atol=1e-5)


def test_2_4_with_sparser_groups():
    a = np.zeros((2, 8), np.float32)
    a[0, 3] = 1.0        # one nonzero in the group, the other stored as zero
    a[1, 5:7] = [2, 3]
    s = C.to_2_4(a)
    np.testing.assert_array_equal(s.toarray(), a)
    x = np.arange(8, dtype=np.float32)[:, None]
    np.testing.assert_allclose(s @ x, a @ x)


def test_validation_before_any_kernel_runs():
    a = C.to_csr(_sparse((4, 6), 0.5))
    with pytest.raises(ValueError, match=r"\(6, N\)"):
        C.csr_matmul(a, np.ones((5, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        C.csr_matmul(a, np.ones((6, 2)))
    with pytest.raises(TypeError, match="CSRMatrix"):
        C.csr_matmul(np.ones((4, 6), np.float32), np.ones((6, 2), np.float32))
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        C.CSRMatrix(np.array([0, 1], np.int32), np.array([6], np.int32),
                    np.array([1.0], np.float32), (1, 6))
    with pytest.raises(ValueError, match="indptr"):
        C.CSRMatrix(np.array([0, 2, 1], np.int32), np.array([0], np.int32),
                    np.array([1.0], np.float32), (2, 6))
    with pytest.raises(ValueError, match="M \\+ 1"):
        C.CSRMatrix(np.array([0, 1], np.int32), np.array([0], np.int32),
                    np.array([1.0], np.float32), (3, 6))
    with pytest.raises(TypeError, match="int32"):
        C.CSRMatrix(np.array([0, 1], np.int64), np.array([0], np.int32),
                    np.array([1.0], np.float32), (1, 6))
    with pytest.raises(ValueError, match="more than two"):
        C.to_2_4(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="multiple of 4"):
        C.to_2_4(np.zeros((2, 6), np.float32))
    s = C.to_2_4(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="meta"):
        C.Sparse24Matrix(s.values, s.meta[:, :0], (2, 8))
    with pytest.raises(ValueError, match="out must be"):
        C.csr_matmul(a, np.ones((6, 2), np.float32), out=np.empty((4, 3), np.float32))


def test_stored_bytes_by_format():
    w = np.zeros((64, 32), np.float32)       # (in, out): 32 rows of 64 once transposed
    w[::4] = 1.0                              # 16 nonzeros per output row, 512 in all
    assert C.stored_bytes(w, "dense") == 4 * 64 * 32
    assert C.stored_bytes(w, "int8") == 64 * 32 + 4 * 32
    assert C.stored_bytes(w, "csr") == 8 * 512 + 4 * 33
    assert C.stored_bytes(w, "int8-csr") == 5 * 512 + 4 * 33 + 4 * 32
    assert C.stored_bytes(w, "2:4") == 2 * 64 * 32 + 32 * 8
    assert C.stored_bytes(np.ones((64, 32), np.float32), "2:4") is None
    with pytest.raises(ValueError, match="unknown format"):
        C.stored_bytes(w, "coo")
    # CSR pays off only above 50% sparsity
    half = _sparse((64, 64), 0.5)
    assert C.stored_bytes(half, "csr") > 0.95 * C.stored_bytes(half, "dense")


def test_sparse_linear_equals_the_pruned_model():
    X = load_digits()[2][:40]
    model = digits_mlp(hidden=(64,), seed=0)[0]
    C.prune_magnitude(model, 0.9)
    dense_out = C.predict(model, X)
    sparse_model = C.to_sparse(C.clone(model))
    assert isinstance(sparse_model[0], C.SparseLinear)
    np.testing.assert_allclose(C.predict(sparse_model, X), dense_out, rtol=1e-5, atol=1e-5)
    b = C.model_bytes(sparse_model)
    assert b["csr"] < 0.3 * b["dense"] and b == C.model_bytes(model)
    assert C.count_nonzeros(sparse_model) == C.count_nonzeros(model)
    assert C.count_flops(sparse_model, X[:1], sparse=True) == C.count_flops(model, X[:1], True)
    m24 = C.prune_2_4(digits_mlp(hidden=(64,), seed=0)[0])
    out24 = C.predict(m24, X)
    s24 = C.to_sparse(C.clone(m24), fmt="2:4")
    assert all(isinstance(s24[i], C.SparseLinear) for i in (0, 2))
    np.testing.assert_allclose(C.predict(s24, X), out24, rtol=1e-5, atol=1e-5)


def test_time_vs_sparsity_and_break_even():
    rows = C.time_vs_sparsity(n=64, batches=(1, 4), sparsities=(0.0, 0.9), repeat=1,
                              min_time=0.0)
    kinds = {(r["kernel"], r["batch"]) for r in rows}
    assert ("csr", 4) in kinds and ("2:4", 1) in kinds and ("numpy", 1) in kinds
    assert "break-even" in C.break_even_table(rows)
    # the interpolation, on rows made up for the purpose
    made = [dict(kernel="dense (mlc cpu)", batch=1, sparsity=None, seconds=1.0)]
    made += [dict(kernel="csr", batch=1, sparsity=s, seconds=t)
             for s, t in ((0.0, 4.0), (0.5, 2.0), (0.9, 0.5))]
    assert C.break_even_sparsity(made, 1) == pytest.approx(0.5 + 1.0 / 1.5 * 0.4)
    made[1]["seconds"] = 0.9
    assert C.break_even_sparsity(made, 1) == 0.0
    slow = [made[0]] + [dict(kernel="csr", batch=1, sparsity=0.9, seconds=2.0)]
    assert C.break_even_sparsity(slow, 1) is None


def test_limit_threads_restores_the_pools():
    import numba

    before = numba.get_num_threads()
    with C.limit_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    rows = C.time_vs_sparsity(n=32, batches=(1,), sparsities=(0.5,), repeat=2, min_time=0.0,
                              threads=1)
    assert {r["threads"] for r in rows} == {1}
    assert all(len(r["seconds"].times) == 2 for r in rows)

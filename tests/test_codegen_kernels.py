"""The code the graph compiler generates for its hot kernels: float32 erf without libm
(GELU's loop vectorizes) and the small-matmul schedules, checked for numerics on every
target against numpy, on the odd shapes (one row, a width that is no multiple of the
tile, a reduction of length one)."""

import math

import numpy as np
import pytest

from mlc import te, tir


def erf_func(dtype):
    x = te.placeholder((64,), dtype, name="x")
    y = te.compute((64,), lambda i: te.erf(x[i]), name="y")
    return te.create_prim_func([x, y])


@pytest.mark.parametrize("target", ["python", "cpu"])
def test_float32_erf_is_the_modules_own_rational_function(target):
    mod = tir.build(erf_func("float32"), target)
    assert "erf_f32(x[i])" in mod.source and "math.erf" not in mod.source
    x = np.concatenate([np.linspace(-6, 6, 58), [0.0, 1e-30, -1e-7, 3.9, -4.5, 30.0]])
    x = x.astype(np.float32)
    y = np.empty_like(x)
    mod(x, y)
    ref = np.array([math.erf(float(v)) for v in x])
    assert np.abs(y - ref).max() < 5e-7                  # a few float32 ulps
    assert y[58] == 0 and abs(y[59] - 1.1283792e-30) < 1e-36   # odd: erf(x) ~ 2x/sqrt(pi)
    assert np.all(np.abs(y) <= 1)


def test_float64_erf_and_the_cuda_target_keep_math_erf():
    assert "math.erf(x[i])" in tir.build(erf_func("float64"), "cpu").source
    sch = tir.Schedule(erf_func("float32"))
    i0, i1 = sch.split(sch.get_loops(sch.get_block("y"))[0], factors=[None, 32])
    sch.bind(i0, "blockIdx.x")
    sch.bind(i1, "threadIdx.x")
    mod = tir.build(sch, "cuda")
    assert "erf_f32" not in mod.source
    x = np.linspace(-3, 3, 64).astype(np.float32)
    y = np.empty_like(x)
    mod(x, y)
    np.testing.assert_allclose(y, [math.erf(float(v)) for v in x], atol=1e-6)


def linear_graph(m, k, n, seed=0):
    import mlc
    from mlc import graph, ops

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal((1, n)).astype(np.float32)
    W, B = mlc.Tensor(w), mlc.Tensor(b)
    # traced at batch 2 (at 1 the batch axis cannot be told from a broadcast), run at m
    g = graph.trace(lambda t: ops.relu(t @ W + ops.broadcast_to(B, (t.shape[0], n))),
                    np.zeros((2, k), np.float32))
    return g, x, np.maximum(x @ w + b, 0)


@pytest.mark.parametrize("m, k, n", [(4, 7, 10), (5, 1, 3), (7, 33, 15), (6, 64, 10),
                                     (9, 5, 1)])
@pytest.mark.parametrize("target", ["python", "cpu"])
def test_narrow_matmul_is_packed_dot_products_with_its_epilogue(m, k, n, target):
    """A matmul narrower than a vector: B^T packed in the kernel, rows of A against it
    with their sums in scalar variables, bias and ReLU applied before the one store of C;
    a reduction of length one, rows that are no multiple of four, one column."""
    from mlc import graph

    g, x, ref = linear_graph(m, k, n)
    exe = graph.build(g, target=target)
    assert exe.kernels == 1
    src = exe.at_batch(m).source                      # lowered for m rows
    assert "_packed[" in src and "held in scalar variables" in src
    assert "_local[" not in src                       # no accumulator array is left
    assert "max(" in src.split("for k in range")[-1]   # relu after the reduction
    np.testing.assert_allclose(exe(x), ref, rtol=1e-5, atol=1e-5)
    x2 = np.random.default_rng(1).standard_normal((3, k)).astype(np.float32)  # other batch
    np.testing.assert_allclose(exe(x2), graph.interpret(g, x2), rtol=1e-5, atol=1e-5)


def test_wide_and_cuda_matmuls_keep_their_schedules():
    from mlc import graph

    g, x, ref = linear_graph(4, 8, 16)                # a full vector wide: rank-1 updates
    exe = graph.build(g, target="cpu")
    assert "_packed" not in exe.source and "# vectorized" in exe.source
    np.testing.assert_allclose(exe(x), ref, rtol=1e-5, atol=1e-5)
    g, x, ref = linear_graph(1, 8, 10)                # one row: packing would not pay
    exe = graph.build(g, target="cpu")
    np.testing.assert_allclose(exe(x), ref, rtol=1e-5, atol=1e-5)
    assert "_packed" not in exe.at_batch(1).source
    g, x, ref = linear_graph(3, 5, 10)
    exe = graph.build(g, target="cuda")               # one thread per output on a GPU
    assert "_packed" not in exe.source
    np.testing.assert_allclose(exe(x), ref, rtol=1e-5, atol=1e-5)


def test_local_buffer_becomes_scalars_only_when_every_index_is_constant():
    A = te.placeholder((8, 4), name="A")
    r = te.reduce_axis((0, 4), name="k")
    C = te.compute((8,), lambda i: te.sum(A[i, r], axis=r), name="C")
    f = te.create_prim_func([A, C])
    a = np.arange(32, dtype=np.float32).reshape(8, 4)

    def built(unroll):
        sch = tir.Schedule(f)
        i, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[None, 2])
        sch.reorder(i0, k, i1)
        local = sch.cache_write(sch.get_block("C"), 0, "local")
        sch.reverse_compute_at(local, i0)
        init = sch.decompose_reduction(sch.get_block("C"), k)
        if unroll:
            for blk in ("C", init, local):
                blk = sch.get_block(blk) if isinstance(blk, str) else blk
                sch.unroll(sch.get_loops(blk)[-1])
        mod = tir.build(sch, "cpu")
        c = np.empty(8, np.float32)
        mod(a, c)
        np.testing.assert_allclose(c, a.sum(1))
        return mod.source

    src = built(unroll=True)
    assert "C_local_0 = np.float32(0.0)" in src and "C_local_1 = C_local_1 + A[" in src
    assert "np.empty" not in src
    src = built(unroll=False)                          # C_local[i_1]: stays an array
    assert "C_local = np.empty((2,)" in src and "C_local[i_1] = C_local[i_1] + A[" in src


@pytest.mark.parametrize("sa, sb", [((2, 3, 5, 7), (2, 3, 7, 6)), ((3, 4, 1), (3, 1, 9)),
                                    ((2, 5, 7), (7, 10)), ((4, 16), (2, 16, 3)),
                                    ((2, 1, 9), (2, 9, 5))])
def test_batched_narrow_matmul_packs_b_per_batch_item(sa, sb):
    """Attention's 8 x 8 products are narrow too: B^T packed per batch item (or once, for
    one B shared by every item); 2-D @ batched, and one query row against a cache (a
    decode step), keep the batched schedule."""
    from mlc import graph

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(sa, dtype=np.float32), rng.standard_normal(sb, dtype=np.float32)
    exe = graph.build(graph.trace(lambda s, t: s @ t, x, y, batch_axis=False), target="cpu")
    assert ("_packed[" in exe.source) == (len(sa) >= len(sb) and sa[-2] >= 4)
    np.testing.assert_allclose(exe(x, y), x @ y, rtol=1e-5, atol=1e-5)

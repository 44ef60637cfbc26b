"""The te frontend: programs described with placeholder/compute/reduce_axis give the same
numbers as numpy on the "python" and "cpu" targets."""

import numpy as np
import pytest

from mlc import te, tir


def elementwise():
    A = te.placeholder((3, 5), name="A")
    B = te.placeholder((3, 5), name="B")
    C = te.compute((3, 5), lambda i, j: te.exp(A[i, j]) * B[i, j] - te.sqrt(te.abs(A[i, j])),
                   name="C")
    return [A, B, C], lambda a, b: np.exp(a) * b - np.sqrt(np.abs(a))


def broadcast():
    A = te.placeholder((4, 6), name="A")
    b = te.placeholder((6,), name="b")
    C = te.compute((4, 6), lambda i, j: te.max(A[i, j] + b[j], 0.0), name="C")
    return [A, b, C], lambda a, bb: np.maximum(a + bb, 0)


def reduction():
    A = te.placeholder((5, 7), name="A")
    r = te.reduce_axis((0, 7), name="r")
    M = te.compute((5,), lambda i: te.max(A[i, r], axis=r), name="M")
    return [A, M], lambda a: a.max(1)


def full_sum():
    A = te.placeholder((4, 5), name="A")
    r, s = te.reduce_axis((0, 4), name="r"), te.reduce_axis((0, 5), name="s")
    S = te.compute((), lambda: te.sum(A[r, s], axis=[r, s]), name="S")   # a 0-d output
    return [A, S], lambda a: a.sum()


def matmul():
    A = te.placeholder((6, 4), name="A")
    B = te.placeholder((4, 5), name="B")
    k = te.reduce_axis((0, 4), name="k")
    C = te.compute((6, 5), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return [A, B, C], lambda a, b: a @ b


def batch_matmul():
    A = te.placeholder((2, 3, 4), name="A")
    B = te.placeholder((2, 4, 5), name="B")
    k = te.reduce_axis((0, 4), name="k")
    C = te.compute((2, 3, 5), lambda b, i, j: te.sum(A[b, i, k] * B[b, k, j], axis=k),
                   name="C")
    return [A, B, C], lambda a, b: a @ b


def conv2d():
    N, CI, H, W, CO, K, pad = 1, 2, 5, 5, 3, 3, 1
    X = te.placeholder((N, CI, H, W), name="X")
    Wt = te.placeholder((CO, CI, K, K), name="W")
    P = te.compute((N, CI, H + 2 * pad, W + 2 * pad),
                   lambda n, c, h, w: te.if_then_else(
                       te.all(h >= pad, h < H + pad, w >= pad, w < W + pad),
                       X[n, c, h - pad, w - pad], 0.0), name="pad")
    rc, rh, rw = (te.reduce_axis((0, CI), "rc"), te.reduce_axis((0, K), "rh"),
                  te.reduce_axis((0, K), "rw"))
    Y = te.compute((N, CO, H, W), lambda n, f, y, x: te.sum(
        P[n, rc, y + rh, x + rw] * Wt[f, rc, rh, rw], axis=[rc, rh, rw]), name="Y")

    def ref(x, w):
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (K, K), axis=(2, 3))
        return np.einsum("nchwij,fcij->nfhw", win, w)

    return [X, Wt, Y], ref


def softmax():
    n, m = 3, 6
    A = te.placeholder((n, m), name="A")
    k1, k2 = te.reduce_axis((0, m), "k1"), te.reduce_axis((0, m), "k2")
    M = te.compute((n,), lambda i: te.max(A[i, k1], axis=k1), name="M")
    E = te.compute((n, m), lambda i, j: te.exp(A[i, j] - M[i]), name="E")
    S = te.compute((n,), lambda i: te.sum(E[i, k2], axis=k2), name="S")
    O = te.compute((n, m), lambda i, j: E[i, j] / S[i], name="O")

    def ref(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return [A, O], ref


PROGRAMS = [elementwise, broadcast, reduction, full_sum, matmul, batch_matmul, conv2d, softmax]


@pytest.mark.parametrize("target", ["python", "cpu"])
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_te_program_matches_numpy(program, target):
    tensors, ref = program()
    func = te.create_prim_func(tensors)
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(t.shape).astype("float32") for t in tensors[:-1]]
    out = np.zeros(tensors[-1].shape, "float32")
    tir.build(func, target)(*ins, out)
    np.testing.assert_allclose(out, ref(*ins), rtol=1e-4, atol=1e-5)


def test_compute_becomes_blocks_with_spatial_and_reduce_iterators():
    tensors, _ = softmax()
    func = te.create_prim_func(tensors)
    text = func.script()
    for name in ("M", "E", "S", "O"):
        assert f'with block("{name}"):' in text
    # intermediates are allocated, reductions have an init with the reducer's identity
    assert [b.name for b in func.buffers] == ["A", "O", "M", "E", "S"]
    assert "vk1 = axis.reduce(6, k1)" in text and "M[vi] = -inf" in text
    assert "S[vi] = 0.0" in text
    blk = [b for b in tir.functor.blocks_in(func.body) if b.name == "S"][0]
    assert [iv.kind for iv in blk.iter_vars] == ["spatial", "reduce"]


def test_conv2d_padding_stage_can_be_inlined_or_computed_at():
    tensors, ref = conv2d()
    func = te.create_prim_func(tensors)
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal(t.shape).astype("float32") for t in tensors[:2])
    for how in ("inline", "compute_at"):
        sch = tir.Schedule(func)
        pad = sch.get_block("pad")
        if how == "inline":
            sch.compute_inline(pad)
        else:
            sch.compute_at(pad, sch.get_loops(sch.get_block("Y"))[2])
        y = np.zeros(tensors[-1].shape, "float32")
        tir.build(sch, "python")(x, w, y)
        np.testing.assert_allclose(y, ref(x, w), rtol=1e-4, atol=1e-5)


def test_te_errors_are_clear():
    A = te.placeholder((3, 4), name="A")
    with pytest.raises(ValueError, match="has 2 dims but the function takes 1"):
        te.compute((3, 4), lambda i: A[i, 0])
    with pytest.raises(IndexError, match="tensor A has 2 dims"):
        te.compute((3,), lambda i: A[i])
    r = te.reduce_axis((0, 4), "r")
    with pytest.raises(ValueError, match="must be the whole body"):
        te.compute((3,), lambda i: te.sum(A[i, r], axis=r) * 2.0)
    B = te.placeholder((3,), name="B")
    C = te.compute((3,), lambda i: B[i] + 1.0, name="C")
    with pytest.raises(ValueError, match="placeholder B is used but not passed"):
        te.create_prim_func([C])
    with pytest.raises(ValueError, match="needs axis="):
        te.sum(A[0, 0])
    D = te.compute((3,), lambda i: A[i, 0] * 2.0)
    E = te.compute((3,), lambda i: D[i] + 1.0)   # default names repeat: renamed
    f = te.create_prim_func([A, E])
    assert [b.name for b in f.buffers] == ["A", "compute_1", "compute"]

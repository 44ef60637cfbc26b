"""The checks of unit 05 (tensor IR).

The reference solutions (the same code as solutions/05_tensor_ir.ipynb) get full marks;
the mistakes students make fail with a message that names the mistake: relu inside the
sum, a reduction over the wrong axis, no padding, the stride ignored, the sample variance,
a walk over the IR that skips Allocate or leaks loops from one nest into the next.
"""

import numpy as np
import pytest

from mlc import te, tir
from check_util import check_runner

from mlc.grading.check import run_check
from mlc.grading.protocol import verdict
from mlc.grading.registry import get
from mlc.grading.wire import public, roundtrip
from mlc.grading.checks.tensor_ir import conv2d_ref

# ---- reference solutions ----------------------------------------------------------------------


def batch_matmul_relu(b, n, k, m):
    A = te.placeholder((b, n, k), "float32", name="A")
    B = te.placeholder((b, k, m), "float32", name="B")
    r = te.reduce_axis((0, k), name="r")
    C = te.compute((b, n, m), lambda bb, i, j: te.sum(A[bb, i, r] * B[bb, r, j], axis=r),
                   name="C")
    D = te.compute((b, n, m), lambda bb, i, j: te.max(C[bb, i, j], 0.0), name="D")
    return te.create_prim_func([A, B, D])


def conv2d_nchw(N, C, H, W, F, KH, KW, stride, pad):
    X = te.placeholder((N, C, H, W), "float32", name="X")
    Wt = te.placeholder((F, C, KH, KW), "float32", name="Wt")
    Xp = te.compute((N, C, H + 2 * pad, W + 2 * pad), lambda n, c, h, w: te.if_then_else(
        te.all(h >= pad, h < H + pad, w >= pad, w < W + pad), X[n, c, h - pad, w - pad], 0.0),
        name="Xp")
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    rc = te.reduce_axis((0, C), name="rc")
    rh = te.reduce_axis((0, KH), name="rh")
    rw = te.reduce_axis((0, KW), name="rw")
    Out = te.compute((N, F, OH, OW), lambda n, f, y, x: te.sum(
        Xp[n, rc, y * stride + rh, x * stride + rw] * Wt[f, rc, rh, rw], axis=[rc, rh, rw]),
        name="Out")
    return te.create_prim_func([X, Wt, Out])


def mean_var(n, m):
    X = te.placeholder((n, m), "float32", name="X")
    j1 = te.reduce_axis((0, m), name="j")
    Mean = te.compute((n,), lambda i: te.sum(X[i, j1] / m, axis=j1), name="Mean")
    j2 = te.reduce_axis((0, m), name="j")
    Var = te.compute((n,), lambda i: te.sum((X[i, j2] - Mean[i]) * (X[i, j2] - Mean[i]) / m,
                                            axis=j2), name="Var")
    return te.create_prim_func([X, Mean, Var])


def block_info(func):
    info = {}

    def walk(s, loops):
        if isinstance(s, tir.Block):
            info[s.name] = {"loops": loops,
                            "spatial": [iv.extent for iv in s.iter_vars if iv.kind == "spatial"],
                            "reduce": [iv.extent for iv in s.iter_vars if iv.kind == "reduce"]}
        elif isinstance(s, tir.For):
            walk(s.body, loops + [s.extent])
        elif isinstance(s, tir.SeqStmt):
            for c in s.seq:
                walk(c, loops)
        elif isinstance(s, tir.Allocate):
            walk(s.body, loops)
        elif isinstance(s, tir.IfThenElse):
            walk(s.then_case, loops)
            walk(s.else_case, loops)

    walk(func.body, [])
    return info


REF = {"batch_matmul_relu": batch_matmul_relu, "conv2d_nchw": conv2d_nchw,
       "mean_var": mean_var, "block_info": block_info}
IDS = ["tensor_ir.batch_matmul_relu", "tensor_ir.conv2d", "tensor_ir.mean_var",
       "tensor_ir.block_info"]
NAMES = ["batch_matmul_relu", "conv2d_nchw", "mean_var", "block_info"]


_run, _fails = check_runner(REF)


# ---- references pass, stubs and missing names fail ---------------------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) >= 4


def _todo(*args):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("ex_id,name", list(zip(IDS, NAMES, strict=True)))
def test_stub_and_missing(ex_id, name):
    rec = _run(ex_id, **{name: _todo})
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == "", "an untouched stub gets no hint"
    ns = {k: v for k, v in REF.items() if k != name}
    rec = run_check(ex_id, ns)
    assert rec["score"] == 0 and f"`{name}` is not defined" in rec["message"], rec
    assert rec["hint"] == ""


@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges_not_code(ex_id):
    hint = get(ex_id).hint
    assert hint and "te.compute(" not in hint and "te.sum(" not in hint and "lambda" not in hint
    assert "[" not in hint and " = " not in hint, hint  # no indexing, no assignments


def _verdict(ex_id, forge):
    """Grade the reference, with every observation replaced by ``forge(case, obs)``:
    the judge must treat what comes from the worker as untrusted data."""
    ex = get(ex_id)
    cases = ex.check.cases()
    obs = []
    for case in cases:
        o = roundtrip(ex.check.observe(dict(REF), roundtrip(public(case))))
        obs.append({"ok": roundtrip(forge(case, o))})
    return verdict(ex, cases, None, obs, None)


_FORGED = [None, 3, "x", [], {}, {"kind": "primfunc"},
           {"kind": "primfunc", "params": [[1, 2, 3]], "reduce": [], "run": {}},
           {"kind": "primfunc", "params": "A", "reduce": None, "run": None}]


@pytest.mark.parametrize("ex_id", IDS[:3])
@pytest.mark.parametrize("forged", range(len(_FORGED)))
def test_te_judges_reject_malformed_observations(ex_id, forged):
    rec = _verdict(ex_id, lambda case, o: _FORGED[forged])
    assert rec["score"] == 0 and "unexpected form" not in rec["message"], rec


@pytest.mark.parametrize("ex_id", IDS[:3])
def test_te_judges_check_outputs_not_the_workers_word(ex_id):
    def zero(case, o):  # the right program, but outputs of zeros (or of a wrong shape)
        o["run"]["outputs"] = [np.zeros_like(a) for a in o["run"]["outputs"]]
        return o

    assert _verdict(ex_id, zero)["score"] == 0
    for bad in ([], [np.zeros(3)], ["x"], [[np.nan]]):
        rec = _verdict(ex_id, lambda case, o, bad=bad: {**o, "run": {"outputs": bad}})
        assert rec["score"] == 0 and "unexpected form" not in rec["message"], rec
    rec = _verdict(ex_id, lambda case, o: {**o, "run": {"stage": "run", "mro": "x"}})
    assert rec["score"] == 0 and "unexpected form" not in rec["message"], rec
    assert _verdict(ex_id, lambda case, o: o)["score"] == get(ex_id).points


@pytest.mark.parametrize("forged", [None, [], {}, {"result": {}}, {"result": [1]},
                                    {"result": {"C": 1}}, {"result": {"C": {"loops": "57"}}}])
def test_block_info_judge_rejects_malformed_observations(forged):
    rec = _verdict("tensor_ir.block_info", lambda case, o: forged)
    assert rec["score"] == 0 and "unexpected form" not in rec["message"], rec


def test_block_info_judge_compares_with_its_own_program():
    def mutated(case, o):
        return {**o, "after": o["after"] + "# changed"}

    rec = _verdict("tensor_ir.block_info", mutated)
    assert rec["score"] == 0 and "changed the PrimFunc" in rec["message"], rec
    rec = _verdict("tensor_ir.block_info", lambda case, o: {**o, "before": "x"})
    assert rec["score"] == 0 and "not the grader's" in rec["message"], rec
    assert _verdict("tensor_ir.block_info", lambda case, o: o)["score"] == 2


def test_block_info_mutation_is_caught():
    def mutating(func):
        info = block_info(func)
        func.name = "renamed"
        return info

    _fails("tensor_ir.block_info", "changed the PrimFunc", block_info=mutating)


def test_block_info_accepts_int_like_extents():
    def numpy_ints(func):
        return {b: {k: tuple(np.int64(x) for x in v) for k, v in d.items()}
                for b, d in block_info(func).items()}

    assert _run("tensor_ir.block_info", block_info=numpy_ints)["score"] == 2
    _fails("tensor_ir.block_info", "list of int extents",
           block_info=lambda f: {b: {k: [object()] for k in d} for b, d in
                                 block_info(f).items()})


def test_te_wrong_returns():
    _fails("tensor_ir.mean_var", "te tensor", mean_var=lambda n, m: te.placeholder((n, m)))
    _fails("tensor_ir.mean_var", "should return a tir.PrimFunc", "got int",
           mean_var=lambda n, m: 3)
    _fails("tensor_ir.mean_var", "mean_var(3, 5): your code raised ZeroDivisionError",
           mean_var=lambda n, m: 1 / 0)


@pytest.mark.parametrize("seed", range(8))
def test_conv2d_reference_agrees_with_a_direct_loop(seed):
    """The check's vectorized reference against one window at a time, on random configs."""
    rng = np.random.default_rng(seed)
    N, C, F = (int(v) for v in rng.integers(1, 4, 3))
    KH, KW, stride, pad = (int(v) for v in rng.integers(1, 4, 4))
    H, W = (int(v) for v in rng.integers(max(KH, KW), 9, 2))
    X, Wt = rng.normal(size=(N, C, H, W)), rng.normal(size=(F, C, KH, KW))
    got = conv2d_ref(X, Wt, stride, pad)
    Xp = np.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    want = np.zeros((N, F, OH, OW))
    for n, f, y, x in np.ndindex(*want.shape):
        win = Xp[n, :, y * stride:y * stride + KH, x * stride:x * stride + KW]
        want[n, f, y, x] = (win * Wt[f]).sum()
    np.testing.assert_allclose(got, want, atol=1e-12)


# ---- exercise 1 -------------------------------------------------------------------------------

def _relu(C, shp):
    return te.compute(shp, lambda *i: te.max(C[i], 0.0), name="D")


def _bmm(stage2=_relu, reduce_ext=None, args_fn=None, product=None):
    """The reference with one part replaced: ``product(A, B, bb, i, j, r)`` is the summand."""
    def f(b, n, k, m):
        A = te.placeholder((b, n, k), "float32", name="A")
        B = te.placeholder((b, k, m), "float32", name="B")
        r = te.reduce_axis((0, reduce_ext(n, k, m) if reduce_ext else k), name="r")
        term = product or (lambda A, B, bb, i, j, r: A[bb, i, r] * B[bb, r, j])
        C = te.compute((b, n, m), lambda bb, i, j: te.sum(term(A, B, bb, i, j, r), axis=r),
                       name="C")
        D = stage2(C, (b, n, m))
        return args_fn(A, B, C, D) if args_fn else te.create_prim_func([A, B, D])
    return f


def test_batch_matmul_relu_failures():
    no_relu = _bmm(lambda C, shp: C)
    _fails("tensor_ir.batch_matmul_relu", "without the relu", batch_matmul_relu=no_relu)

    relu_inside = _bmm(lambda C, shp: C, product=lambda A, B, bb, i, j, r: te.max(
        A[bb, i, r] * B[bb, r, j], 0.0))
    _fails("tensor_ir.batch_matmul_relu", "inside the sum", batch_matmul_relu=relu_inside)

    # the reduce axis over n instead of k: reads past the end of A or B, or sums too little
    wrong_axis = _bmm(reduce_ext=lambda n, k, m: n)
    _fails("tensor_ir.batch_matmul_relu", "shared dimension k = 4", "extents [3]",
           batch_matmul_relu=wrong_axis)
    # ... and when n > k it reads past the end of A: the same diagnosis, after the IndexError
    _fails("tensor_ir.batch_matmul_relu", "IndexError", "shared dimension k = 1",
           batch_matmul_relu=_bmm(reduce_ext=lambda n, k, m: max(n, k + 1)))

    tensors = _bmm(args_fn=lambda A, B, C, D: [A, B, D])
    _fails("tensor_ir.batch_matmul_relu", "te.create_prim_func", batch_matmul_relu=tensors)

    extra_param = _bmm(args_fn=lambda A, B, C, D: te.create_prim_func([A, B, C, D]))
    _fails("tensor_ir.batch_matmul_relu", "should take 3 buffers", batch_matmul_relu=extra_param)

    swapped = _bmm(args_fn=lambda A, B, C, D: te.create_prim_func([B, A, D]))
    _fails("tensor_ir.batch_matmul_relu", "parameter 0 (B) should be A of shape (2, 3, 4)",
           batch_matmul_relu=swapped)


# ---- exercise 2 -------------------------------------------------------------------------------

def _inside(h, w, H, W, pad):
    return te.all(h >= pad, h < H + pad, w >= pad, w < W + pad)


def _conv(pad_stage=True, use_stride=True, flip=False, out_size=None, reduce_exts=None,
          inside=_inside, dilate=False):
    """The reference with one mistake switched on: ``inside(h, w, H, W, pad)`` is the
    padding stage's condition; ``dilate`` steps through the window by ``stride``."""
    def f(N, C, H, W, F, KH, KW, stride, pad):
        X = te.placeholder((N, C, H, W), "float32", name="X")
        Wt = te.placeholder((F, C, KH, KW), "float32", name="Wt")
        s = stride if use_stride else 1
        OH, OW = out_size(H, W, KH, KW, stride, pad) if out_size else \
            ((H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1)
        ec, eh, ew = reduce_exts(C, KH, KW) if reduce_exts else (C, KH, KW)
        rc = te.reduce_axis((0, ec), name="rc")
        rh = te.reduce_axis((0, eh), name="rh")
        rw = te.reduce_axis((0, ew), name="rw")
        kh = (lambda r: KH - 1 - r) if flip else (lambda r: r)
        kw = (lambda r: KW - 1 - r) if flip else (lambda r: r)
        d = stride if dilate else 1
        if pad_stage:
            Xp = te.compute((N, C, H + 2 * pad, W + 2 * pad), lambda n, c, h, w:
                            te.if_then_else(inside(h, w, H, W, pad),
                                            X[n, c, h - pad, w - pad], 0.0), name="Xp")
            body = lambda n, f, y, x: te.sum(  # noqa: E731
                Xp[n, rc, y * s + rh * d, x * s + rw * d] * Wt[f, rc, kh(rh), kw(rw)],
                axis=[rc, rh, rw])
        else:  # index the input directly, shifted by pad, with no guard
            body = lambda n, f, y, x: te.sum(  # noqa: E731
                X[n, rc, y * s + rh - pad, x * s + rw - pad] * Wt[f, rc, kh(rh), kw(rw)],
                axis=[rc, rh, rw])
        Out = te.compute((N, F, OH, OW), body, name="Out")
        return te.create_prim_func([X, Wt, Out])
    return f


def test_conv2d_failures():
    _fails("tensor_ir.conv2d", "pad = 1", "zero-padded copy", conv2d_nchw=_conv(pad_stage=False))
    _fails("tensor_ir.conv2d", "moves by 1 element instead of by stride = 2",
           conv2d_nchw=_conv(use_stride=False))
    _fails("tensor_ir.conv2d", "kernel is flipped", conv2d_nchw=_conv(flip=True))
    _fails("tensor_ir.conv2d", "IndexError",
           "reduce axes should have extents [1, 1, 1] (C, KH, KW); yours have [1, 1, 2]",
           conv2d_nchw=_conv(reduce_exts=lambda C, KH, KW: (C, KH + 1, KW)))
    _fails("tensor_ir.conv2d", "OH = (H + 2*pad - KH) // stride + 1 = 5",
           conv2d_nchw=_conv(out_size=lambda H, W, KH, KW, s, p: (H - KH + 1, W - KW + 1)))

    def only_interior(N, C, H, W, F, KH, KW, stride, pad):
        # a guarded read whose guard is wrong: the first row and column of the padded
        # input read X[-1] (the last row), not 0
        X = te.placeholder((N, C, H, W), "float32", name="X")
        Wt = te.placeholder((F, C, KH, KW), "float32", name="Wt")
        Xp = te.compute((N, C, H + 2 * pad, W + 2 * pad), lambda n, c, h, w: te.if_then_else(
            te.all(h < H + pad, w < W + pad), X[n, c, h - pad, w - pad], 0.0), name="Xp")
        OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
        rc, rh, rw = (te.reduce_axis((0, e), name=nm) for e, nm in ((C, "rc"), (KH, "rh"),
                                                                    (KW, "rw")))
        Out = te.compute((N, F, OH, OW), lambda n, f, y, x: te.sum(
            Xp[n, rc, y * stride + rh, x * stride + rw] * Wt[f, rc, rh, rw], axis=[rc, rh, rw]),
            name="Out")
        return te.create_prim_func([X, Wt, Out])

    _fails("tensor_ir.conv2d", "the interior of the output is right, the border is wrong",
           conv2d_nchw=only_interior)


# ---- exercise 3 -------------------------------------------------------------------------------

def _mv(var_fn, mean_div=True):
    def f(n, m):
        X = te.placeholder((n, m), "float32", name="X")
        j1, j2 = te.reduce_axis((0, m), name="j"), te.reduce_axis((0, m), name="j")
        Mean = te.compute((n,), lambda i: te.sum(X[i, j1] / m if mean_div else X[i, j1],
                                                 axis=j1), name="Mean")
        Var = var_fn(X, Mean, j2, n, m)
        return te.create_prim_func([X, Mean, Var])
    return f


def _sq(X, Mean, j, i):
    return (X[i, j] - Mean[i]) * (X[i, j] - Mean[i])


def test_mean_var_failures():
    good_var = lambda X, M, j, n, m: te.compute(  # noqa: E731
        (n,), lambda i: te.sum(_sq(X, M, j, i) / m, axis=j), name="Var")
    _fails("tensor_ir.mean_var", "Mean is the row sum", mean_var=_mv(good_var, mean_div=False))
    sample = lambda X, M, j, n, m: te.compute(  # noqa: E731
        (n,), lambda i: te.sum(_sq(X, M, j, i) / max(m - 1, 1), axis=j), name="Var")
    _fails("tensor_ir.mean_var", "sample variance", mean_var=_mv(sample))
    no_center = lambda X, M, j, n, m: te.compute(  # noqa: E731
        (n,), lambda i: te.sum(X[i, j] * X[i, j] / m, axis=j), name="Var")
    _fails("tensor_ir.mean_var", "mean of X**2", mean_var=_mv(no_center))

    def std(X, M, j, n, m):
        V = te.compute((n,), lambda i: te.sum(_sq(X, M, j, i) / m, axis=j), name="V")
        return te.compute((n,), lambda i: te.sqrt(V[i]), name="Var")

    _fails("tensor_ir.mean_var", "standard deviation", mean_var=_mv(std))

    def columns(n, m):  # statistics of the columns: wrong shape
        X = te.placeholder((n, m), "float32", name="X")
        r1, r2 = te.reduce_axis((0, n), name="i"), te.reduce_axis((0, n), name="i")
        Mean = te.compute((m,), lambda j: te.sum(X[r1, j] / n, axis=r1), name="Mean")
        Var = te.compute((m,), lambda j: te.sum(
            (X[r2, j] - Mean[j]) * (X[r2, j] - Mean[j]) / n, axis=r2), name="Var")
        return te.create_prim_func([X, Mean, Var])

    _fails("tensor_ir.mean_var", "should be Mean of shape (3,), but it has shape (5,)",
           mean_var=columns)


# ---- exercise 4 -------------------------------------------------------------------------------

def test_block_info_failures():
    _fails("tensor_ir.block_info", "missing", "Allocate", block_info=_walker(allocate=False))

    def shared_list(func):
        info, loops = {}, []

        def walk(s):
            if isinstance(s, tir.Block):
                info[s.name] = {"loops": list(loops),
                                "spatial": [iv.extent for iv in s.iter_vars
                                            if iv.kind == "spatial"],
                                "reduce": [iv.extent for iv in s.iter_vars
                                           if iv.kind == "reduce"]}
            elif isinstance(s, tir.For):
                loops.append(s.extent)
                walk(s.body)
            elif isinstance(s, tir.SeqStmt):
                for c in s.seq:
                    walk(c)
            elif isinstance(s, tir.Allocate):
                walk(s.body)

        walk(func.body)
        return info

    _fails("tensor_ir.block_info", "leaked", block_info=shared_list)

    def iterators_as_loops(func):
        info = block_info(func)
        for v in info.values():
            v["loops"] = v["spatial"] + v["reduce"]
        return info

    _fails("tensor_ir.block_info", "iterator extents, not the loops",
           block_info=iterators_as_loops)

    def all_spatial(func):
        info = block_info(func)
        for v in info.values():
            v["spatial"], v["reduce"] = v["spatial"] + v["reduce"], []
        return info

    _fails("tensor_ir.block_info", "spatial iterators of extents [5, 7]",
           block_info=all_spatial)
    _fails("tensor_ir.block_info", "should return a dict", block_info=lambda f: [])
    _fails("tensor_ir.block_info", "keys 'loops', 'spatial' and 'reduce'",
           block_info=lambda f: {b: (v["loops"],) for b, v in block_info(f).items()})


def test_mean_var_in_one_pass_scores_zero():
    """E[x^2] - E[x]^2 matches numpy on small values and cancels to noise in float32 when
    the mean is far from 0 (issue 20)."""
    def mean_var(n, m):
        X = te.placeholder((n, m), "float32", name="X")
        j1 = te.reduce_axis((0, m), name="j")
        Mean = te.compute((n,), lambda i: te.sum(X[i, j1] / m, axis=j1), name="Mean")
        j2 = te.reduce_axis((0, m), name="j")
        Sq = te.compute((n,), lambda i: te.sum(X[i, j2] * X[i, j2] / m, axis=j2), name="Sq")
        Var = te.compute((n,), lambda i: Sq[i] - Mean[i] * Mean[i], name="Var")
        return te.create_prim_func([X, Mean, Var])

    _fails("tensor_ir.mean_var", "rows near 1000", "Var equals X.var", mean_var=mean_var)


# ---- issue 20: wrong answers written as a student who misread the idea ---------------------------
# Each scores 0, with a message that names the mistake. Those marked "scored before" got full
# marks until the check gained the hidden case or the observation that catches them.

def test_batch_matmul_relu_wrong_answers():
    ex = "tensor_ir.batch_matmul_relu"
    # one weight matrix for the whole batch, as a linear layer has
    _fails(ex, "multiplied with B[0]", "batch iterator", batch_matmul_relu=_bmm(
        product=lambda A, B, bb, i, j, r: A[bb, i, r] * B[0, r, j]))
    # B read as in x @ W.T (B[p, j, r]): only square shapes fit, and the cases are not square
    _fails(ex, "IndexError", "Check every index", batch_matmul_relu=_bmm(
        product=lambda A, B, bb, i, j, r: A[bb, i, r] * B[bb, j, r]))

    def one_stage(b, n, k, m):  # the relu around the sum, in one compute
        A = te.placeholder((b, n, k), "float32", name="A")
        B = te.placeholder((b, k, m), "float32", name="B")
        r = te.reduce_axis((0, k), name="r")
        D = te.compute((b, n, m), lambda p, i, j: te.max(
            te.sum(A[p, i, r] * B[p, r, j], axis=r), 0.0), name="D")
        return te.create_prim_func([A, B, D])

    _fails(ex, "must be the whole body", batch_matmul_relu=one_stage)


def test_conv2d_wrong_answers():
    ex = "tensor_ir.conv2d"
    # scored before: ceil instead of floor in the output size; the visible cases divided
    # exactly, the hidden (2, 2, 6, 7, 3, 3, 2, 2, 1) does not
    _fails(ex, "OH = (H + 2*pad - KH) // stride + 1 = 3 and OW = 4",
           conv2d_nchw=_conv(out_size=lambda H, W, KH, KW, s, p: (
               -(-(H + 2 * p - KH) // s) + 1, -(-(W + 2 * p - KW) // s) + 1)))
    # the padding condition bounds w by the height (right on square images)
    _fails(ex, "only the last output columns ([4, 5] of 6) are wrong", "against the width W",
           conv2d_nchw=_conv(inside=lambda h, w, H, W, p: _inside(h, w, H, H, p)))
    # the window's offset stepped by stride as well (a dilated window): a padding stage is
    # there, so the message points at the window's index, not at the padding
    msg = _fails(ex, "IndexError", "starts at row y*stride", conv2d_nchw=_conv(dilate=True))
    assert "zero-padded copy" not in msg
    # a padded copy whose condition only keeps h and w non-negative: it reads past X's end
    _fails(ex, "IndexError", "the padded copy reads X only where (h, w) lies inside",
           conv2d_nchw=_conv(inside=lambda h, w, H, W, p: te.all(h >= 0, w >= 0)))
    # Python's `and` between te conditions: te refuses to give an expression a truth value
    _fails(ex, "no truth value", conv2d_nchw=_conv(
        inside=lambda h, w, H, W, p: h >= p and h < H + p and w >= p and w < W + p))


def test_mean_var_wrong_answers():
    ex = "tensor_ir.mean_var"

    def var_of(term):
        return lambda X, M, j, n, m: te.compute((n,), lambda i: te.sum(
            term(X, M, i, j, n, m), axis=j), name="Var")

    _fails(ex, "divides by n = 3", mean_var=_mv(var_of(
        lambda X, M, i, j, n, m: _sq(X, M, j, i) / n)))
    _fails(ex, "IndexError", mean_var=_mv(var_of(  # Mean[j]: the column's index
        lambda X, M, i, j, n, m: (X[i, j] - M[j]) * (X[i, j] - M[j]) / m)))
    _fails(ex, "mean absolute deviation", mean_var=_mv(var_of(
        lambda X, M, i, j, n, m: te.abs(X[i, j] - M[i]) / m)))


def _walker(allocate=True, branches=("then_case", "else_case"), innermost_first=False):
    """The reference walk, with switches: whether it enters Allocate, which branches of an
    IfThenElse it follows, the order in which it reports the loops."""
    def block_info(func):
        info = {}

        def walk(s, loops):
            if isinstance(s, tir.Block):
                info[s.name] = {"loops": loops[::-1] if innermost_first else loops,
                                "spatial": [iv.extent for iv in s.iter_vars
                                            if iv.kind == "spatial"],
                                "reduce": [iv.extent for iv in s.iter_vars
                                           if iv.kind == "reduce"]}
            elif isinstance(s, tir.For):
                walk(s.body, loops + [s.extent])
            elif isinstance(s, tir.SeqStmt):
                for c in s.seq:
                    walk(c, loops)
            elif isinstance(s, tir.Allocate) and allocate:
                walk(s.body, loops)
            elif isinstance(s, tir.IfThenElse):
                for b in branches:
                    if getattr(s, b) is not None:
                        walk(getattr(s, b), loops)

        walk(func.body, [])
        return info

    return block_info


def test_block_info_wrong_answers():
    ex = "tensor_ir.block_info"
    assert _run(ex, block_info=_walker())["score"] == 2
    # scored before: no program had an IfThenElse, so a walk that skips it (or its else)
    # found every block
    _fails(ex, "if/else", "missing", "both branches of an IfThenElse",
           block_info=_walker(branches=()))
    _fails(ex, "block(s) ['shift'] are missing", block_info=_walker(branches=("then_case",)))
    _fails(ex, "should sit under loops of extents [5, 7, 3] (outermost first), you found "
               "[3, 7, 5]", block_info=_walker(innermost_first=True))

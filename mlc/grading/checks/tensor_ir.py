"""Unit 05, tensor IR: te programs checked against numpy, and a walk over a PrimFunc's IR.

The te exercises ask for a *function of the shapes* that returns a ``tir.PrimFunc``, so a
check can make programs for shapes the student never saw (rectangular, size 1, stride 2
with padding). Each program is built with ``tir.build`` for the "python" target (no
compilation; a read past the end of a buffer raises IndexError instead of reading
garbage) on arrays whose outputs start as NaN, compared with numpy, and finally built
once for "cpu" as well. When a result is wrong the check compares it with the results of
the usual mistakes (relu inside the sum, no padding, stride ignored, sample variance,
...) and says which one it looks like.
"""

from __future__ import annotations

import numpy as np

from ..registry import CheckFailed, exercise, call as _call, first_line as _first_line

NB = "05_tensor_ir"


# ---- shared helpers ------------------------------------------------------------------------

def _make(t, fn, name, args):
    """Call the student's ``fn(*args)`` and insist on a PrimFunc."""
    from ... import te, tir

    call = f"{name}({', '.join(map(repr, args))})"
    func = _call(call, fn, *args)
    if isinstance(func, (list, tuple)) and func and all(isinstance(x, te.Tensor) for x in func):
        raise CheckFailed(f"{call} returned a list of te tensors; pass them to "
                          "te.create_prim_func([...]) and return the PrimFunc it makes")
    if isinstance(func, te.Tensor):
        raise CheckFailed(f"{call} returned the te tensor {func.name}; return "
                          "te.create_prim_func([inputs..., outputs...]) instead")
    if not isinstance(func, tir.PrimFunc):
        raise CheckFailed(f"{call} should return a tir.PrimFunc (made by "
                          f"te.create_prim_func), got {type(func).__name__}")
    return func, call


def _check_params(func, call, expected):
    """``expected``: a list of (role, shape) in parameter order; all float32."""
    got = [(p.name, p.shape, p.dtype) for p in func.params]
    want = ", ".join(f"{role} {shape}" for role, shape in expected)
    if len(got) != len(expected):
        have = ", ".join(f"{n} {s}" for n, s, _ in got)
        raise CheckFailed(f"{call}: the PrimFunc should take {len(expected)} buffers, in this "
                          f"order: {want}; yours takes {len(got)}: {have}. Pass "
                          "create_prim_func the inputs and then the outputs, and nothing else")
    for pos, ((pname, pshape, pdtype), (role, shape)) in enumerate(
            zip(got, expected, strict=True)):
        if pshape != tuple(shape):
            raise CheckFailed(f"{call}: parameter {pos} ({pname}) should be {role} of shape "
                              f"{tuple(shape)}, but it has shape {pshape}")
        if pdtype != "float32":
            raise CheckFailed(f"{call}: parameter {pos} ({pname}) should be float32, "
                              f"got {pdtype}")


def _run(func, call, arrays, target="python"):
    """Build ``func`` for ``target`` and run it on ``arrays`` (outputs written in place)."""
    from ... import tir

    try:
        mod = tir.build(func, target)
    except tir.VerifyError as err:
        raise CheckFailed(f"{call}: the PrimFunc is not well formed: "
                          + " ".join(str(err).split())) from None
    try:
        mod(*arrays)
    except IndexError as err:
        raise CheckFailed(f"{call}: the program reads or writes outside a buffer "
                          f"(IndexError: {_first_line(err)}). Check every index against "
                          "the shape of the buffer it reads") from None
    except Exception as err:  # noqa: BLE001
        raise CheckFailed(f"{call}, built for {target!r}, raised {type(err).__name__}: "
                          f"{_first_line(err)}") from None


def _close(a, b, rtol=1e-4, atol=1e-5) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _blocks(func):
    from ...tir.functor import blocks_in

    return blocks_in(func.body)


def _reduce_extents(func) -> list:
    return sorted(iv.extent for b in _blocks(func) for iv in b.iter_vars if iv.kind == "reduce")


# ---- exercise 1: batch matmul + relu ---------------------------------------------------------

def _bmm_ref(A, B):
    return np.maximum(np.einsum("bik,bkj->bij", A.astype(np.float64), B.astype(np.float64)), 0)


@exercise("tensor_ir.batch_matmul_relu", points=2, notebook=NB,
          hint="one compute for the batched product, C[b, i, j] = te.sum(A[b, i, r] * "
               "B[b, r, j], axis=r) with r = te.reduce_axis((0, k)), then a second compute "
               "for the relu, te.max(C[b, i, j], 0.0); return "
               "te.create_prim_func([A, B, Out])")
def _(ns, t):
    fn = t.need(ns, "batch_matmul_relu")
    rng = np.random.default_rng(50)
    cases = [(1, 1, 1, 1), (2, 3, 4, 5), (3, 5, 2, 7), (1, 6, 9, 4)]
    for b, n, k, m in cases:
        func, call = _make(t, fn, "batch_matmul_relu", (b, n, k, m))
        _check_params(func, call, [("A", (b, n, k)), ("B", (b, k, m)), ("the output", (b, n, m))])
        A = rng.uniform(-1, 1, (b, n, k)).astype(np.float32)
        B = rng.uniform(-1, 1, (b, k, m)).astype(np.float32)
        C = np.full((b, n, m), np.nan, np.float32)
        try:
            _run(func, call, [A, B, C])
        except CheckFailed as err:
            red = _reduce_extents(func)
            if k not in red:  # the usual reason for a read past the end here
                raise CheckFailed(f"{err}. The reduction should run over the shared dimension "
                                  f"k = {k}, but the reduce axes of your program have extents "
                                  f"{red}") from None
            raise
        ref = _bmm_ref(A, B)
        if not _close(C, ref):
            _diagnose_bmm(func, call, A, B, C, k)
            t.close(C, ref, f"{call} equals relu(A @ B)", rtol=1e-4, atol=1e-5)
        t.passed.append(f"{call} equals relu(A @ B) on random inputs")
    # one compiled build: the same program through numba
    b, n, k, m = 2, 16, 12, 8
    func, call = _make(t, fn, "batch_matmul_relu", (b, n, k, m))
    A = rng.uniform(-1, 1, (b, n, k)).astype(np.float32)
    B = rng.uniform(-1, 1, (b, k, m)).astype(np.float32)
    C = np.full((b, n, m), np.nan, np.float32)
    _run(func, call, [A, B, C], target="cpu")
    t.close(C, _bmm_ref(A, B), f"{call} built for 'cpu' equals relu(A @ B)", rtol=1e-4,
            atol=1e-5)


def _diagnose_bmm(func, call, A, B, C, k):
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    plain = np.einsum("bik,bkj->bij", A64, B64)
    if np.isnan(C).any():
        raise CheckFailed(f"{call}: some outputs were never written (they are still NaN): "
                          "does the last compute cover the whole (b, n, m) output?")
    if _close(C, plain):
        raise CheckFailed(f"{call}: the result is A @ B without the relu: negative entries "
                          "must become 0 (te.max(x, 0.0) in a compute after the sum)")
    inside = np.maximum(A64[:, :, :, None] * B64[:, None, :, :], 0).sum(axis=2)
    if _close(C, inside):
        raise CheckFailed(f"{call}: you applied the relu to each product inside the sum "
                          "(sum of relu(a*b)); relu must apply to the finished sum, in a "
                          "compute stage of its own")
    red = _reduce_extents(func)
    if k not in red:
        raise CheckFailed(f"{call}: the reduction should run over the shared dimension "
                          f"k = {k}, but the reduce axes of your program have extents {red}")


# ---- exercise 2: conv2d, NCHW, stride and padding ---------------------------------------------

def conv2d_ref(X, Wt, stride, pad):
    """Cross-correlation as in deep learning frameworks: out[n, f, y, x] = sum over c, kh, kw
    of Xpad[n, c, y*stride + kh, x*stride + kw] * W[f, c, kh, kw]."""
    N, C, H, W = X.shape
    F, _, KH, KW = Wt.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    Xp = np.pad(X.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            patch = Xp[:, :, kh:kh + stride * (OH - 1) + 1:stride,
                       kw:kw + stride * (OW - 1) + 1:stride]
            out += np.einsum("nchw,fc->nfhw", patch, Wt[:, :, kh, kw].astype(np.float64))
    return out


def _out_size(H, W, KH, KW, stride, pad):
    return (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1


@exercise("tensor_ir.conv2d", points=3, notebook=NB,
          hint="first a padded copy, Xp = te.compute((N, C, H + 2*pad, W + 2*pad), lambda "
               "n, c, h, w: te.if_then_else(te.all(h >= pad, h < H + pad, w >= pad, w < W + "
               "pad), X[n, c, h - pad, w - pad], 0.0)); then three reduce axes rc, rh, rw and "
               "Out[n, f, y, x] = te.sum(Xp[n, rc, y*stride + rh, x*stride + rw] * "
               "Wt[f, rc, rh, rw], axis=[rc, rh, rw])")
def _(ns, t):
    fn = t.need(ns, "conv2d_nchw")
    rng = np.random.default_rng(51)
    # (N, C, H, W, F, KH, KW, stride, pad)
    cases = [(1, 1, 3, 3, 1, 1, 1, 1, 0), (1, 2, 5, 5, 3, 3, 3, 1, 0),
             (1, 2, 5, 6, 2, 3, 3, 1, 1), (2, 3, 7, 6, 2, 3, 2, 2, 1),
             (1, 2, 6, 5, 2, 2, 3, 2, 0), (1, 1, 4, 4, 1, 3, 3, 1, 2)]
    for case in cases:
        N, C, H, W, F, KH, KW, stride, pad = case
        OH, OW = _out_size(H, W, KH, KW, stride, pad)
        func, call = _make(t, fn, "conv2d_nchw", case)
        _check_params(func, call, [("the input X", (N, C, H, W)), ("the weight", (F, C, KH, KW)),
                                   (f"the output, (N, F, OH, OW) with OH = (H + 2*pad - KH) "
                                    f"// stride + 1 = {OH} and OW = {OW},", (N, F, OH, OW))])
        X = rng.uniform(-1, 1, (N, C, H, W)).astype(np.float32)
        Wt = rng.uniform(-1, 1, (F, C, KH, KW)).astype(np.float32)
        out = np.full((N, F, OH, OW), np.nan, np.float32)
        try:
            _run(func, call, [X, Wt, out])
        except CheckFailed as err:
            red = _reduce_extents(func)
            if "IndexError" in str(err) and red != sorted([C, KH, KW]):
                raise CheckFailed(f"{err}. The reduce axes should have extents "
                                  f"{sorted([C, KH, KW])} (C, KH, KW); yours have {red}") from None
            if pad and "IndexError" in str(err):
                raise CheckFailed(f"{err}. With pad = {pad} the windows at the border reach "
                                  "past the input: read a zero-padded copy of X (a compute "
                                  "stage with te.if_then_else) instead of X itself") from None
            raise
        ref = conv2d_ref(X, Wt, stride, pad)
        if not _close(out, ref):
            _diagnose_conv(func, call, X, Wt, out, ref, case)
            t.close(out, ref, f"{call} equals a numpy conv2d", rtol=1e-4, atol=1e-5)
        t.passed.append(f"{call} equals a numpy conv2d (stride {stride}, pad {pad})")
    case = (1, 3, 8, 8, 4, 3, 3, 1, 1)
    func, call = _make(t, fn, "conv2d_nchw", case)
    X = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    Wt = rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)
    out = np.full((1, 4, 8, 8), np.nan, np.float32)
    _run(func, call, [X, Wt, out], target="cpu")
    t.close(out, conv2d_ref(X, Wt, 1, 1), f"{call} built for 'cpu' equals a numpy conv2d",
            rtol=1e-4, atol=1e-5)


def _diagnose_conv(func, call, X, Wt, out, ref, case):
    N, C, H, W, F, KH, KW, stride, pad = case
    if np.isnan(out).any():
        raise CheckFailed(f"{call}: some outputs were never written (still NaN): does the "
                          "last compute cover the whole output?")
    bad = ~np.isclose(out, ref, rtol=1e-4, atol=1e-5)
    if pad:
        # output positions whose window lies wholly inside the unpadded input
        ys = np.arange(out.shape[2]) * stride - pad
        xs = np.arange(out.shape[3]) * stride - pad
        inner = ((ys >= 0) & (ys + KH <= H))[:, None] & ((xs >= 0) & (xs + KW <= W))[None, :]
        if inner.any() and not bad[:, :, inner].any():
            raise CheckFailed(f"{call}: the interior of the output is right, the border is "
                              f"wrong: with pad = {pad} a window that overhangs the input "
                              "must read zeros there (a negative index reads from the other "
                              "end of the array in Python; it does not give 0)")
    if stride > 1:
        # the program may slide the window by 1 instead of by stride
        full = conv2d_ref(X, Wt, 1, pad)
        if _close(out, full[:, :, :out.shape[2], :out.shape[3]]):
            raise CheckFailed(f"{call}: the window moves by 1 element instead of by "
                              f"stride = {stride}: output (y, x) reads the input from row "
                              "y*stride + kh and column x*stride + kw")
    red = _reduce_extents(func)
    if red != sorted([C, KH, KW]):
        raise CheckFailed(f"{call}: a conv2d sums over the input channels and the kernel "
                          f"window, so its reduce axes should have extents {sorted([C, KH, KW])}"
                          f" (C, KH, KW); yours have {red}")
    flipped = conv2d_ref(X, Wt[:, :, ::-1, ::-1].copy(), stride, pad)
    if _close(out, flipped):
        raise CheckFailed(f"{call}: the kernel is flipped (a true convolution); deep-learning "
                          "conv2d is a cross-correlation: Wt[f, c, kh, kw] multiplies "
                          "X[.., y*stride + kh - pad, x*stride + kw - pad]")


# ---- exercise 3: row mean and variance --------------------------------------------------------

@exercise("tensor_ir.mean_var", points=2, notebook=NB,
          hint="Mean[i] = te.sum(X[i, j] / m, axis=j); then a second reduction that reads "
               "Mean: Var[i] = te.sum((X[i, j] - Mean[i]) * (X[i, j] - Mean[i]) / m, axis=j) "
               "with a fresh reduce axis; return te.create_prim_func([X, Mean, Var])")
def _(ns, t):
    fn = t.need(ns, "mean_var")
    rng = np.random.default_rng(52)
    for n, m in [(3, 5), (1, 1), (6, 2), (4, 17)]:
        func, call = _make(t, fn, "mean_var", (n, m))
        _check_params(func, call, [("X", (n, m)), ("Mean", (n,)), ("Var", (n,))])
        X = rng.uniform(1, 3, (n, m)).astype(np.float32)  # a mean far from 0
        mean, var = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        _run(func, call, [X, mean, var])
        X64 = X.astype(np.float64)
        ref_mean, ref_var = X64.mean(axis=1), X64.var(axis=1)
        if not _close(mean, ref_mean):
            if np.isnan(mean).any():
                raise CheckFailed(f"{call}: Mean has entries that were never written (NaN)")
            if _close(mean, X64.sum(axis=1)):
                raise CheckFailed(f"{call}: Mean is the row sum: divide by m = {m}")
            t.close(mean, ref_mean, f"{call}: Mean equals X.mean(axis=1)", rtol=1e-4, atol=1e-5)
        t.passed.append(f"{call}: Mean equals X.mean(axis=1)")
        if not _close(var, ref_var):
            _diagnose_var(call, X64, var, m)
            t.close(var, ref_var, f"{call}: Var equals X.var(axis=1)", rtol=1e-4, atol=1e-5)
        t.passed.append(f"{call}: Var equals X.var(axis=1)")
    n, m = 8, 33
    func, call = _make(t, fn, "mean_var", (n, m))
    X = rng.uniform(1, 3, (n, m)).astype(np.float32)
    mean, var = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    _run(func, call, [X, mean, var], target="cpu")
    t.close(np.stack([mean, var]), np.stack([X.astype(np.float64).mean(1),
                                             X.astype(np.float64).var(1)]),
            f"{call} built for 'cpu' gives the mean and the variance", rtol=1e-4, atol=1e-5)


def _diagnose_var(call, X, var, m):
    if np.isnan(var).any():
        raise CheckFailed(f"{call}: Var has entries that were never written (NaN)")
    mean = X.mean(axis=1, keepdims=True)
    sq = ((X - mean) ** 2).sum(axis=1)
    if m > 1 and _close(var, sq / (m - 1)):
        raise CheckFailed(f"{call}: Var divides by m - 1 (the sample variance); the "
                          "exercise asks for the population variance, X.var(axis=1): "
                          f"divide by m = {m}")
    if _close(var, sq):
        raise CheckFailed(f"{call}: Var is the sum of squared deviations: divide by m = {m}")
    if _close(var, np.sqrt(sq / m)):
        raise CheckFailed(f"{call}: Var is the standard deviation; leave out the sqrt")
    if _close(var, (X ** 2).mean(axis=1)):
        raise CheckFailed(f"{call}: Var is the mean of X**2: subtract the row's mean from "
                          "each element before squaring")


# ---- exercise 4: reading IR ------------------------------------------------------------------

def _reference_info(func) -> dict:
    from ...tir.stmt import Block, For
    from ...tir.functor import stmt_children

    out = {}

    def walk(s, loops):
        if isinstance(s, Block):
            out[s.name] = {"loops": list(loops),
                           "spatial": [iv.extent for iv in s.iter_vars if iv.kind == "spatial"],
                           "reduce": [iv.extent for iv in s.iter_vars if iv.kind == "reduce"]}
            return
        if isinstance(s, For):
            loops = loops + [s.extent]
        for c in stmt_children(s):
            walk(c, loops)

    walk(func.body, [])
    return out


def _info_cases():
    """Hidden PrimFuncs: (description, func)."""
    from ... import te, tir
    from ...schedule.examples import matmul_hand_schedule

    def matmul(n, k, m):
        A = te.placeholder((n, k), name="A")
        B = te.placeholder((k, m), name="B")
        r = te.reduce_axis((0, k), name="k")
        C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
        return te.create_prim_func([A, B, C])

    def softmax(n, m):
        X = te.placeholder((n, m), name="X")
        r1, r2 = te.reduce_axis((0, m), name="j"), te.reduce_axis((0, m), name="j")
        M = te.compute((n,), lambda i: te.max(X[i, r1], axis=r1), name="row_max")
        E = te.compute((n, m), lambda i, j: te.exp(X[i, j] - M[i]), name="exp")
        S = te.compute((n,), lambda i: te.sum(E[i, r2], axis=r2), name="row_sum")
        Y = te.compute((n, m), lambda i, j: E[i, j] / S[i], name="softmax")
        return te.create_prim_func([X, Y])

    def conv(C, H, F, K, pad):
        X = te.placeholder((1, C, H, H), name="X")
        Wt = te.placeholder((F, C, K, K), name="W")
        P = te.compute((1, C, H + 2 * pad, H + 2 * pad), lambda n, c, h, w: te.if_then_else(
            te.all(h >= pad, h < H + pad, w >= pad, w < H + pad), X[n, c, h - pad, w - pad],
            0.0), name="pad")
        rc, rh, rw = (te.reduce_axis((0, e), name=s) for e, s in ((C, "rc"), (K, "rh"),
                                                                   (K, "rw")))
        O = te.compute((1, F, H, H), lambda n, f, y, x: te.sum(
            P[n, rc, y + rh, x + rw] * Wt[f, rc, rh, rw], axis=[rc, rh, rw]), name="conv")
        return te.create_prim_func([X, Wt, O])

    out = [("a 5x3 @ 3x7 matmul", matmul(5, 3, 7)),
           ("a 4x6 softmax (four loop nests, three intermediate buffers)", softmax(4, 6)),
           ("a conv2d with a padding stage", conv(2, 5, 3, 3, 1))]
    sch = tir.Schedule(matmul(8, 3, 7))
    i, j, k = sch.get_loops(sch.get_block("C"))
    i0, i1 = sch.split(i, factors=[None, 4])
    sch.reorder(j, i0, k, i1)
    out.append(("an 8x3 @ 3x7 matmul after split(i, [None, 4]) and reorder(j, i_0, k, i_1) "
                "(4 loops, 3 iterators)", sch.func))
    # tiles, a local accumulator written back under the tile loop, the init split off:
    # three blocks under one loop nest
    sch = matmul_hand_schedule(tir.Schedule(matmul(16, 8, 32)), tile_i=4, tile_j=8)
    out.append(("a tiled 16x8 @ 8x32 matmul with a local accumulator (three blocks under "
                "one loop nest)", sch.func))
    return out


def _norm_info(res, call):
    if not isinstance(res, dict):
        raise CheckFailed(f"{call} should return a dict (block name -> info), got "
                          f"{type(res).__name__}")
    out = {}
    for name, info in res.items():
        if not isinstance(info, dict) or set(info) != {"loops", "spatial", "reduce"}:
            raise CheckFailed(f"{call}: the entry of block {name!r} should be a dict with "
                              "the keys 'loops', 'spatial' and 'reduce', got "
                              f"{info!r}"[:300])
        try:
            out[name] = {key: [int(x) for x in info[key]] for key in info}
        except (TypeError, ValueError):
            raise CheckFailed(f"{call}: block {name!r}: each entry should be a list of int "
                              f"extents, got {info!r}"[:300]) from None
    return out


@exercise("tensor_ir.block_info", points=2, notebook=NB,
          hint="recurse over the statements with the list of enclosing loop extents as an "
               "argument: For -> recurse into .body with loops + [s.extent]; SeqStmt -> each "
               "of .seq; Allocate -> .body; Block -> record it (iter_vars: .kind and "
               ".extent). Build a new list for each loop instead of appending to a shared one")
def _(ns, t):
    fn = t.need(ns, "block_info")
    for desc, func in _info_cases():
        call = f"block_info on {desc}"
        before = func.script()
        res = _call(call, fn, func)
        got, want = _norm_info(res, call), _reference_info(func)
        missing = [b for b in want if b not in got]
        if missing:
            raise CheckFailed(f"{call}: block(s) {missing} are missing from your result (you "
                              f"found {list(got)}). Does your walk go through Allocate "
                              "(intermediate buffers) and every statement of a SeqStmt?")
        extra = [b for b in got if b not in want]
        if extra:
            raise CheckFailed(f"{call}: there is no block named {extra[0]!r}; the blocks are "
                              f"{list(want)}")
        for b, w in want.items():
            g = got[b]
            if g["loops"] != w["loops"]:
                more = ""
                if len(g["loops"]) > len(w["loops"]):
                    more = (": loops of an earlier loop nest leaked into this one? Pass a new "
                            "list (loops + [extent]) down the recursion rather than appending "
                            "to a shared one")
                elif g["loops"] == w["spatial"] + w["reduce"]:
                    more = (": those are the block's iterator extents, not the loops around "
                            "it (after a split they differ)")
                raise CheckFailed(f"{call}: block {b!r} should sit under loops of extents "
                                  f"{w['loops']} (outermost first), you found {g['loops']}{more}")
            for key in ("spatial", "reduce"):
                if g[key] != w[key]:
                    raise CheckFailed(f"{call}: block {b!r} has {key} iterators of extents "
                                      f"{w[key]} (in the block's order), you found {g[key]}: "
                                      "read iter_vars, each with .kind and .extent")
        if func.script() != before:
            raise CheckFailed(f"{call} changed the PrimFunc it was given; only read it")
        t.passed.append(f"{call}: {len(want)} block(s), loops and iterators right")

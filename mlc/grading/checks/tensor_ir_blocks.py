"""Unit 05, tensor IR (exercises 3-4): two reductions in a row, and a walk over the IR.

``mean_var(n, m)`` is graded as the te exercises of :mod:`.tensor_ir` are (a PrimFunc made
for hidden shapes, run on the grader's arrays), with rows far from 0 where the one-pass
formula cancels in float32. ``block_info(func)`` reads a PrimFunc, which cannot travel:
a case names a program (a te program with several stages, one after a schedule, or one
with if/else written by hand) and its shapes; the same library code builds it in both
processes (:func:`info_func`). ``observe`` (in the worker) passes it to the student's
``block_info`` and returns the result as plain data, with the program's script before
and after the call; ``judge`` (in the grader) builds the program again, walks it with
its own reference and compares, block by block, and checks the program was only read.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need
from .tensor_ir import NB, TOL, _close, _observe_prim, _outputs, _te_cases

_DEPTH = 8


# ---- exercise 3: row mean and variance ---------------------------------------------------

@exercise("tensor_ir.mean_var", points=2, notebook=NB, needs=("mean_var",),
          hint="two reductions over each row, each with a reduce axis of its own; the second "
               "one reads the output of the first. Compare your outputs with numpy's "
               "X.mean(axis=1) and X.var(axis=1) on a small example")
class _MeanVar(Check):
    def cases(self):
        rng = np.random.default_rng(52)
        out = _te_cases(rng, "mean_var", [(3, 5), (1, 1), (6, 2), (4, 17)], (8, 33),
                        # a mean far from 0
                        lambda rng, n, m: [rng.uniform(1, 3, (n, m)).astype(np.float32)],
                        lambda n, m: [(n,), (n,)])
        # rows near 1000 with a spread of 1: in float32, sum(x^2)/m - mean^2 subtracts two
        # numbers near 10^6 and keeps only noise; the two-pass formula stays exact
        far = _te_cases(rng, "mean_var", [(4, 64)], (4, 64), lambda rng, n, m: [
            (1000 + rng.uniform(-1, 1, (n, m))).astype(np.float32)], lambda n, m: [(n,), (n,)])
        for c in far:
            c["what"] += " on rows near 1000 with a spread of 1 (float32)"
        return out + far

    def observe(self, ns, case):
        return _observe_prim(ns, "mean_var", case)

    def judge(self, case, obs, t):
        n, m = case["args"]
        c, what = case["call"], case["what"]
        (mean, var), _ = _outputs(case, obs, [("X", (n, m)), ("Mean", (n,)), ("Var", (n,))])
        X64 = case["inputs"][0].astype(np.float64)
        ref_mean, ref_var = X64.mean(axis=1), X64.var(axis=1)
        if not _close(mean, ref_mean):
            if _close(mean, X64.sum(axis=1)):
                raise CheckFailed(f"{c}: Mean is the row sum: divide by m = {m}")
        t.close(mean, ref_mean, f"{what}: Mean equals X.mean(axis=1)", **TOL)
        if not _close(var, ref_var):
            _diagnose_var(c, X64, var, m)
        t.close(var, ref_var, f"{what}: Var equals X.var(axis=1)", **TOL)


def _diagnose_var(c, X, var, m):
    mean = X.mean(axis=1, keepdims=True)
    sq = ((X - mean) ** 2).sum(axis=1)
    if m > 1 and _close(var, sq / (m - 1)):
        raise CheckFailed(f"{c}: Var divides by m - 1 (the sample variance); the "
                          "exercise asks for the population variance, X.var(axis=1): "
                          f"divide by m = {m}")
    if _close(var, sq):
        raise CheckFailed(f"{c}: Var is the sum of squared deviations: divide by m = {m}")
    if _close(var, sq / len(X)):
        raise CheckFailed(f"{c}: Var divides by n = {len(X)}, the number of rows; a row's "
                          f"variance divides by its length, m = {m}")
    if _close(var, np.abs(X - mean).mean(axis=1)):
        raise CheckFailed(f"{c}: Var is the mean absolute deviation: square the deviations")
    if _close(var, np.sqrt(sq / m)):
        raise CheckFailed(f"{c}: Var is the standard deviation; leave out the sqrt")
    if _close(var, (X ** 2).mean(axis=1)):
        raise CheckFailed(f"{c}: Var is the mean of X**2: subtract the row's mean from "
                          "each element before squaring")


# ---- exercise 4: block_info ----------------------------------------------------------------


def _matmul(n, k, m):
    from ... import te

    A = te.placeholder((n, k), name="A")
    B = te.placeholder((k, m), name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    return te.create_prim_func([A, B, C])


def _softmax(n, m):
    from ... import te

    X = te.placeholder((n, m), name="X")
    r1, r2 = te.reduce_axis((0, m), name="j"), te.reduce_axis((0, m), name="j")
    M = te.compute((n,), lambda i: te.max(X[i, r1], axis=r1), name="row_max")
    E = te.compute((n, m), lambda i, j: te.exp(X[i, j] - M[i]), name="exp")
    S = te.compute((n,), lambda i: te.sum(E[i, r2], axis=r2), name="row_sum")
    Y = te.compute((n, m), lambda i, j: E[i, j] / S[i], name="softmax")
    return te.create_prim_func([X, Y])


def _conv(C, H, F, K, pad):
    from ... import te

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


def _matmul_split(n, k, m):
    from ... import tir

    sch = tir.Schedule(_matmul(n, k, m))
    i, j, kk = sch.get_loops(sch.get_block("C"))
    i0, i1 = sch.split(i, factors=[None, 4])
    sch.reorder(j, i0, kk, i1)
    return sch.func


def _matmul_tiled(n, k, m):
    from ... import tir
    from ...schedule.examples import matmul_hand_schedule

    # tiles, a local accumulator written back under the tile loop, the init split off
    return matmul_hand_schedule(tir.Schedule(_matmul(n, k, m)), tile_i=4, tile_j=8).func


def _branches(n, m, h):
    """Rows above ``h`` scaled, the others shifted (an if/else inside loop i), then every
    other row of Z copied (an if with no else): te never makes an IfThenElse, so this one
    is written by hand, as a lowering pass would."""
    from ... import tir

    X, Y, Z = (tir.Buffer(name, (n, m)) for name in ("X", "Y", "Z"))

    def nest(name, out, i, value):  # for j in range(m): out[i, j] = value(X[i, j])
        j, vi, vj = tir.Var("j"), tir.Var("vi"), tir.Var("vj")
        return tir.For(j, m, tir.Block(name, [tir.IterVar(vi, n), tir.IterVar(vj, m)], [i, j],
                                       tir.BufferStore(out, value(X[vi, vj]), [vi, vj])))

    i, i2 = tir.Var("i"), tir.Var("i")
    both = tir.For(i, n, tir.IfThenElse(i < h, nest("scale", Y, i, lambda x: x * 2.0),
                                        nest("shift", Y, i, lambda x: x + 1.0)))
    only = tir.For(i2, n, tir.IfThenElse(i2 % 2 == 0, nest("even_rows", Z, i2, lambda x: x)))
    return tir.PrimFunc([X, Y, Z], tir.seq(both, only))


_PROGRAMS = {"matmul": _matmul, "softmax": _softmax, "conv": _conv,
             "matmul_split": _matmul_split, "matmul_tiled": _matmul_tiled,
             "branches": _branches}


def info_func(case: dict):
    """The PrimFunc a case names (library code, run in the worker and in the grader)."""
    return _PROGRAMS[case["program"]](*case["args"])


def reference_info(func) -> dict:
    from ...tir.functor import stmt_children
    from ...tir.stmt import Block, For

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


# ---- in the worker: the student's result as data -----------------------------------------------

def _data(v, depth: int = 0):
    """``v`` as plain data: containers kept, int-like objects as ints, anything else as a
    short description (the judge says what was expected instead)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if depth >= _DEPTH:
        return "<nested too deeply>"
    if isinstance(v, dict):
        return {k if isinstance(k, str) else repr(k): _data(x, depth + 1) for k, x in v.items()}
    if isinstance(v, tuple):
        return tuple(_data(x, depth + 1) for x in v)
    if isinstance(v, list):
        return [_data(x, depth + 1) for x in v]
    if hasattr(v, "__index__"):
        try:
            return int(v.__index__())
        except Exception:  # noqa: BLE001 - the student's object may raise anything
            pass
    return f"<{type(v).__name__}: {repr(v)[:100]}>"


# ---- in the grader -----------------------------------------------------------------------------

def _norm_info(res, kind, c):
    if not isinstance(res, dict):
        raise CheckFailed(f"{c} should return a dict (block name -> info), got "
                          f"{kind if isinstance(kind, str) else type(res).__name__}"[:300])
    out = {}
    for name, info in res.items():
        if not isinstance(info, dict) or set(info) != {"loops", "spatial", "reduce"}:
            raise CheckFailed(f"{c}: the entry of block {name!r} should be a dict with "
                              "the keys 'loops', 'spatial' and 'reduce', got "
                              f"{info!r}"[:300])
        try:
            if not all(isinstance(info[key], (list, tuple)) for key in info):
                raise TypeError("not a list")
            out[name] = {key: [int(x) for x in info[key]] for key in info}
        except (TypeError, ValueError, OverflowError):
            raise CheckFailed(f"{c}: block {name!r}: each entry should be a list of int "
                              f"extents, got {info!r}"[:300]) from None
    return out


@exercise("tensor_ir.block_info", points=2, notebook=NB, needs=("block_info",),
          hint="a recursive walk over the statement tree that carries the extents of the "
               "loops around the statement it is at; walk into every kind of statement that "
               "has children (the exercise lists them), and give each nested call a loop "
               "list of its own. A block's iterators say their kind and extent")
class _BlockInfo(Check):
    def cases(self):
        return [
            {"what": "block_info on a 5x3 @ 3x7 matmul", "program": "matmul",
             "args": [5, 3, 7]},
            {"what": "block_info on a 4x6 softmax (four loop nests, three intermediate "
                     "buffers)", "program": "softmax", "args": [4, 6]},
            {"what": "block_info on a conv2d with a padding stage", "program": "conv",
             "args": [2, 5, 3, 3, 1]},
            {"what": "block_info on an 8x3 @ 3x7 matmul after split(i, [None, 4]) and "
                     "reorder(j, i_0, k, i_1) (4 loops, 3 iterators)",
             "program": "matmul_split", "args": [8, 3, 7]},
            {"what": "block_info on a tiled 16x8 @ 8x32 matmul with a local accumulator "
                     "(three blocks under one loop nest)", "program": "matmul_tiled",
             "args": [16, 8, 32]},
            {"what": "block_info on a program with an if/else inside a loop and an if "
                     "without else (tir.IfThenElse, blocks in both branches)",
             "program": "branches", "args": [6, 5, 2]},
        ]

    def observe(self, ns, case):
        fn = need(ns, "block_info")
        func = info_func(case)
        before = func.script()
        res = call(case["what"], fn, func)
        return {"type": type(res).__name__, "result": _data(res), "before": before,
                "after": func.script()}

    def judge(self, case, obs, t):
        c = case["what"]
        func = info_func(case)
        script = func.script()
        if not isinstance(obs, dict):
            raise CheckFailed(f"{c}: malformed observation")
        if obs.get("before") != script:
            raise CheckFailed(f"{c}: the program the check built next to your code is not "
                              "the grader's: was mlc.te or mlc.tir changed in the notebook?")
        got, want = _norm_info(obs.get("result"), obs.get("type"), c), reference_info(func)
        missing = [b for b in want if b not in got]
        if missing:
            raise CheckFailed(f"{c}: block(s) {missing} are missing from your result (you "
                              f"found {list(got)})"[:400] + ". Does your walk go through "
                              "Allocate (intermediate buffers), every statement of a "
                              "SeqStmt and both branches of an IfThenElse?")
        extra = [b for b in got if b not in want]
        if extra:
            raise CheckFailed(f"{c}: there is no block named {extra[0]!r}"[:300]
                              + f"; the blocks are {list(want)}")
        for b, w in want.items():
            g = got[b]
            if g["loops"] != w["loops"]:
                more = ""
                if len(g["loops"]) > len(w["loops"]):
                    more = (": loops of an earlier loop nest leaked into this one? Give each "
                            "recursive call a list of its own rather than appending to one "
                            "shared list")
                elif g["loops"] == w["spatial"] + w["reduce"]:
                    more = (": those are the block's iterator extents, not the loops around "
                            "it (after a split they differ)")
                raise CheckFailed(f"{c}: block {b!r} should sit under loops of extents "
                                  f"{w['loops']} (outermost first), you found "
                                  f"{g['loops']}"[:500] + more)
            for key in ("spatial", "reduce"):
                if g[key] != w[key]:
                    raise CheckFailed(f"{c}: block {b!r} has {key} iterators of extents "
                                      f"{w[key]} (in the block's order), you found "
                                      f"{g[key]}"[:500] + ": read iter_vars, each with .kind "
                                      "and .extent")
        t.true(obs.get("after") == script, f"{c}: the PrimFunc is left unchanged",
               "block_info changed the PrimFunc it was given; only read it")
        t.passed.append(f"{c}: {len(want)} block(s), loops and iterators right")

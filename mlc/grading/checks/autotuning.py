"""Unit 07, auto-tuning (1 of 2): a cost-model feature and random search.

Nothing here times anything: a tuner's pieces are graded on hidden inputs whose right
answer is exact. ``access_stride`` runs on the index expressions of scheduled programs
(split, fused, transposed, strided, 3-d) against the library's own feature code;
``random_search`` runs on a fake search space with a deterministic fake cost, recording
every candidate it is asked to measure. ``pairwise_accuracy`` and ``mutate_tile`` are in
:mod:`.autotuning_rank`.

The split (see :mod:`mlc.grading.registry`): buffers and loop variables cannot travel, so
both sides build the same hidden programs with the library; the worker calls
``access_stride`` on every (access, loop variable) pair of one program and returns the
numbers, the grader computes the strides itself (``mlc.tune.features``). The fake space
and its ``measure`` live in the worker, which reports what ``random_search`` returned and
the decisions it measured, in order; the grader recomputes their fake costs.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need

NB = "07_autotuning"


# ---- plain data from the student's values (in the worker) -----------------------------------

def _repr(value, limit: int = 160) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - the student's object may fail to print
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(value, depth: int = 0):
    """``value`` if it can travel (numbers, strings, lists, tuples, numeric arrays), else
    ``{"unsendable": type name, "repr": ...}`` in its place."""
    if value is None or isinstance(value, (bool, int, float, str, np.bool_, np.integer,
                                           np.floating)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    if depth < 8 and isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if depth < 8 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    return {"unsendable": type(value).__name__, "repr": _repr(value)}


def same(a, b) -> bool:
    """``a == b`` for values from the worker, which may compare strangely (arrays)."""
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - a forged observation may be anything
        return False


def shown(value) -> str:
    """How a message shows an observed value (the worker's repr of one that could not
    travel)."""
    if isinstance(value, dict) and set(value) == {"unsendable", "repr"}:
        return str(value["repr"])
    return _repr(value)


# ---- access_stride ---------------------------------------------------------------------------

def _stride_programs():
    """Scheduled programs whose index expressions cover what a tuner meets: plain loop
    variables, splits (``i_0 * 4 + i_1``), a fused loop (``f // 16`` and ``f % 16``: not
    affine in ``f``), a transposed read, a strided read (``2 * i``), a sliding window
    (``i + r``), a 3-d buffer, and a variable that does not occur at all."""
    from ... import te, tir

    out = []

    def mm(n, k, m, transpose_b=False):
        A = te.placeholder((n, k), "float32", name="A")
        B = te.placeholder((m, k) if transpose_b else (k, m), "float32", name="B")
        r = te.reduce_axis((0, k), name="k")
        C = te.compute((n, m), (lambda i, j: te.sum(A[i, r] * B[j, r], axis=r))
                       if transpose_b else (lambda i, j: te.sum(A[i, r] * B[r, j], axis=r)),
                       name="C")
        return te.create_prim_func([A, B, C])

    out.append(("matmul 8x12x16, unscheduled", mm(8, 12, 16)))
    sch = tir.Schedule(mm(24, 16, 32))
    i, j, k = sch.get_loops(sch.get_block("C"))
    i0, i1 = sch.split(i, factors=[None, 4])
    j0, j1 = sch.split(j, factors=[4, None])
    sch.reorder(i0, j0, k, i1, j1)
    out.append(("matmul 24x16x32, i and j split, k outside the inner tile", sch.func))
    sch = tir.Schedule(mm(16, 8, 16))
    i, j, k = sch.get_loops(sch.get_block("C"))
    sch.fuse(i, j)
    out.append(("matmul 16x8x16 with i and j fused", sch.func))
    out.append(("matmul with B transposed (C = A @ B.T)", mm(6, 10, 4, transpose_b=True)))
    sch = tir.Schedule(mm(12, 20, 8, transpose_b=True))
    i, j, k = sch.get_loops(sch.get_block("C"))
    k0, k1 = sch.split(k, factors=[None, 5])
    sch.reorder(k0, i, j, k1)
    out.append(("B transposed, k split into 4 x 5 and k_0 outermost", sch.func))

    X = te.placeholder((40, 9), "float32", name="X")
    Y = te.compute((20, 9), lambda i, c: X[2 * i, c] + X[2 * i + 1, c], name="Y")
    out.append(("Y[i, c] = X[2i, c] + X[2i + 1, c]", te.create_prim_func([X, Y])))
    W = te.placeholder((3,), "float32", name="W")
    S = te.placeholder((18,), "float32", name="S")
    r = te.reduce_axis((0, 3), name="r")
    O = te.compute((16,), lambda i: te.sum(S[i + r] * W[r], axis=r), name="O")
    out.append(("1-d convolution O[i] = sum_r S[i + r] * W[r]", te.create_prim_func([S, W, O])))
    # read backwards: the address falls by 9 per step of i; a stride is a distance
    V = te.placeholder((8, 9), "float32", name="V")
    F = te.compute((8, 9), lambda i, c: V[7 - i, 8 - c] * 2.0, name="F")
    out.append(("F[i, c] = 2 V[7 - i, 8 - c] (read backwards)", te.create_prim_func([V, F])))
    P = te.placeholder((3, 5, 7), "float32", name="P")
    Q = te.placeholder((3, 7, 6), "float32", name="Q")
    r = te.reduce_axis((0, 7), name="k")
    R = te.compute((3, 5, 6), lambda b, i, j: te.sum(P[b, i, r] * Q[b, r, j], axis=r),
                   name="R")
    sch = tir.Schedule(te.create_prim_func([P, Q, R]))
    b, i, j, k = sch.get_loops(sch.get_block("R"))
    sch.reorder(b, k, i, j)
    out.append(("batch matmul 3x5x7x6 (3-d buffers), loops b, k, i, j", sch.func))
    return out


def _pairs(label, func):
    """``(what, buffer, indices, var)`` for every access of the program's main block and
    every loop variable, and two variables bound by no loop (every stride is 0): one named
    ``unused`` and one named as the first loop's variable (variables are compared by
    identity: a name says nothing)."""
    from ...tir import expr_to_str
    from ...tir.expr import Var
    from ...tune.features import _accesses, find_block
    from ...tune.space import main_block

    blk, loops = find_block(func, main_block(func).name)
    stranger = Var(loops[0].loop_var.name)
    for var in [lp.loop_var for lp in loops] + [Var("unused"), stranger]:
        named = (f"a new Var({var.name!r}) that no loop binds" if var is stranger
                 else var.name)
        for buf, idx in _accesses(blk):
            text = f"{buf.name}[{', '.join(expr_to_str(i) for i in idx)}]"
            yield (f"access_stride({text}, {named}) with {buf.name} of shape {buf.shape}, "
                   f"in {label}", buf, list(idx), var)


def _stride_cases():
    """``(label, buffer, indices, var, expected stride)`` of every hidden pair."""
    from ...tune.features import _stride

    for label, func in _stride_programs():
        for _, buf, idx, var in _pairs(label, func):
            yield label, buf, idx, var, _stride(buf, idx, var)


def _number(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value
    return {"unsendable": type(value).__name__, "repr": _repr(value)}


@exercise("autotuning.access_stride", points=3, notebook=NB, needs=("access_stride",),
          hint="a row-major address is a sum over the dimensions of index x (the product of "
               "the sizes after that dimension): ask how each index moves when the variable "
               "grows by one and the others stay put, compare variables by identity, and "
               "think about what a variable inside a floor division or modulo means for a "
               "fixed step (the exercise's text, and lecture 07, section 5)")
class _AccessStride(Check):
    def cases(self):
        from ...tune.features import _stride

        out = []
        for p, (label, func) in enumerate(_stride_programs()):
            expected = [[what, _stride(buf, idx, var)] for what, buf, idx, var in
                        _pairs(label, func)]
            out.append({"what": label, "program": p, "_expected": expected})
        return out

    def observe(self, ns, case):
        fn = need(ns, "access_stride")
        label, func = _stride_programs()[case["program"]]
        return [_number(call(what, fn, buf, idx, var)) for what, buf, idx, var in
                _pairs(label, func)]

    def judge(self, case, obs, t):
        expected = case["_expected"]
        if not (isinstance(obs, list) and len(obs) == len(expected)):
            t.fail(f"{case['what']}: expected {len(expected)} strides from the worker, got "
                   f"{shown(obs)}")
        for (what, want), got in zip(expected, obs, strict=True):
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                t.fail(f"{what}: expected a number, got {shown(got)}")
            if math.isinf(want):
                t.true(math.isinf(got) and got > 0, f"{what} is math.inf",
                       f"got {got!r}; the variable occurs inside a floor division or "
                       "modulo, so the address does not move by a fixed step: the stride is "
                       "math.inf")
            elif got != want:
                t.fail(f"{what}: expected {want}, got {got!r}")
        t.passed.append(f"{case['what']}: all {len(expected)} (access, loop variable) pairs "
                        "give the expected stride")


# ---- random_search ---------------------------------------------------------------------------

MAX_MEASURE = 5000


class _FakeSchedule:
    def __init__(self, decisions):
        self.decisions = decisions


class _FakeSpace:
    """A tiny search space (in the worker): decisions ``[tile, order]`` drawn from a list
    of candidates; the ones in ``rejected`` make the template raise ScheduleError (as a
    real template does on an illegal draw)."""

    def __init__(self, candidates, rejected=()):
        from ...schedule import ScheduleError

        self.error = ScheduleError
        self.candidates = [[list(tl), o] for tl, o in candidates]
        self.rejected = {json.dumps([list(tl), o]) for tl, o in rejected}
        self.draws = 0

    def sample(self, rng):
        if not isinstance(rng, random.Random):
            raise CheckFailed(f"space.sample(rng) must be given a random.Random, got "
                              f"{type(rng).__name__}: make one with random.Random(seed)")
        self.draws += 1
        tile, order = self.candidates[rng.randrange(len(self.candidates))]
        d = [list(tile), order]
        if json.dumps(d) in self.rejected:
            raise self.error(f"template rejected the draw {d}")
        return _FakeSchedule([list(tile), order]), d


def _fake_cost(decisions):
    """A deterministic 'run time' in seconds; some candidates 'fail' (inf)."""
    (a, b), order = decisions
    if (a + b + order) % 7 == 0:
        return math.inf  # a candidate that crashed or computed a wrong result
    return 1e-3 * (1 + abs(a - 4) + 0.5 * abs(b - 8) / 8 + 0.3 * ((order * 5 + a) % 3)
                   + 0.01 * ((a * 13 + b * 7 + order * 3) % 17))


def _run_search(fn, case, run):
    space, calls = _FakeSpace(case["candidates"], case["rejected"]), []

    def measure(sch):
        if not isinstance(sch, _FakeSchedule):
            raise CheckFailed(f"{run['what']}: measure() must be given the schedule that "
                              f"space.sample returned, got {type(sch).__name__}")
        if len(calls) >= MAX_MEASURE:
            raise CheckFailed(f"{run['what']}: measure() was called more than "
                              f"{MAX_MEASURE} times")
        calls.append(sch.decisions)
        return _fake_cost(sch.decisions)

    state = random.getstate()
    got = call(run["what"], fn, space, measure, run["trials"], seed=run["seed"])
    return {"result": plain(got), "calls": calls, "draws": space.draws,
            "global_random": random.getstate() != state}


def _pairs_of(extent):
    return [[d, extent // d] for d in range(1, extent + 1) if extent % d == 0]


def _search_run(case, obs, i):
    """Run ``i`` of an observation: (best, decisions, calls), every call a candidate."""
    what = case["runs"][i]["what"]
    runs = obs if isinstance(obs, list) and len(obs) == len(case["runs"]) else None
    run = runs[i] if runs and isinstance(runs[i], dict) else None
    if run is None or not isinstance(run.get("calls"), list):
        raise CheckFailed(f"{what}: malformed observation")
    if run.get("global_random") is not False:
        raise CheckFailed(f"{what} used the global random module (its state changed): "
                          "draw only from the generator made from the seed")
    got = run.get("result")
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckFailed(f"{what}: expected a tuple (best_seconds, best_decisions), got "
                          f"{shown(got)}")
    for c in run["calls"]:
        if not any(same(c, d) for d in case["candidates"]):
            raise CheckFailed(f"{what}: measure() was given decisions {shown(c)}, which "
                              "space.sample never returns")
    return got[0], got[1], run["calls"]


def _key(decisions) -> str:
    return json.dumps(decisions)  # only called on candidates: plain lists of ints


@exercise("autotuning.random_search", points=3, notebook=NB, needs=("random_search",),
          hint="every rule in the exercise's list is one case here: a single generator made "
               "from the seed (and nothing else random), rejected draws cost no trial, no "
               "decisions measured twice, a cap on draws so that a small space cannot keep "
               "you drawing forever, and the fastest finite time wins (lecture 07, section 4)")
class _RandomSearch(Check):
    def cases(self):
        mixed = [[tl, o] for tl in _pairs_of(32) for o in (0, 1, 2)]  # 18 candidates
        rejected = [[[4, 8], 1], [[1, 32], 0]]
        what = "random_search(space, measure, trials=8, seed=0) on a space of 18 candidates"
        failing = [c for c in [[[3, 1], o] for o in range(4)] if math.isinf(_fake_cost(c))]
        return [
            {"what": what, "candidates": mixed, "rejected": rejected,
             "runs": [{"what": what, "trials": 8, "seed": 0},
                      {"what": what, "trials": 8, "seed": 0},
                      {"what": what.replace("seed=0", "seed=1"), "trials": 8, "seed": 1}]},
            {"what": "random_search(space, measure, trials=40, seed=3) on a space of 16 legal "
                     "candidates", "candidates": mixed, "rejected": rejected, "exhaust": True,
             "runs": [{"what": "random_search(space, measure, trials=40, seed=3) on a space "
                               "of 16 legal candidates", "trials": 40, "seed": 3}]},
            {"what": "random_search on a space whose only candidate fails (its time is inf)",
             "candidates": failing, "rejected": [], "fails": True,
             "runs": [{"what": "random_search on a space whose only candidate fails (its "
                               "time is inf)", "trials": 5, "seed": 0}]},
        ]

    def observe(self, ns, case):
        fn = need(ns, "random_search")
        return [_run_search(fn, case, run) for run in case["runs"]]

    def judge(self, case, obs, t):
        what = case["what"]
        legal = [c for c in case["candidates"] if c not in case["rejected"]]
        best, dec, calls = _search_run(case, obs, 0)
        if case.get("fails"):
            t.true(len(calls) == 1 and isinstance(best, float) and math.isinf(best)
                   and dec is None, f"{what} measures it once and returns (inf, None)",
                   f"got ({shown(best)}, {shown(dec)}) after {len(calls)} measurements")
            return
        if case.get("exhaust"):
            t.equal(sorted(_key(c) for c in calls), sorted(_key(c) for c in legal),
                    f"{what} measures every legal candidate exactly once and stops")
            trials = case["runs"][0]["trials"]
            t.equal(obs[0].get("draws"), 100 * trials,
                    f"{what} stops after 100 * trials = {100 * trials} draws (space.sample "
                    f"calls, rejected ones included)")
            opt = min((c for c in legal if math.isfinite(_fake_cost(c))), key=_fake_cost)
            t.true(same(dec, opt) and same(best, _fake_cost(opt)),
                   f"{what} finds the global optimum {opt}", f"got ({shown(best)}, "
                   f"{shown(dec)})")
            return
        t.equal(len(calls), 8, f"{what} measures 8 candidates")
        keys = [_key(c) for c in calls]
        t.true(len(set(keys)) == len(keys), f"{what} never measures a candidate twice",
               f"measured {calls}")
        t.true(all(c in legal for c in calls), f"{what} measures no rejected draw",
               "a draw the template rejects raises ScheduleError: it costs no trial")
        times = [_fake_cost(c) for c in calls]
        t.equal(best, min(times), f"{what} returns the smallest time it measured")
        t.true(same(dec, calls[int(np.argmin(times))]),
               f"{what} returns the decisions of the fastest candidate",
               f"got {shown(dec)}, the fastest measured was {calls[int(np.argmin(times))]}")
        _, _, calls2 = _search_run(case, obs, 1)
        t.true(calls2 == calls, "a second run with seed=0 measures the same candidates in the "
               "same order", "draw only from random.Random(seed), never from the global "
               "random module")
        _, _, calls3 = _search_run(case, obs, 2)
        t.true(calls3 != calls, "seed=1 measures other candidates than seed=0",
               "the generator must depend on the seed, and space.sample must draw from it")

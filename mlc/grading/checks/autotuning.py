"""Unit 07, auto-tuning: a cost-model feature, random search, ranking, mutation.

Nothing here times anything: a tuner's pieces are graded on hidden inputs whose right
answer is exact. ``access_stride`` runs on the index expressions of scheduled programs
(split, fused, transposed, strided, 3-d) against the library's own feature code;
``random_search`` runs on a fake search space with a deterministic fake cost, recording
every candidate it is asked to measure; ``pairwise_accuracy`` is compared with a brute
force count on hidden data with ties; ``mutate_tile`` is checked by its laws (product,
length, one prime factor moved, input untouched) and by reaching every neighbour.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np

from ..registry import CheckFailed, exercise, call as _call

NB = "07_autotuning"


# --------------------------------------------------------------------- access_stride

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


def _block_name(func):
    from ...tune.space import main_block

    return main_block(func).name


def _stride_cases():
    from ...tir.expr import Var
    from ...tune.features import _accesses, _stride, find_block

    for label, func in _stride_programs():
        blk, loops = find_block(func, _block_name(func))
        accesses = _accesses(blk)
        # a variable bound by no loop: every stride is 0
        for var in [lp.loop_var for lp in loops] + [Var("unused")]:
            for buf, idx in accesses:
                yield label, buf, list(idx), var, _stride(buf, idx, var)


def _show(buf, idx):
    from ...tir import expr_to_str

    return f"{buf.name}[{', '.join(expr_to_str(i) for i in idx)}]"


@exercise("autotuning.access_stride", points=3, notebook=NB,
          hint="row-major strides: the last dimension has stride 1, dimension d has the "
               "product of the shape after d. For each index, tir.arith.linear(index).terms "
               "gives (atom, coefficient) pairs: add coefficient * row stride when the atom "
               "is the variable itself (`atom is var`), return math.inf when the variable "
               "hides inside a non-linear atom (tir.collect_vars(atom)), and return the "
               "absolute value")
def _(ns, t):
    fn = t.need(ns, "access_stride")
    n = 0
    for label, buf, idx, var, expected in _stride_cases():
        what = f"access_stride({_show(buf, idx)}, {var.name}) with {buf.name} of shape " \
               f"{buf.shape}, in {label}"
        got = _call(what, fn, buf, list(idx), var)
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer,
                                                                     np.floating)):
            raise CheckFailed(f"{what}: expected a number, got {got!r}")
        if math.isinf(expected):
            t.true(math.isinf(got) and got > 0, f"{what} is math.inf",
                   f"got {got!r}; {var.name} occurs inside a floor division or modulo, so "
                   "the address does not move by a fixed step: the stride is math.inf")
            n += 1
            continue
        if got != expected:
            raise CheckFailed(f"{what}: expected {expected}, got {got!r}")
        n += 1
    t.passed.append(f"{n} (access, loop variable) pairs in 8 hidden programs give the "
                    "expected stride")


# --------------------------------------------------------------------- random_search

class _Rejected(Exception):
    """Stands in for ScheduleError in the fake space."""


class _FakeSchedule:
    def __init__(self, decisions):
        self.decisions = decisions


class _FakeSpace:
    """A tiny search space: decisions ``[tile, order]`` drawn from a list of legal
    candidates; the ones listed in ``rejected`` make the template raise ScheduleError
    (as a real template does on an illegal draw)."""

    def __init__(self, tiles, orders, rejected=()):
        from ...schedule import ScheduleError

        self.error = ScheduleError
        self.candidates = [[list(tl), o] for tl in tiles for o in orders]
        self.rejected = {json.dumps(d) for d in rejected}
        self.draws = 0

    def sample(self, rng):
        if not isinstance(rng, random.Random):
            raise CheckFailed(f"space.sample(rng) must be given a random.Random, got "
                              f"{type(rng).__name__}: make one with random.Random(seed)")
        self.draws += 1
        d = [list(x) if isinstance(x, list) else x
             for x in self.candidates[rng.randrange(len(self.candidates))]]
        if json.dumps(d) in self.rejected:
            raise self.error(f"template rejected the draw {d}")
        return _FakeSchedule([list(x) if isinstance(x, list) else x for x in d]), d

    @property
    def legal(self):
        return [d for d in self.candidates if json.dumps(d) not in self.rejected]


def _fake_cost(decisions):
    """A deterministic 'run time' in seconds; some candidates 'fail' (inf)."""
    (a, b), order = decisions
    if (a + b + order) % 7 == 0:
        return math.inf  # a candidate that crashed or computed a wrong result
    return 1e-3 * (1 + abs(a - 4) + 0.5 * abs(b - 8) / 8 + 0.3 * ((order * 5 + a) % 3)
                   + 0.01 * ((a * 13 + b * 7 + order * 3) % 17))


def _run_search(fn, space, trials, seed, what):
    calls = []

    def measure(sch):
        if not isinstance(sch, _FakeSchedule):
            raise CheckFailed(f"{what}: measure() must be given the schedule that "
                              f"space.sample returned, got {type(sch).__name__}")
        calls.append(sch.decisions)
        return _fake_cost(sch.decisions)

    got = _call(what, fn, space, measure, trials, seed=seed)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckFailed(f"{what}: expected a tuple (best_seconds, best_decisions), got "
                          f"{got!r}")
    return got, calls


def _pairs(tile_extent):
    return [[d, tile_extent // d] for d in range(1, tile_extent + 1) if tile_extent % d == 0]


@exercise("autotuning.random_search", points=3, notebook=NB,
          hint="rng = random.Random(seed); loop while fewer than `trials` candidates were "
               "measured and fewer than 100 * trials draws were made: sch, decisions = "
               "space.sample(rng) inside try/except ScheduleError (skip a rejected draw), "
               "skip decisions already measured (keep json.dumps(decisions) in a set), "
               "t = measure(sch), keep the smallest t with its decisions")
def _(ns, t):
    fn = t.need(ns, "random_search")
    # 1. A space with 6 x 3 = 18 candidates, 2 of them rejected by the template.
    space = _FakeSpace(_pairs(32), [0, 1, 2], rejected=[[[4, 8], 1], [[1, 32], 0]])
    what = "random_search(space, measure, trials=8, seed=0) on a space of 18 candidates"
    (best, dec), calls = _run_search(fn, space, 8, 0, what)
    t.equal(len(calls), 8, f"{what} measures 8 candidates")
    keys = [json.dumps(c) for c in calls]
    t.true(len(set(keys)) == len(keys), f"{what} never measures a candidate twice",
           f"measured {calls}")
    t.true(all(c in space.legal for c in calls), f"{what} measures no rejected draw",
           "a draw the template rejects raises ScheduleError: catch it and draw again; it "
           "costs no trial")
    times = [_fake_cost(c) for c in calls]
    t.equal(best, min(times), f"{what} returns the smallest time it measured")
    t.true(dec == calls[int(np.argmin(times))],
           f"{what} returns the decisions of the fastest candidate",
           f"got {dec}, the fastest measured was {calls[int(np.argmin(times))]}")
    # 2. Same seed, same search; another seed, another search.
    (best2, _), calls2 = _run_search(fn, space, 8, 0, what)
    t.true(calls2 == calls, "a second run with seed=0 measures the same candidates in the "
           "same order", "draw only from random.Random(seed), never from the global "
           "random module")
    (_, _), calls3 = _run_search(fn, space, 8, 1, what.replace("seed=0", "seed=1"))
    t.true(calls3 != calls, "seed=1 measures other candidates than seed=0",
           "make the generator with random.Random(seed) and pass it to space.sample")
    # 3. More trials than the space holds: measure each legal candidate once, then stop.
    what = "random_search(space, measure, trials=40, seed=3) on a space of 16 legal candidates"
    (best, dec), calls = _run_search(fn, space, 40, 3, what)
    t.equal(sorted(json.dumps(c) for c in calls), sorted(json.dumps(c) for c in space.legal),
            f"{what} measures every legal candidate exactly once and stops")
    finite = [c for c in space.legal if math.isfinite(_fake_cost(c))]
    opt = min(finite, key=_fake_cost)
    t.true(dec == opt and best == _fake_cost(opt), f"{what} finds the global optimum {opt}",
           f"got ({best!r}, {dec})")
    # 4. Every candidate fails (crashes): no best.
    space = _FakeSpace([[3, 1]], [0, 1, 2, 3])
    bad = [c for c in space.candidates if not math.isfinite(_fake_cost(c))]
    space.candidates = bad
    what = "random_search on a space whose only candidate fails (its time is inf)"
    (best, dec), calls = _run_search(fn, space, 5, 0, what)
    t.true(len(calls) == 1 and math.isinf(best) and dec is None,
           f"{what} measures it once and returns (inf, None)", f"got ({best!r}, {dec!r}) "
           f"after {len(calls)} measurements")


# --------------------------------------------------------------------- pairwise_accuracy

def _pairwise_reference(pred, meas):
    good = total = 0.0
    for a, b in itertools.combinations(range(len(meas)), 2):
        if meas[a] == meas[b]:
            continue
        total += 1
        s = (pred[a] - pred[b]) * (meas[a] - meas[b])
        good += 1.0 if s > 0 else 0.5 if s == 0 else 0.0
    return good / total if total else math.nan


@exercise("autotuning.pairwise_accuracy", points=2, notebook=NB,
          hint="for every pair i < j with measured[i] != measured[j]: count 1 when "
               "predicted orders them the same way (the signs of predicted[i] - predicted[j] "
               "and measured[i] - measured[j] agree), 1/2 when predicted[i] == predicted[j]; "
               "divide by the number of such pairs; nan when there is none")
def _(ns, t):
    fn = t.need(ns, "pairwise_accuracy")
    rng = np.random.default_rng(70)
    cases = [("2 candidates, ranked right", [0.1, 0.9], [1.0, 2.0]),
             ("2 candidates, ranked wrong", [0.9, 0.1], [1.0, 2.0]),
             ("3 candidates, predictions tied", [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]),
             ("4 candidates, two measured times equal", [1.0, 2.0, 3.0, 0.0],
              [1.0, 1.0, 3.0, 2.0]),
             ("5 candidates as python lists", [3, 1, 4, 1, 5], [9, 2, 6, 5, 3])]
    for n in (12, 60, 200):
        meas = np.round(rng.lognormal(0, 1, n), 1)        # rounded: ties in measured
        pred = np.round(np.log(meas) + rng.normal(0, 0.7, n), 1)  # and in predicted
        cases.append((f"{n} candidates, a noisy model, with ties", pred, meas))
    for label, pred, meas in cases:
        what = f"pairwise_accuracy on {label}"
        args = (list(pred), list(meas)) if "lists" in label else (np.asarray(pred, float),
                                                                    np.asarray(meas, float))
        got = _call(what, fn, *args)
        t.close(got, _pairwise_reference(list(pred), list(meas)), what, rtol=1e-9, atol=1e-12)
    what = "pairwise_accuracy when every measured time is the same (no pair to rank)"
    got = _call(what, fn, np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0]))
    t.true(isinstance(got, (float, np.floating)) and math.isnan(got), f"{what} is nan",
           f"got {got!r}")


# --------------------------------------------------------------------- mutate_tile

def _primes(x):
    return [p for p in range(2, x + 1) if x % p == 0 and all(p % q for q in range(2, p))]


def _neighbours(tile, max_inner):
    out = set()
    for a, x in enumerate(tile):
        for p in _primes(x):
            for b in range(len(tile)):
                if b != a:
                    new = list(tile)
                    new[a], new[b] = x // p, new[b] * p
                    if max_inner is None or new[-1] <= max_inner:
                        out.add(tuple(new))
    return out


MUTATE_CASES = [([1, 8, 64], None), ([4, 4], None), ([12, 1, 1], None), ([2, 3, 5], 4),
                ([1, 1, 8], 8), ([6, 1], 2), ([1, 1, 1], None), ([7], None), ([3, 1], 2),
                ([1, 2, 9, 2], 4)]


@exercise("autotuning.mutate_tile", points=2, notebook=NB,
          hint="list every legal move: for each level a, each prime p dividing tile[a], each "
               "other level b, the tile with tile[a] // p and tile[b] * p, kept when its last "
               "factor is at most max_innermost_factor; return rng.choice(moves) on a copy, "
               "or None when the list is empty")
def _(ns, t):
    fn = t.need(ns, "mutate_tile")
    for tile, mx in MUTATE_CASES:
        what = f"mutate_tile({tile}, rng, max_innermost_factor={mx})"
        legal = _neighbours(tile, mx)
        seen = set()
        for seed in range(120):
            before = list(tile)
            got = _call(what, fn, before, random.Random(seed), mx)
            if before != tile:
                raise CheckFailed(f"{what} changed its input to {before}: work on a copy")
            if not legal:
                t.true(got is None, f"{what} returns None: no legal move exists",
                       f"got {got!r}")
                break
            if not isinstance(got, list) or not all(isinstance(v, (int, np.integer))
                                                    and not isinstance(v, bool) for v in got):
                raise CheckFailed(f"{what}: expected a list of ints, got {got!r}")
            if len(got) != len(tile) or math.prod(got) != math.prod(tile):
                raise CheckFailed(f"{what} returned {got}: a mutation keeps the number of "
                                  f"levels ({len(tile)}) and the product ({math.prod(tile)})")
            if mx is not None and got[-1] > mx:
                raise CheckFailed(f"{what} returned {got}: the innermost factor {got[-1]} is "
                                  f"above max_innermost_factor={mx}")
            if tuple(got) not in legal:
                raise CheckFailed(f"{what} returned {got}, which is not one prime factor "
                                  f"moved from one level to another; the moves are "
                                  f"{sorted(list(m) for m in legal)}")
            again = _call(what, fn, list(tile), random.Random(seed), mx)
            if again != got:
                raise CheckFailed(f"{what} with random.Random({seed}) gave {got}, then "
                                  f"{again}: draw only from the rng you are given")
            seen.add(tuple(got))
        else:
            t.true(seen == legal, f"{what} reaches all {len(legal)} neighbours over 120 seeds",
                   f"never returned {sorted(list(m) for m in legal - seen)}")

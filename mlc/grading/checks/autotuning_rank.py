"""Unit 07, auto-tuning (2 of 2): ranking a cost model, mutating a tiling.

``pairwise_accuracy`` is compared with a brute-force count on hidden data with ties;
``mutate_tile`` is checked by its laws (product, length, one prime factor moved, input
untouched, the rng alone decides) and by reaching every neighbour over 120 seeds.

The split (see :mod:`mlc.grading.registry`): the grader draws the data and computes the
references; the worker only calls the student's function. For ``mutate_tile`` it calls
it once per seed on a copy of the tile and reports, for each seed, the copy after the call
(did the function change its input?), the result, and the result of a second call with a
fresh generator of the same seed.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np

from ..registry import Check, call, exercise, hidden_seed, need
from .autotuning import NB, plain, same, shown

SEEDS = 120


# ---- pairwise_accuracy -----------------------------------------------------------------------

def _pairwise_reference(pred, meas):
    good = total = 0.0
    for a, b in itertools.combinations(range(len(meas)), 2):
        if meas[a] == meas[b]:
            continue
        total += 1
        s = (pred[a] - pred[b]) * (meas[a] - meas[b])
        good += 1.0 if s > 0 else 0.5 if s == 0 else 0.0
    return good / total if total else math.nan


@exercise("autotuning.pairwise_accuracy", points=2, notebook=NB, needs=("pairwise_accuracy",),
          hint="only the order matters: go over pairs of candidates, leave out the pairs the "
               "measurements cannot order, and count a pair the model cannot order as a "
               "coin flip; an empty count has no meaningful share (lecture 07, section 5)")
class _PairwiseAccuracy(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(70))
        data = [("2 candidates, ranked right", [0.1, 0.9], [1.0, 2.0]),
                ("2 candidates, ranked wrong", [0.9, 0.1], [1.0, 2.0]),
                ("3 candidates, predictions tied", [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]),
                ("4 candidates, two measured times equal", [1.0, 2.0, 3.0, 0.0],
                 [1.0, 1.0, 3.0, 2.0]),
                ("5 candidates as python lists", [3, 1, 4, 1, 5], [9, 2, 6, 5, 3])]
        for n in (12, 60, 200):
            meas = np.round(rng.lognormal(0, 1, n), 1)                # rounded: ties in measured
            pred = np.round(np.log(meas) + rng.normal(0, 0.7, n), 1)  # and in predicted
            data.append((f"{n} candidates, a noisy model, with ties", pred, meas))
        out = [{"what": f"pairwise_accuracy on {label}", "pred": pred, "meas": meas,
                "lists": "lists" in label} for label, pred, meas in data]
        out.append({"what": "pairwise_accuracy when every measured time is the same (no pair "
                            "to rank)", "pred": [1.0, 2.0, 3.0], "meas": [4.0, 4.0, 4.0],
                    "lists": False, "nan": True})
        return out

    def observe(self, ns, case):
        fn = need(ns, "pairwise_accuracy")
        if case["lists"]:
            args = (list(case["pred"]), list(case["meas"]))
        else:
            args = (np.asarray(case["pred"], float), np.asarray(case["meas"], float))
        return plain(call(case["what"], fn, *args))

    def judge(self, case, obs, t):
        what = case["what"]
        if case.get("nan"):
            t.true(isinstance(obs, float) and math.isnan(obs), f"{what} is nan",
                   f"got {shown(obs)}")
            return
        want = _pairwise_reference(list(case["pred"]), list(case["meas"]))
        t.close(obs, want, what, rtol=1e-9, atol=1e-12)


# ---- mutate_tile -----------------------------------------------------------------------------

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
                ([1, 2, 9, 2], 4), ([2, 210], None)]


def _uneven(counts: dict, n_moves: int) -> list:
    """The neighbours drawn far from ``SEEDS / n_moves`` times (more than 4 binomial
    standard deviations): a choice among all the moves is uniform, while picking a level
    first favours the moves of levels with few primes ([2, 210]: [1, 420] half the time
    instead of one in five)."""
    p = 1 / n_moves
    mean, sd = SEEDS * p, math.sqrt(SEEDS * p * (1 - p))
    return [list(m) for m, c in sorted(counts.items()) if abs(c - mean) > 4 * sd]


def _int_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                       for x in v)


@exercise("autotuning.mutate_tile", points=2, notebook=NB, needs=("mutate_tile",),
          hint="a mutation moves one prime factor from one level of the tiling to another, "
               "so the product never changes; collect every such move that respects the "
               "innermost limit before choosing, choose with the generator you are given, "
               "and leave the caller's list alone (lecture 07, section 4)")
class _MutateTile(Check):
    def cases(self):
        return [{"what": f"mutate_tile({tile}, rng, max_innermost_factor={mx})", "tile": tile,
                 "max": mx} for tile, mx in MUTATE_CASES]

    def observe(self, ns, case):
        fn, what, tile, mx = need(ns, "mutate_tile"), case["what"], case["tile"], case["max"]
        out = []
        for seed in range(SEEDS):
            before = list(tile)
            got = call(what, fn, before, random.Random(seed), mx)
            again = call(what, fn, list(tile), random.Random(seed), mx)
            out.append({"input": plain(before), "got": plain(got), "again": plain(again)})
        return out

    def judge(self, case, obs, t):
        what, tile, mx = case["what"], case["tile"], case["max"]
        if not (isinstance(obs, list) and len(obs) == SEEDS
                and all(isinstance(r, dict) for r in obs)):
            t.fail(f"{what}: malformed observation")
        legal, seen = _neighbours(tile, mx), {}
        for seed, rec in enumerate(obs):
            before, got = rec.get("input"), rec.get("got")
            if not same(before, tile):
                t.fail(f"{what} changed its input to {shown(before)}: work on a copy")
            if not legal:
                t.true(got is None, f"{what} returns None: no legal move exists",
                       f"got {shown(got)}")
                break
            if not _int_list(got):
                t.fail(f"{what}: expected a list of ints, got {shown(got)}")
            if len(got) != len(tile) or math.prod(got) != math.prod(tile):
                t.fail(f"{what} returned {got}: a mutation keeps the number of levels "
                       f"({len(tile)}) and the product ({math.prod(tile)})")
            if mx is not None and got[-1] > mx:
                t.fail(f"{what} returned {got}: the innermost factor {got[-1]} is above "
                       f"max_innermost_factor={mx}")
            if tuple(got) not in legal:
                t.fail(f"{what} returned {got}, which is not one prime factor moved from one "
                       f"level to another; the moves are {sorted(list(m) for m in legal)}")
            if not same(rec.get("again"), got):
                t.fail(f"{what} with random.Random({seed}) gave {got}, then "
                       f"{shown(rec.get('again'))}: draw only from the rng you are given")
            seen[tuple(got)] = seen.get(tuple(got), 0) + 1
        else:
            t.true(set(seen) == legal, f"{what} reaches all {len(legal)} neighbours over "
                   f"{SEEDS} seeds", f"never returned "
                   f"{sorted(list(m) for m in legal - set(seen))}")
            uneven = _uneven(seen, len(legal))
            t.true(not uneven, f"{what} draws each of its {len(legal)} moves about equally "
                   f"often over {SEEDS} seeds", f"{uneven} came {[seen[tuple(m)] for m in uneven]}"
                   f" times, expected about {SEEDS / len(legal):.0f}: choose among all the "
                   f"legal moves at once")

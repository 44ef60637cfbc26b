"""The checks of unit 07 (auto-tuning).

Each check must give full marks to the reference solution (the code of
solutions/07_autotuning.ipynb) and fail, with a message that points at the mistake, on
what students get wrong: a stride without the row size or in bytes, a non-affine index
taken for a fixed step or not seen at all, a search that measures twins or rejected draws
or uses the global random module, a ranking metric that counts tied measurements, ignores
tied predictions or is Kendall's tau, a mutation that changes the product or only ever
moves in one direction.

Each judge is also handed forged observations (wrong lengths, non-numbers, decisions the
space never returns, a changed input) and must fail them with a message; an untouched stub
hears only "not implemented yet", with no hint, and every hint is a nudge without code.
"""

import itertools
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc import tir
from check_util import check_runner

from mlc.grading.check import run_check
from mlc.grading.checks import autotuning, autotuning_rank
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester
from mlc.schedule import ScheduleError

# ---- reference solutions (as in solutions/07_autotuning.ipynb) ---------------------------


def access_stride(buffer, indices, var):
    stride, row = 0, 1
    for dim, index in reversed(list(zip(buffer.shape, indices, strict=True))):
        for atom, coeff in tir.arith.linear(index).terms.values():
            if atom is var:
                stride += coeff * row
            elif any(v is var for v in tir.collect_vars(atom)):
                return math.inf
        row *= dim
    return abs(stride)


def random_search(space, measure, trials, seed=0, draws_per_trial=100):
    rng = random.Random(seed)
    best, best_decisions = math.inf, None
    seen, draws = set(), 0
    while len(seen) < trials and draws < draws_per_trial * trials:
        draws += 1
        try:
            sch, decisions = space.sample(rng)
        except ScheduleError:
            continue
        key = json.dumps(decisions)
        if key in seen:
            continue
        seen.add(key)
        seconds = measure(sch)
        if seconds < best:
            best, best_decisions = seconds, decisions
    return best, best_decisions


def pairwise_accuracy(predicted, measured):
    good = total = 0.0
    for i in range(len(measured)):
        for j in range(i + 1, len(measured)):
            if measured[i] == measured[j]:
                continue
            total += 1
            agree = (predicted[i] - predicted[j]) * (measured[i] - measured[j])
            good += 1.0 if agree > 0 else 0.5 if agree == 0 else 0.0
    return good / total if total else math.nan


def mutate_tile(tile, rng, max_innermost_factor=None):
    moves = []
    for a, x in enumerate(tile):
        for p in range(2, x + 1):
            if x % p or any(p % q == 0 for q in range(2, p)):
                continue  # p is not a prime factor of x
            for b in range(len(tile)):
                if b != a:
                    new = list(tile)
                    new[a], new[b] = x // p, new[b] * p
                    if max_innermost_factor is None or new[-1] <= max_innermost_factor:
                        moves.append(new)
    return rng.choice(moves) if moves else None


REF = {"access_stride": access_stride, "random_search": random_search,
       "pairwise_accuracy": pairwise_accuracy, "mutate_tile": mutate_tile}
IDS = ["autotuning." + name for name in REF]


_run, _fails = check_runner(REF)


# ---- references pass ---------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) >= 2


def test_ids_and_notebook():
    from mlc.grading.registry import for_notebook

    assert [ex.id for ex in for_notebook("07_autotuning")] == IDS
    assert sum(ex.points for ex in for_notebook("07_autotuning")) == 10


@pytest.mark.parametrize("ex_id", IDS)
def test_missing_and_unimplemented(ex_id):
    name = ex_id.split(".")[1]
    assert f"`{name}` is not defined" in run_check(ex_id, {})["message"]

    def todo(*args, **kwargs):
        raise NotImplementedError("your code here")

    rec = _run(ex_id, **{name: todo})
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == ""  # an untouched stub hears no nudge yet


@pytest.mark.parametrize("ex_id", IDS)
def test_hint_is_a_nudge_not_the_solution(ex_id):
    """A wrong answer hears the exercise's hint: ideas and where to look, no code."""
    hint = get(ex_id).hint
    assert hint and "lecture 07" in hint
    for code in ("tir.arith.linear", "collect_vars", "random.Random(seed)", "json.dumps",
                 "rng.choice", "try/except", "math.inf", " = ", "measure(sch)", "//"):
        assert code not in hint, (ex_id, code)


def test_observations_are_plain_data():
    """What the worker sends for each exercise crosses the wire (no Buffer, no Var)."""
    from mlc.grading.protocol import observe_case
    from mlc.grading.wire import public, roundtrip

    for ex_id in IDS:
        ex = get(ex_id)
        case = ex.check.cases()[0]
        obs = observe_case(ex, REF, roundtrip(public(case)))
        assert "ok" in obs, (ex_id, obs)
        assert "_expected" not in public(case)


# ---- access_stride -----------------------------------------------------------------------

def test_stride_cases_cover_what_they_claim():
    cases = list(autotuning._stride_cases())
    strides = {c[-1] for c in cases}
    assert {0, 1, math.inf} <= strides  # a register, a contiguous walk, a fused loop
    assert any(s > 1 and math.isfinite(s) for s in strides)  # strided walks
    assert 18 in strides  # X[2 * i, c] over rows of 9 elements
    assert len(cases) > 90


def test_stride_hand_cases():
    i, j, k = tir.Var("i"), tir.Var("j"), tir.Var("k")
    A = tir.Buffer("A", (4, 5, 6))
    assert access_stride(A, [i, j, k], i) == 30
    assert access_stride(A, [i, j, k], j) == 6
    assert access_stride(A, [i, j * 2 + k, k], k) == 7
    assert access_stride(A, [i, 3 - j, k], j) == 6  # walking backwards: still 6 apart
    assert access_stride(A, [i, j // 2, k], j) == math.inf
    assert access_stride(A, [i, j, k], tir.Var("i")) == 0  # another variable named i


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=3).flatmap(
    lambda shape: st.tuples(st.just(shape), st.lists(
        st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.integers(0, 4)),
        min_size=len(shape), max_size=len(shape)))))
def test_stride_is_the_address_step(case):
    """On affine indices the stride is how far the flat row-major address moves when the
    variable steps by one (the check's oracle, mlc.tune.features._stride, agrees)."""
    from mlc.tune.features import _stride

    shape, coeffs = case
    i, j = tir.Var("i"), tir.Var("j")
    buf = tir.Buffer("X", shape)
    idx = [i * a + j * b + c for a, b, c in coeffs]

    def address(vi, vj):
        flat = 0
        for dim, (a, b, c) in zip(shape, coeffs, strict=True):
            flat = flat * dim + a * vi + b * vj + c
        return flat

    for var, step in ((i, address(1, 0) - address(0, 0)), (j, address(0, 1) - address(0, 0))):
        assert access_stride(buf, idx, var) == abs(step) == _stride(buf, idx, var)


def test_access_stride_failures():
    def no_row_size(buffer, indices, var):  # adds the coefficients, forgets the row strides
        total = 0
        for index in indices:
            for atom, coeff in tir.arith.linear(index).terms.values():
                if atom is var:
                    total += coeff
        return total

    _fails("autotuning.access_stride", "expected 16, got 1", "access_stride(C[i, j], i)",
           access_stride=no_row_size)

    def by_name(buffer, indices, var):  # compares names: a fused f also "is" f
        stride, row = 0, 1
        for dim, index in reversed(list(zip(buffer.shape, indices, strict=True))):
            for atom, coeff in tir.arith.linear(index).terms.values():
                if isinstance(atom, tir.Var) and atom.name == var.name:
                    stride += coeff * row
            row *= dim
        return abs(stride)

    _fails("autotuning.access_stride", "a new Var('i') that no loop binds",
           access_stride=by_name)

    def signed(buffer, indices, var):  # forgets the absolute value
        s = access_stride(buffer, indices, var)
        return -s if s and not math.isinf(s) else s

    def column_major(buffer, indices, var):  # Fortran order: the first index is contiguous
        return access_stride(tir.Buffer(buffer.name, buffer.shape[::-1]), indices[::-1], var)

    _fails("autotuning.access_stride", "expected 16, got -16", access_stride=signed)
    _fails("autotuning.access_stride", "expected 16, got 1", access_stride=column_major)
    _fails("autotuning.access_stride", "expected a number", access_stride=lambda b, i, v: "1")


def test_access_stride_in_bytes_or_blind_to_non_affine_uses_fails():
    def in_bytes(buffer, indices, var):  # the feature counts elements, not bytes
        s = access_stride(buffer, indices, var)
        return 4 * s if math.isfinite(s) else s

    _fails("autotuning.access_stride", "expected 16, got 64", access_stride=in_bytes)

    def affine_terms_only(buffer, indices, var):  # i // 16 and i % 16 have no term in i
        stride, row = 0, 1
        for dim, index in reversed(list(zip(buffer.shape, indices, strict=True))):
            for atom, coeff in tir.arith.linear(index).terms.values():
                if atom is var:
                    stride += coeff * row
            row *= dim
        return abs(stride)

    _fails("autotuning.access_stride", "i_j_fused", "is math.inf", "got 0",
           access_stride=affine_terms_only)


def test_pairwise_accuracy_as_kendall_tau_fails():
    _fails("autotuning.pairwise_accuracy", "ranked wrong", "expected 0., got -1.",
           pairwise_accuracy=lambda p, m: 2 * pairwise_accuracy(p, m) - 1)


def _stride_matching(same_var, magnitude):
    """The reference with its two details swapped out: how a variable is recognised, and
    whether the sum is returned as a distance."""
    def stride_of(buffer, indices, var):
        stride, row = 0, 1
        for dim, index in reversed(list(zip(buffer.shape, indices, strict=True))):
            for atom, coeff in tir.arith.linear(index).terms.values():
                if same_var(atom, var):
                    stride += coeff * row
                elif any(same_var(v, var) for v in tir.collect_vars(atom)):
                    return math.inf
            row *= dim
        return magnitude(stride)
    return stride_of


def test_access_stride_by_name_or_signed_fails():
    """Both once scored full marks: every variable of the hidden programs had its own name,
    and no index walked backwards."""
    by_name = _stride_matching(lambda a, v: getattr(a, "name", None) == v.name, abs)
    _fails("autotuning.access_stride", "a new Var('i') that no loop binds", "expected 0",
           access_stride=by_name)
    signed = _stride_matching(lambda a, v: a is v, lambda s: s)
    _fails("autotuning.access_stride", "read backwards", "expected 9, got -9",
           access_stride=signed)


def test_access_stride_judge_on_forged_observations():
    ex = get("autotuning.access_stride")
    case = ex.check.cases()[2]  # the fused matmul: strides 0, 1, 8, 16 and inf
    want = [w for _, w in case["_expected"]]
    assert math.inf in want
    ex.check.judge(case, want, _Tester())
    bad = [None, want[:-1], "16", [True] * len(want),
           [{"unsendable": "IntImm", "repr": "IntImm(1)"}] * len(want),
           [-w if w else w for w in want], [w if math.isfinite(w) else 1e308 for w in want],
           [w if math.isfinite(w) else -math.inf for w in want]]
    for obs in bad:
        with pytest.raises(CheckFailed):
            ex.check.judge(case, obs, _Tester())


# ---- random_search -----------------------------------------------------------------------

def test_random_search_failures():
    def measures_twins(space, measure, trials, seed=0):
        rng = random.Random(seed)
        best, dec, n = math.inf, None, 0
        while n < trials:
            try:
                sch, d = space.sample(rng)
            except ScheduleError:
                continue
            n += 1
            t = measure(sch)
            if t < best:
                best, dec = t, d
        return best, dec

    _fails("autotuning.random_search", "never measures a candidate twice",
           random_search=measures_twins)

    def global_random(space, measure, trials, seed=0):
        return random_search(space, measure, trials, seed=random.randrange(10**6))

    _fails("autotuning.random_search", "used the global random module",
           random_search=global_random)

    def no_except(space, measure, trials, seed=0):
        rng = random.Random(seed)
        best, dec, seen = math.inf, None, set()
        for _ in range(100 * trials):
            if len(seen) == trials:
                break
            sch, d = space.sample(rng)
            if json.dumps(d) not in seen:
                seen.add(json.dumps(d))
                t = measure(sch)
                if t < best:
                    best, dec = t, d
        return best, dec

    _fails("autotuning.random_search", "raised ScheduleError", random_search=no_except)

    def last_not_best(space, measure, trials, seed=0):
        rng = random.Random(seed)
        seen, out = set(), (math.inf, None)
        for _ in range(100 * trials):
            if len(seen) == trials:
                break
            try:
                sch, d = space.sample(rng)
            except ScheduleError:
                continue
            if json.dumps(d) not in seen:
                seen.add(json.dumps(d))
                out = (measure(sch), d)
        return out

    _fails("autotuning.random_search", "returns the smallest time", random_search=last_not_best)

    def wrong_rng(space, measure, trials, seed=0):
        space.sample(np.random.default_rng(seed))

    _fails("autotuning.random_search", "random.Random", random_search=wrong_rng)

    def forever(space, measure, trials, seed=0):  # never gives up when the space runs out
        rng = random.Random(seed)
        seen, best = set(), (math.inf, None)
        draws = 0
        while len(seen) < trials:
            draws += 1
            if draws > 20000:  # stands in for a hang (the grader's timeout)
                raise RuntimeError("still drawing after 20000 draws")
            try:
                sch, d = space.sample(rng)
            except ScheduleError:
                continue
            if json.dumps(d) not in seen:
                seen.add(json.dumps(d))
                t = measure(sch)
                if t < best[0]:
                    best = (t, d)
        return best

    _fails("autotuning.random_search", "trials=40", "still drawing", random_search=forever)


def test_random_search_seeding_the_global_module_or_capping_draws_early_fails():
    """Both once scored full marks: a seed taken through the global random module is
    reproducible (but disturbs every other user of it), and a cap of 2 * trials draws
    happened to find the 16 legal candidates of the small space."""
    def seeds_global(space, measure, trials, seed=0):
        random.seed(seed)
        return random_search(space, measure, trials, seed=random.randrange(10**6))

    _fails("autotuning.random_search", "used the global random module",
           random_search=seeds_global)

    def early_cap(space, measure, trials, seed=0):
        return random_search(space, measure, trials, seed, draws_per_trial=2)

    _fails("autotuning.random_search", "stops after 100 * trials = 4000 draws",
           random_search=early_cap)


def test_random_search_judge_on_forged_observations():
    ex = get("autotuning.random_search")
    case = ex.check.cases()[0]
    honest = ex.check.observe(REF, case)
    ex.check.judge(case, honest, _Tester())
    forged_call = [dict(r, calls=[[[5, 5], 0]] + r["calls"][1:]) for r in honest]
    list_result = [dict(r, result=list(r["result"])) for r in honest]
    for obs, fragment in [(None, "malformed"), (honest[:2], "malformed"),
                          (forged_call, "space.sample never returns"),
                          (list_result, "expected a tuple"),
                          ([dict(r, calls=np.zeros(3)) for r in honest], "malformed"),
                          ([dict(r, calls=[np.zeros(2)] * 8) for r in honest], "never returns"),
                          ([dict(r, result=("fast", None)) for r in honest], "smallest time")]:
        with pytest.raises(CheckFailed, match=fragment):
            ex.check.judge(case, obs, _Tester())


def test_random_search_result_must_be_a_tuple():
    def as_list(space, measure, trials, seed=0):
        return list(random_search(space, measure, trials, seed))

    _fails("autotuning.random_search", "expected a tuple", random_search=as_list)

    def measures_forever(space, measure, trials, seed=0):
        sch, _ = space.sample(random.Random(seed))
        while True:
            measure(sch)

    _fails("autotuning.random_search", "more than 5000 times", random_search=measures_forever)


# ---- pairwise_accuracy -------------------------------------------------------------------

def test_pairwise_accuracy_failures():
    def counts_measured_ties(predicted, measured):
        n = len(measured)
        agree = [(predicted[i] - predicted[j]) * (measured[i] - measured[j])
                 for i, j in itertools.combinations(range(n), 2)]
        good = sum(1.0 if a > 0 else 0.5 if a == 0 else 0.0 for a in agree)
        return good / (n * (n - 1) / 2)

    _fails("autotuning.pairwise_accuracy", "two measured times equal",
           pairwise_accuracy=counts_measured_ties)

    def ties_count_zero(predicted, measured):
        good = total = 0
        for i, j in itertools.combinations(range(len(measured)), 2):
            if measured[i] != measured[j]:
                total += 1
                good += (predicted[i] - predicted[j]) * (measured[i] - measured[j]) > 0
        return good / total if total else math.nan

    _fails("autotuning.pairwise_accuracy", "predictions tied", "expected 0.5",
           pairwise_accuracy=ties_count_zero)

    def zero_when_empty(predicted, measured):
        v = pairwise_accuracy(predicted, measured)
        return 0.0 if math.isnan(v) else v

    _fails("autotuning.pairwise_accuracy", "is nan", pairwise_accuracy=zero_when_empty)

    def reversed_sense(predicted, measured):  # "higher prediction = faster"
        v = pairwise_accuracy(predicted, measured)
        return 1 - v

    _fails("autotuning.pairwise_accuracy", "ranked right", pairwise_accuracy=reversed_sense)


finite = st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=25), st.randoms())
def test_pairwise_accuracy_laws(rows, rnd):
    pred = np.array([r[0] for r in rows])
    meas = np.array([r[1] for r in rows])
    acc = pairwise_accuracy(pred, meas)
    assert acc == autotuning_rank._pairwise_reference(list(pred), list(meas)) or (
        math.isnan(acc) and len(set(meas)) == 1)
    if math.isnan(acc):
        return
    assert 0 <= acc <= 1
    assert math.isclose(acc + pairwise_accuracy(-pred, meas), 1.0)          # reversed model
    assert math.isclose(pairwise_accuracy(np.exp(pred / 100), meas), acc)   # monotone map
    assert pairwise_accuracy(meas, meas) == 1.0                             # an oracle
    perm = list(range(len(rows)))
    rnd.shuffle(perm)
    assert math.isclose(pairwise_accuracy(pred[perm], meas[perm]), acc)    # order-free


def test_pairwise_accuracy_skipping_predicted_ties_or_adjacent_pairs_fails():
    def skips_predicted_ties(predicted, measured):  # a tie of the model is a coin flip
        good = total = 0
        for i, j in itertools.combinations(range(len(measured)), 2):
            if measured[i] != measured[j] and predicted[i] != predicted[j]:
                total += 1
                good += (predicted[i] - predicted[j]) * (measured[i] - measured[j]) > 0
        return good / total if total else math.nan

    _fails("autotuning.pairwise_accuracy", "predictions tied", "expected 0.5",
           pairwise_accuracy=skips_predicted_ties)

    def neighbours_in_time(predicted, measured):  # only the pairs adjacent when sorted
        order = np.argsort(measured, kind="stable")
        good = total = 0.0
        for a, b in zip(order[:-1], order[1:], strict=True):
            if measured[a] != measured[b]:
                total += 1
                s = (predicted[a] - predicted[b]) * (measured[a] - measured[b])
                good += 1.0 if s > 0 else 0.5 if s == 0 else 0.0
        return good / total if total else math.nan

    _fails("autotuning.pairwise_accuracy", "two measured times equal",
           pairwise_accuracy=neighbours_in_time)


def test_pairwise_accuracy_wrong_types():
    _fails("autotuning.pairwise_accuracy", "expected numbers",
           pairwise_accuracy=lambda p, m: object())
    _fails("autotuning.pairwise_accuracy", "is nan",
           pairwise_accuracy=lambda p, m: pairwise_accuracy(p, m) if len(set(m)) > 1 else None)


# ---- mutate_tile -------------------------------------------------------------------------

def test_mutate_tile_picking_a_level_first_fails():
    """Every move it returns is legal and it reaches them all, so it once scored full
    marks; but it favours the moves of a level with few primes: [2, 210] gives [1, 420]
    half the time instead of one time in five."""
    def level_first(tile, rng, max_innermost_factor=None):
        for _ in range(200):
            a = rng.randrange(len(tile))
            primes = autotuning_rank._primes(tile[a])
            if len(tile) < 2 or not primes:
                continue
            p = rng.choice(primes)
            b = rng.choice([k for k in range(len(tile)) if k != a])
            new = list(tile)
            new[a], new[b] = tile[a] // p, tile[b] * p
            if max_innermost_factor is None or new[-1] <= max_innermost_factor:
                return new
        return None

    _fails("autotuning.mutate_tile", "[2, 210]", "about equally often",
           mutate_tile=level_first)


def test_mutate_tile_failures():
    def only_outward(tile, rng, max_innermost_factor=None):  # moves toward the inside only
        moves = [m for m in autotuning_rank._neighbours(tile, max_innermost_factor)
                 if any(m[b] > tile[b] for b in range(1, len(tile)))
                 and all(m[b] <= tile[b] or b > a for a in range(len(tile))
                         for b in range(len(tile)) if m[a] < tile[a])]
        return list(rng.choice(sorted(moves))) if moves else None

    _fails("autotuning.mutate_tile", "reaches all", "never returned",
           mutate_tile=only_outward)

    def in_place(tile, rng, max_innermost_factor=None):
        new = mutate_tile(tile, rng, max_innermost_factor)
        if new is not None:
            tile[:] = new
        return new

    _fails("autotuning.mutate_tile", "changed its input", mutate_tile=in_place)

    def ignores_max(tile, rng, max_innermost_factor=None):
        return mutate_tile(tile, rng, None)

    _fails("autotuning.mutate_tile", "above max_innermost_factor", mutate_tile=ignores_max)

    def composite(tile, rng, max_innermost_factor=None):  # moves any divisor, not a prime
        moves = []
        for a, x in enumerate(tile):
            for d in range(2, x + 1):
                if x % d == 0:
                    for b in range(len(tile)):
                        if b != a:
                            new = list(tile)
                            new[a], new[b] = x // d, new[b] * d
                            if max_innermost_factor is None or new[-1] <= max_innermost_factor:
                                moves.append(new)
        return rng.choice(moves) if moves else None

    _fails("autotuning.mutate_tile", "not one prime factor moved", mutate_tile=composite)

    def global_rng(tile, rng, max_innermost_factor=None):
        return mutate_tile(tile, random.Random(), max_innermost_factor)

    _fails("autotuning.mutate_tile", "draw only from the rng", mutate_tile=global_rng)

    def empty_list(tile, rng, max_innermost_factor=None):
        return mutate_tile(tile, rng, max_innermost_factor) or []

    _fails("autotuning.mutate_tile", "returns None", mutate_tile=empty_list)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 24), min_size=1, max_size=4),
       st.one_of(st.none(), st.integers(1, 16)), st.integers(0, 2**32 - 1))
def test_mutate_tile_laws(tile, mx, seed):
    got = mutate_tile(list(tile), random.Random(seed), mx)
    legal = autotuning_rank._neighbours(tile, mx)
    if got is None:
        assert not legal
        return
    assert math.prod(got) == math.prod(tile) and len(got) == len(tile)
    assert tuple(got) in legal
    changed = [a for a in range(len(tile)) if got[a] != tile[a]]
    assert len(changed) == 2                     # one factor left one level for another
    assert mx is None or got[-1] <= mx
    assert got == mutate_tile(list(tile), random.Random(seed), mx)  # the rng decides


def test_library_move_factor_agrees():
    """The library's own mutation (mlc.tune.space.move_factor) makes the same moves."""
    from mlc.tune.space import move_factor

    for tile, mx in autotuning_rank.MUTATE_CASES:
        got = {tuple(m) for s in range(200)
               if (m := move_factor(tile, random.Random(s), mx)) is not None}
        assert got == autotuning_rank._neighbours(tile, mx), (tile, mx)


def test_mutate_tile_judge_on_forged_observations():
    ex = get("autotuning.mutate_tile")
    case = ex.check.cases()[1]  # [4, 4]: moves [2, 8] and [8, 2]
    honest = ex.check.observe(REF, case)
    ex.check.judge(case, honest, _Tester())
    for obs, fragment in [(None, "malformed"), (honest[:5], "malformed"),
                          ([dict(r, input=np.array([4, 4])) for r in honest], "changed its input"),
                          ([dict(r, got=(2, 8)) for r in honest], "list of ints"),
                          ([dict(r, got=[True, 16]) for r in honest], "list of ints"),
                          ([dict(r, got=[2, 8], again=[2, 8]) for r in honest], "reaches all"),
                          ([dict(r, again=None) for r in honest], "draw only from the rng")]:
        with pytest.raises(CheckFailed, match=fragment):
            ex.check.judge(case, obs, _Tester())


def test_modules_stay_small():
    from pathlib import Path

    for mod in (autotuning, autotuning_rank):
        assert len(Path(mod.__file__).read_text().splitlines()) <= 400


# ---- the notebooks -----------------------------------------------------------------------

def test_solution_grades_in_full_and_release_grades_zero(graded):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = graded(root / "solutions" / "07_autotuning.ipynb")
    assert (report.score, report.max_score) == (10, 10), report.results
    # exercises/ is what `mlc release` writes (`mlc release --check` in CI).
    report = graded(root / "exercises" / "07_autotuning.ipynb")
    assert (report.score, report.max_score) == (0, 10), report.results
    assert all("not implemented" in r.message for r in report.results)

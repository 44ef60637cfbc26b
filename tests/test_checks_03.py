"""The checks of unit 03 (CPU operators).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: C not zeroed, the wrong loop order,
edges of a tile forgotten, a reduction without prange or without parallel=True. An
untouched stub hears only "not implemented yet", and the judge refuses timings that
cannot have been measured.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from numba import njit, prange

from check_util import check_runner

from mlc.grading import registry
from mlc.grading.check import run_check
from mlc.grading.protocol import (NOT_IMPLEMENTED, decode_observation, observe_case,
                                  observe_names, verdict)
from mlc.grading.registry import CheckFailed
from mlc.grading.source import Sources
from mlc.grading.wire import public, roundtrip

ROOT = Path(__file__).resolve().parents[1]
IDS = ["cpu_operators.matmul_ikj", "cpu_operators.matmul_tiled", "cpu_operators.parallel_sum"]


# ---- reference solutions (the same as in solutions/03_cpu_operators.ipynb) ------------------

@njit(cache=True)
def matmul_ikj(A, B, C):
    n, K = A.shape
    m = B.shape[1]
    C[:] = 0
    for i in range(n):
        for k in range(K):
            a = A[i, k]
            for j in range(m):
                C[i, j] += a * B[k, j]


TILE = 128


@njit(cache=True)
def matmul_tiled(A, B, C):
    n, K = A.shape
    m = B.shape[1]
    C[:] = 0
    for i0 in range(0, n, TILE):
        for k0 in range(0, K, TILE):
            for j0 in range(0, m, TILE):
                jn = min(TILE, m - j0)
                for i in range(i0, min(i0 + TILE, n)):
                    Ci = C[i, j0:j0 + jn]
                    for k in range(k0, min(k0 + TILE, K)):
                        a = A[i, k]
                        Bk = B[k, j0:j0 + jn]
                        for jj in range(jn):
                            Ci[jj] += a * Bk[jj]


@njit(parallel=True, cache=True)
def parallel_sum(x):
    total = 0.0
    for i in prange(x.size):
        total += x[i]
    return total


_another_kernel = matmul_tiled  # what a student's wrapper calls under a name of its own

CPU = {"matmul_ikj": matmul_ikj, "matmul_tiled": matmul_tiled, "TILE": TILE,
       "parallel_sum": parallel_sum}

_run, _fails = check_runner(CPU)


def _untimed(ex_id, keep=lambda case: not case.get("speed"), **overrides):
    """The record of the exercise's cases that ``keep`` selects (by default all but the
    timed one), graded as ``mlc grade`` does. The grader observes every case before it
    judges, so a wrong answer would be timed in a fresh process even when a small case
    already fails it: leaving the timed case out keeps these tests fast. Grading is all or
    nothing, so a failing subset fails the exercise."""
    ex = registry.get(ex_id)
    ns = {**CPU, **overrides}
    cases = [c for c in ex.check.cases() if keep(c)]
    obs = [decode_observation(json.loads(json.dumps(observe_case(ex, ns, roundtrip(public(c))))))
           for c in cases]
    return verdict(ex, cases, roundtrip(observe_names(ex, ns)), obs, _sources(ex, ns))


def _sources(ex, ns):
    from mlc.grading.check import _sources_of

    return _sources_of(ex, ns)


def _traced(ex_id, **overrides):
    """The record of the exercise's traced cases alone (no compiling, no timing)."""
    return _untimed(ex_id, keep=lambda case: "trace" in case, **overrides)


def _fails_on(record, *fragments):
    assert record["score"] == 0, record
    for fragment in fragments:
        assert fragment in record["message"], record["message"]
    assert record["hint"]
    return record["message"]


def _fails_untimed(ex_id, *fragments, **overrides):
    """Like ``_fails``, without the timed case."""
    return _fails_on(_untimed(ex_id, **overrides), *fragments)


def _fails_traced(ex_id, *fragments, **overrides):
    """Like ``_fails``, on the traced cases alone."""
    return _fails_on(_traced(ex_id, **overrides), *fragments)


def _judge(ex_id, case, obs):
    """Judge a (forged) observation of one of the grader's own cases."""
    registry.get(ex_id).check.judge(case, obs, registry.Tester())


# ---- references pass, stubs hear only "not implemented yet" ---------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    assert len(rec["passed"]) >= 4


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "03_cpu_operators.ipynb")
    assert (report.score, report.max_score) == (7, 7), report.results


def test_exercise_notebook_gets_zero_and_no_hints(graded):
    report = graded(ROOT / "exercises" / "03_cpu_operators.ipynb")
    assert (report.score, report.max_score) == (0, 7), report.results
    for r in report.results:
        assert r.message == NOT_IMPLEMENTED, r


def _stubs():
    @njit
    def matmul_ikj(A, B, C):
        raise NotImplementedError("your code here")

    @njit
    def matmul_tiled(A, B, C):
        raise NotImplementedError("your code here")

    @njit(parallel=True)
    def parallel_sum(x):
        raise NotImplementedError("your code here")

    return {"cpu_operators.matmul_ikj": {"matmul_ikj": matmul_ikj},
            "cpu_operators.matmul_tiled": {"matmul_tiled": matmul_tiled, "TILE": 64},
            "cpu_operators.parallel_sum": {"parallel_sum": parallel_sum}}


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_is_not_implemented_and_gets_no_hint(ex_id):
    rec = _run(ex_id, **_stubs()[ex_id])
    assert rec["score"] == 0
    assert "not implemented yet" in rec["message"], rec["message"]
    assert rec["hint"] == ""


def test_missing_definition():
    rec = run_check("cpu_operators.matmul_ikj", {})
    assert "`matmul_ikj` is not defined" in rec["message"]
    assert rec["score"] == 0 and rec["hint"] == ""


@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges_not_code(ex_id):
    hint = registry.get(ex_id).hint
    assert hint and not any(s in hint for s in ("=", "range(", "[", "prange(x"))


# ---- wrong solutions fail with a useful message ---------------------------------------------

def test_matmul_ikj_failures():
    _fails_untimed("cpu_operators.matmul_ikj", "compiled with Numba",
                   matmul_ikj=matmul_ikj.py_func)

    @njit
    def garbage_in_c(A, B, C):  # forgets to zero C
        for i in range(A.shape[0]):
            for k in range(A.shape[1]):
                for j in range(B.shape[1]):
                    C[i, j] += A[i, k] * B[k, j]

    _fails_untimed("cpu_operators.matmul_ikj", "(1x1) @ (1x1) float32", "nan",
                   matmul_ikj=garbage_in_c)

    @njit
    def slow(A, B, C):  # right answer, computed by the column-walking order, three times
        for _ in range(3):
            for i in range(A.shape[0]):
                for j in range(B.shape[1]):
                    acc = 0.0
                    for k in range(A.shape[1]):
                        acc += A[i, k] * B[k, j]
                    C[i, j] = acc

    # the order of its reads of B shows it before any timing
    _fails_untimed("cpu_operators.matmul_ikj", "walks along a row of B",
                   "Which loop is innermost?", matmul_ikj=slow)

    @njit
    def raises(A, B, C):
        raise ValueError("oops")

    _fails_untimed("cpu_operators.matmul_ikj", "your code raised ValueError: oops",
                   matmul_ikj=raises)


def test_matmul_tiled_failures():
    @njit
    def drops_edges(A, B, C):  # only whole tiles: the ragged edges stay garbage
        n, K = A.shape
        m = B.shape[1]
        C[:] = np.nan
        for i0 in range(0, n - n % TILE, TILE):
            for j0 in range(0, m - m % TILE, TILE):
                for i in range(i0, i0 + TILE):
                    for j in range(j0, j0 + TILE):
                        acc = 0.0
                        for k in range(K):
                            acc += A[i, k] * B[k, j]
                        C[i, j] = acc

    _fails_untimed("cpu_operators.matmul_tiled", "(1T+3 x 1T+5) @ (1T+5 x 0T+7) float32",
                   "first mismatch", matmul_tiled=drops_edges)

    @njit
    def slow(A, B, C):  # tiled, but the whole product is computed eight times over
        n, K = A.shape
        m = B.shape[1]
        for _ in range(8):
            C[:] = 0
            for i0 in range(0, n, TILE):
                for k0 in range(0, K, TILE):
                    for j0 in range(0, m, TILE):
                        for i in range(i0, min(i0 + TILE, n)):
                            for k in range(k0, min(k0 + TILE, K)):
                                for j in range(j0, min(j0 + TILE, m)):  # does not vectorize
                                    C[i, j] += A[i, k] * B[k, j]

    _fails("cpu_operators.matmul_tiled", "as fast as the untiled ikj loop", "vectorizing",
           matmul_tiled=slow)

    @njit
    def wrong_when_timed(A, B, C):  # right on the small cases, garbage at 256
        n, K = A.shape
        m = B.shape[1]
        C[:] = 0
        for i0 in range(0, n, TILE):
            for k0 in range(0, K, TILE):
                for j0 in range(0, m, TILE):
                    jn = min(TILE, m - j0)
                    for i in range(i0, min(i0 + TILE, n)):
                        Ci = C[i, j0:j0 + jn]
                        for k in range(k0, min(k0 + TILE, K)):
                            a = A[i, k]
                            Bk = B[k, j0:j0 + jn]
                            for jj in range(jn):
                                Ci[jj] += a * Bk[jj]
        if A.shape[0] == 256:
            C[0, 0] = 1e9

    _fails("cpu_operators.matmul_tiled", "the timed call's result",
           matmul_tiled=wrong_when_timed)
    @njit
    def delegates(A, B, C):  # the loops live in another compiled function
        _another_kernel(A, B, C)

    _fails_untimed("cpu_operators.matmul_tiled", "only 0 reads of B",
                   "another compiled function", matmul_tiled=delegates)
    _fails_untimed("cpu_operators.matmul_tiled", "TILE is an int between 4 and 128", TILE=1024)
    _fails_untimed("cpu_operators.matmul_tiled", "TILE is an int between 4 and 128", TILE="64")


def test_untiled_ikj_is_not_a_tiled_matmul():
    """The old check passed an ikj loop that ignores the tile (it is ~10x faster than ijk):
    now the order of its reads of B shows that no TILE x TILE block is reused."""
    msg = _fails_untimed("cpu_operators.matmul_tiled", "is tiled by TILE", "whole rows of B",
                         matmul_tiled=matmul_ikj)
    assert "with TILE = 4" in msg, msg

    @njit
    def fixed_tile(A, B, C):  # tiled, but by a literal 64 instead of TILE
        n, K = A.shape
        m = B.shape[1]
        C[:] = 0
        for i0 in range(0, n, 64):
            for k0 in range(0, K, 64):
                for j0 in range(0, m, 64):
                    for i in range(i0, min(i0 + 64, n)):
                        for k in range(k0, min(k0 + 64, K)):
                            for j in range(j0, min(j0 + 64, m)):
                                C[i, j] += A[i, k] * B[k, j]

    _fails_untimed("cpu_operators.matmul_tiled", "is tiled by TILE", matmul_tiled=fixed_tile)

    @njit
    def k_panels_only(A, B, C):  # tiles i and k but sweeps whole rows of B along j
        n, K = A.shape
        m = B.shape[1]
        C[:] = 0
        for i0 in range(0, n, TILE):
            for k0 in range(0, K, TILE):
                for i in range(i0, min(i0 + TILE, n)):
                    for k in range(k0, min(k0 + TILE, K)):
                        a = A[i, k]
                        for j in range(m):
                            C[i, j] += a * B[k, j]

    _fails_untimed("cpu_operators.matmul_tiled", "is tiled by TILE", matmul_tiled=k_panels_only)


def test_tiled_variants_pass_the_trace():
    """Other correct tilings: a dot product inside each tile, and numpy slices."""
    from mlc.grading.checks import cpu_operators as co

    def dot_in_tile(A, B, C):
        n, K = A.shape
        m = B.shape[1]
        C[:] = 0
        for i0 in range(0, n, TILE):
            for j0 in range(0, m, TILE):
                for k0 in range(0, K, TILE):
                    for i in range(i0, min(i0 + TILE, n)):
                        for j in range(j0, min(j0 + TILE, m)):
                            acc = 0.0
                            for k in range(k0, min(k0 + TILE, K)):
                                acc += A[i, k] * B[k, j]
                            C[i, j] += acc

    def slices(A, B, C):
        n, K = A.shape
        m = B.shape[1]
        C[:] = 0
        for i0 in range(0, n, TILE):
            for k0 in range(0, K, TILE):
                for j0 in range(0, m, TILE):
                    j1 = min(j0 + TILE, m)
                    for i in range(i0, min(i0 + TILE, n)):
                        for k in range(k0, min(k0 + TILE, K)):
                            C[i, j0:j1] += A[i, k] * B[k, j0:j1]

    rng = np.random.default_rng(0)
    for fn in (matmul_tiled, dot_in_tile, slices):
        for tile, (n, k, m) in co._TRACES:
            A, B = rng.standard_normal((n, k)), rng.standard_normal((k, m))
            C = np.full((n, m), np.nan)
            reads = co.traced_run(fn, tile, A, B, C)
            assert np.allclose(C, A @ B)
            assert reads.size == n * k * m
            assert co.window_distinct(reads, tile ** 3) <= 2 * tile * tile, fn
    reads = co.traced_run(matmul_ikj, 4, A, B, C)
    assert co.window_distinct(reads, 64) == 64


def test_parallel_sum_failures():
    @njit
    def parallel_sum(x):  # sequential: no parallel=True
        total = 0.0
        for i in range(x.size):
            total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "parallel=True", parallel_sum=parallel_sum)

    @njit(parallel=True)
    def parallel_sum(x):  # noqa: F811 - parallel, but no prange loop
        return x.sum()

    # numba's x.sum() of float32 adds in float32: the hidden float32 case fails it before
    # the source rule (no prange loop) is read
    _fails("cpu_operators.parallel_sum", "2^25 and then ones", parallel_sum=parallel_sum)

    @njit(parallel=True)
    def skips_first(x):
        total = 0.0
        for i in prange(1, x.size):
            total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "parallel_sum of 1 float64 elements", "expected 2.5",
           parallel_sum=skips_first)

    @njit(parallel=True)
    def clobbers(x):
        total = 0.0
        for i in prange(x.size):
            total += x[i]
            x[i] = 0.0
        return total

    _fails("cpu_operators.parallel_sum", "leaves its input unchanged", parallel_sum=clobbers)

    @njit(parallel=True)
    def returns_array(x):
        return x[:1]

    _fails("cpu_operators.parallel_sum", "expected shape ()", parallel_sum=returns_array)


def test_parallel_sum_prange_of_one_around_a_serial_loop_scores_zero():
    @njit(parallel=True)
    def parallel_sum(x):
        total = 0.0
        for _ in prange(1):
            for i in range(x.size):
                total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "does not depend on x", parallel_sum=parallel_sum)


def test_parallel_sum_idle_prange_loop_and_numpy_sum_scores_zero():
    @njit(parallel=True)
    def parallel_sum(x):
        n = 0
        for i in prange(x.size):  # noqa: B007 - the wrong answer under test
            n += 1
        return np.sum(x.astype(np.float64))

    _fails("cpu_operators.parallel_sum", "reads x", parallel_sum=parallel_sum)


def test_parallel_sum_shared_accumulator_scores_zero():
    @njit(parallel=True)
    def parallel_sum(x):
        out = np.zeros(1)
        for i in prange(x.size):
            out[0] += x[i]
        return out[0]

    # Which way the race shows depends on how the threads interleave: as a wrong sum, or
    # (when the sums happened to come out right) through the rule against a shared element.
    rec = _run("cpu_operators.parallel_sum", parallel_sum=parallel_sum)
    assert rec["score"] == 0, rec
    assert "race" in rec["message"] or "expected" in rec["message"], rec["message"]


def test_parallel_sum_over_chunks_passes_the_source_rule():
    cell = ("@njit(parallel=True)\ndef parallel_sum(x):\n    n = x.size\n"
            "    chunks = (n + 1023) // 1024\n    partial = np.zeros(chunks)\n"
            "    for c in prange(chunks):\n"
            "        for i in range(c * 1024, min(n, (c + 1) * 1024)):\n"
            "            partial[c] += x[i]\n    return partial.sum()\n")
    registry.get("cpu_operators.parallel_sum").check.inspect(Sources([cell]), registry.Tester())


def test_parallel_sum_source_rule():
    check = registry.get("cpu_operators.parallel_sum").check
    check.inspect(Sources(["@njit(parallel=True)\ndef parallel_sum(x):\n    t = 0.0\n"
                           "    for i in prange(x.size):\n        t += x[i]\n    return t\n"]),
                  registry.Tester())
    for cells in (["@njit(parallel=True)\ndef parallel_sum(x):\n    return x.sum()\n"], []):
        with pytest.raises(CheckFailed, match="prange"):
            check.inspect(Sources(cells), registry.Tester())


# ---- the judge bounds what the worker measured ----------------------------------------------

def _speed_case(ex_id):
    return next(c for c in registry.get(ex_id).check.cases() if c.get("speed"))


@pytest.mark.parametrize("rounds,fragment", [
    ([1e-3] * 4, "malformed"),                   # too few rounds
    ([1e-3] * 4 + ["fast"], "malformed"),        # not numbers
    ([1e-3] * 4 + [float("nan")], "cannot be a real measurement"),
    ([1e-3] * 4 + [-1.0], "cannot be a real measurement"),
    ([1e-3] * 4 + [0.0], "cannot be a real measurement"),
    ([1e-3] * 4 + [1e-9], "cannot be a real measurement"),  # 34 PFLOP/s
    ([1e-3] * 4 + [1e6], "cannot be a real measurement"),
])
def test_forged_timings_are_refused(rounds, fragment):
    case = _speed_case("cpu_operators.matmul_ikj")
    C = case["A"].astype(np.float64) @ case["B"]
    obs = {"numba": True, "C": C, "t_ref": [0.05] * 5, "t_fn": rounds}
    with pytest.raises(CheckFailed, match=fragment) as err:
        _judge("cpu_operators.matmul_ikj", case, obs)
    assert "worker" in str(err.value)


def test_plausible_timings_are_judged_by_their_best_round():
    case = _speed_case("cpu_operators.matmul_ikj")
    C = case["A"].astype(np.float64) @ case["B"]
    _judge("cpu_operators.matmul_ikj", case,
           {"numba": True, "C": C, "t_ref": [0.05] * 5, "t_fn": [0.04] * 4 + [0.01]})
    with pytest.raises(CheckFailed, match="2x faster"):
        _judge("cpu_operators.matmul_ikj", case,
               {"numba": True, "C": C, "t_ref": [0.05] * 4 + [0.01], "t_fn": [0.01] * 5})
    with pytest.raises(CheckFailed, match="timed call's result"):
        _judge("cpu_operators.matmul_ikj", case,
               {"numba": True, "C": None, "t_ref": [0.05] * 5, "t_fn": [0.01] * 5})


def test_untimed_pure_python_fails_without_being_timed():
    case = _speed_case("cpu_operators.matmul_tiled")
    with pytest.raises(CheckFailed, match="compiled with Numba"):
        _judge("cpu_operators.matmul_tiled", case, {"numba": False})


# ---- issue 20's audit: wrong answers that once scored, each now graded 0 --------------------

def test_traced_reference_passes_the_ikj_trace():
    assert _traced("cpu_operators.matmul_ikj")["score"] == 2


def test_matmul_ikj_that_is_fast_without_the_loop_order_fails():
    """Three ways past the 2x bar that skip the idea: the ijk loop spread over threads
    (fast with enough cores), B copied transposed first (a dot product along rows of both:
    scored 2 before the trace), the product handed to numpy (under Numba it needs SciPy)."""
    @njit(parallel=True)
    def threaded_ijk(A, B, C):
        for i in prange(A.shape[0]):
            for j in range(B.shape[1]):
                acc = 0.0
                for k in range(A.shape[1]):
                    acc += A[i, k] * B[k, j]
                C[i, j] = acc

    _fails_traced("cpu_operators.matmul_ikj", "walks along a row of B", "0% of successive",
                  "Which loop is innermost?", matmul_ikj=threaded_ijk)

    @njit
    def transposed_b(A, B, C):
        Bt = B.T.copy()
        for i in range(A.shape[0]):
            for j in range(B.shape[1]):
                acc = 0.0
                for k in range(A.shape[1]):
                    acc += A[i, k] * Bt[j, k]
                C[i, j] = acc

    _fails_traced("cpu_operators.matmul_ikj", "one read of B per multiply-add",
                  "0 reads of B", "another layout", matmul_ikj=transposed_b)

    @njit
    def blas(A, B, C):
        C[:] = np.dot(A, B)

    _fails_traced("cpu_operators.matmul_ikj", "one read of B per multiply-add",
                  "160 reads of B were recorded for 960", "np.dot", matmul_ikj=blas)


def test_matmul_ikj_over_whole_rows_passes_the_trace():
    """Row slices (``C[i, :] += a * B[k, :]``) and the k-i-j order walk B along rows too."""
    @njit
    def row_slices(A, B, C):
        C[:] = 0
        for i in range(A.shape[0]):
            for k in range(A.shape[1]):
                C[i, :] += A[i, k] * B[k, :]

    @njit
    def kij(A, B, C):
        C[:] = 0
        for k in range(A.shape[1]):
            for i in range(A.shape[0]):
                a = A[i, k]
                for j in range(B.shape[1]):
                    C[i, j] += a * B[k, j]

    for fn in (row_slices, kij):
        rec = _traced("cpu_operators.matmul_ikj", matmul_ikj=fn)
        assert rec["score"] == 2, rec["message"]


def test_parallel_sum_with_a_float32_total_fails():
    """The exercise asks for a float64 total: in float32, 2^25 + 1 is 2^25 again."""
    @njit(parallel=True)
    def parallel_sum(x):
        total = np.float32(0.0)
        for i in prange(x.size):
            total += x[i]
        return total

    _fails("cpu_operators.parallel_sum", "2^25 and then ones", "expected 33654434",
           parallel_sum=parallel_sum)


def test_parallel_sum_over_the_threads_passes_the_source_rule():
    """One chunk per thread, the loop over Numba's thread count: it shares out x too."""
    check = registry.get("cpu_operators.parallel_sum").check
    for count in ("numba.get_num_threads()", "get_num_threads()"):
        cell = ("@njit(parallel=True)\ndef parallel_sum(x):\n"
                f"    nt = {count}\n    partial = np.zeros(nt)\n"
                "    chunk = (x.size + nt - 1) // nt\n    for t in prange(nt):\n"
                "        for i in range(t * chunk, min(x.size, (t + 1) * chunk)):\n"
                "            partial[t] += x[i]\n    return partial.sum()\n")
        check.inspect(Sources([cell]), registry.Tester())


def test_matmuls_that_set_c_at_the_first_k_fail_when_k_is_zero():
    """Writing C at k == 0 instead of zeroing it first saves a pass, and leaves C's garbage
    when K = 0 (no k at all): the product of empty sums is zeros."""
    @njit
    def first_k_sets(A, B, C):
        n, K = A.shape
        m = B.shape[1]
        for i in range(n):
            for k in range(K):
                a = A[i, k]
                if k == 0:
                    for j in range(m):
                        C[i, j] = a * B[k, j]
                else:
                    for j in range(m):
                        C[i, j] += a * B[k, j]

    _fails_untimed("cpu_operators.matmul_ikj", "(4x0) @ (0x3) float64", "nan",
                   matmul_ikj=first_k_sets)

    @njit
    def tile_zeroed_at_k0(A, B, C):
        n, K = A.shape
        m = B.shape[1]
        for i0 in range(0, n, TILE):
            for k0 in range(0, K, TILE):
                for j0 in range(0, m, TILE):
                    jn = min(TILE, m - j0)
                    for i in range(i0, min(i0 + TILE, n)):
                        Ci = C[i, j0:j0 + jn]
                        if k0 == 0:
                            Ci[:] = 0
                        for k in range(k0, min(k0 + TILE, K)):
                            a = A[i, k]
                            Bk = B[k, j0:j0 + jn]
                            for jj in range(jn):
                                Ci[jj] += a * Bk[jj]

    _fails_untimed("cpu_operators.matmul_tiled", "(1T+0 x 0T+0) @ (0T+0 x 0T+5)", "nan",
                   matmul_tiled=tile_zeroed_at_k0)


def test_parallel_sum_into_partials_indexed_by_i_mod_8_scores_zero():
    """One partial per residue is no partial per thread: iterations i and i + 8 may run on
    different threads and update one element (the race need not show in the sums)."""
    @njit(parallel=True)
    def parallel_sum(x):
        partial = np.zeros(8)
        for i in prange(x.size):
            partial[i % 8] += x[i]
        return partial.sum()

    # as with one shared element: a lost update shows as a wrong sum, else the rule names it
    rec = _run("cpu_operators.parallel_sum", parallel_sum=parallel_sum)
    assert rec["score"] == 0 and rec["hint"], rec
    assert ("`partial[i % 8] += x[i]`" in rec["message"] and "race" in rec["message"]
            or "expected" in rec["message"]), rec["message"]

"""Unit 03, CPU operators: loop order, tiling and parallel reductions with Numba.

Each check follows the grader's split (see :mod:`mlc.grading.registry`): ``cases`` and
``judge`` run in the grader, ``observe`` next to the student's code.

The grader sends hidden shapes (odd, rectangular, smaller than a tile, empty) with an
output ``C`` full of NaN (garbage must not leak into the result); the worker calls the
student's ``@njit`` function and sends back what it wrote, and the judge compares with
numpy. The two matmul exercises are also about speed: their last case *times* the
student's kernel against a naive ijk loop in the worker, in the same process and
interleaved (a load spike then slows both), with :func:`mlc.perf.timeit`. The worker
reports every round's time; the judge takes the best of each, rejects measurements that
cannot be true, and asks for margins several times smaller than a correct solution's.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, call, exercise, need

NB = "03_cpu_operators"
SPEED_N = 256  # the size at which speed is compared: 2 * 256^3 = 34 MFLOP per call
ROUNDS = 5  # timed rounds of each kernel, interleaved
MAX_SECONDS = 600.0  # a round longer than this is not a measurement but a hang
MAX_GFLOPS = 10_000.0  # 10 TFLOP/s: faster than any CPU this course runs on

_REF = {}


def _naive_ijk():
    """The timing reference: i, j, then k innermost, so B is read down a column."""
    if "ijk" not in _REF:
        from numba import njit

        @njit(cache=True)
        def matmul_ijk(A, B, C):
            n, K = A.shape
            m = B.shape[1]
            for i in range(n):
                for j in range(m):
                    acc = 0.0
                    for k in range(K):
                        acc += A[i, k] * B[k, j]
                    C[i, j] = acc

        _REF["ijk"] = matmul_ijk
    return _REF["ijk"]


# ---- in the worker ------------------------------------------------------------------------------

def _is_njit(fn) -> bool:
    from numba.core.dispatcher import Dispatcher

    return isinstance(fn, Dispatcher)


def _number(v):
    """A returned value as data: a numeric array (0-d for a scalar), else its repr."""
    try:
        a = np.asarray(v)
    except Exception:  # noqa: BLE001 - the student may return anything
        a = None
    if a is not None and a.dtype.kind in "biuf":
        return a.item() if a.ndim == 0 else a  # a 0-d array would arrive as shape (1,)
    return repr(v)[:200]


def _timed_rounds(what, fn, A, B, extra):
    """Interleaved rounds of the naive loop and ``fn`` on the same operands: seconds each."""
    from mlc.perf import timeit

    ref = _naive_ijk()
    C_ref = np.full((A.shape[0], B.shape[1]), np.nan, A.dtype)
    C = C_ref.copy()
    ref(A, B, C_ref)  # compile (or load from the cache) before timing
    call(what, fn, A, B, C, *extra)
    t_ref, t_fn = [], []
    for _ in range(ROUNDS):
        t_ref.append(float(timeit(lambda: ref(A, B, C_ref), repeat=1, number=1, warmup=0)))
        t_fn.append(float(call(what, timeit, lambda: fn(A, B, C, *extra), repeat=1,
                               number=1, warmup=0)))
    return {"t_ref": t_ref, "t_fn": t_fn, "C": C}


class _Matmul(Check):
    """Correctness cases, then one speed case; shared by the two matmul exercises."""

    name = ""  # the student's function
    label = ""  # how the speed case names the call it times
    min_speedup = 1.0
    speed_detail = ""  # the nudge when it is too slow

    def speed_case(self, rng, extra):
        A = rng.uniform(-1, 1, (SPEED_N, SPEED_N)).astype(np.float32)
        B = rng.uniform(-1, 1, (SPEED_N, SPEED_N)).astype(np.float32)
        return {"what": f"{self.name} timed against the naive ijk loop at "
                        f"{SPEED_N}x{SPEED_N}x{SPEED_N}", "speed": True, "A": A, "B": B,
                "extra": list(extra)}

    def observe(self, ns, case):
        fn = need(ns, self.name)
        out = {"numba": _is_njit(fn)}
        A, B, extra = case["A"], case["B"], tuple(case["extra"])
        if case.get("speed"):
            if out["numba"]:  # a pure-Python loop is not timed (it would take minutes)
                out.update(_timed_rounds(case["what"], fn, A, B, extra))
        else:
            C = case["C"]
            call(case["what"], fn, A, B, C, *extra)
            out["C"] = C
        return out

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        _fact(t, obs.get("numba"), f"`{self.name}` is a Numba @njit function",
               f"it should be compiled with Numba: keep @njit (from numba import njit) on "
               f"the line above `def {self.name}`")
        A = np.asarray(case["A"], np.float64)
        B = np.asarray(case["B"], np.float64)
        if not case.get("speed"):
            tol = 1e-4 if case["C"].dtype == np.float32 else 1e-10
            t.close(obs.get("C"), A @ B, case["what"], rtol=tol, atol=tol)
            return
        t.close(obs.get("C"), A @ B, f"{case['what']}: the timed call's result",
                rtol=1e-4, atol=1e-4)
        best_ref = _best(obs.get("t_ref"), "the naive loop", case["what"], t)
        best_fn = _best(obs.get("t_fn"), f"`{self.name}`", case["what"], t)
        ratio = best_ref / best_fn
        t.true(ratio >= self.min_speedup, f"{self.label} is at least {self.min_speedup:g}x "
               f"faster than the naive ijk loop at {SPEED_N}x{SPEED_N}x{SPEED_N}",
               f"ijk took {best_ref * 1e3:.1f} ms, yours {best_fn * 1e3:.1f} ms: "
               f"{ratio:.2f}x. {self.speed_detail}")


def _fact(t, cond, what: str, detail: str) -> None:
    """Like ``t.true``, for a fact of the exercise that every case repeats: listed once."""
    if cond is not True:
        t.fail(f"{what}: failed ({detail})")
    if what not in t.passed:
        t.passed.append(what)


def _best(rounds, who, what, t) -> float:
    """The fastest of the worker's timed rounds, after bounding what it reported."""
    if not (isinstance(rounds, list) and len(rounds) == ROUNDS
            and all(isinstance(r, float) for r in rounds)):
        t.fail(f"{what}: the worker's timing of {who} is malformed (expected {ROUNDS} "
               f"rounds in seconds, got {_short(rounds)})")
    fastest = 2 * SPEED_N ** 3 / (MAX_GFLOPS * 1e9)
    for r in rounds:
        if not (math.isfinite(r) and fastest <= r <= MAX_SECONDS):
            t.fail(f"{what}: the worker measured {who} at {r!r} s per call, which cannot be "
                   f"a real measurement (it must lie between {fastest:.1e} s, "
                   f"{MAX_GFLOPS:g} GFLOP/s, and {MAX_SECONDS:g} s)")
    return min(rounds)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _matmul_cases(name, shapes, extra=()):
    """Hidden operands; every group draws from a fresh rng, as the old check did."""
    rng = np.random.default_rng(3)
    out = []
    for n, k, m, dtype in shapes:
        A = rng.uniform(-1, 1, (n, k)).astype(dtype)
        B = rng.uniform(-1, 1, (k, m)).astype(dtype)
        C = np.full((n, m), np.nan, dtype)  # garbage in C must not leak into the result
        what = f"({n}x{k}) @ ({k}x{m}) {np.dtype(dtype).name}" + "".join(
            f", {e}" for e in extra)
        out.append({"what": what, "A": A, "B": B, "C": C, "extra": list(extra)})
    return out


# ---- the exercises ------------------------------------------------------------------------------

@exercise("cpu_operators.matmul_ikj", points=2, notebook=NB, needs=("matmul_ikj",),
          hint="the order of the three loops decides how B and C are walked through memory: "
               "make the innermost loop read with stride 1 (the lecture's loop-order "
               "section); C arrives holding garbage, so give it a defined start")
class _MatmulIkj(_Matmul):
    name = label = "matmul_ikj"
    min_speedup = 2.0
    speed_detail = ("which loop is innermost decides the stride at which B and C are "
                    "read: the innermost loop should walk along a row")

    def cases(self):
        out = _matmul_cases(self.name, [(1, 1, 1, np.float32), (3, 5, 2, np.float32),
                                        (17, 9, 13, np.float32), (8, 32, 1, np.float64),
                                        (64, 64, 64, np.float32)])
        return out + [self.speed_case(np.random.default_rng(4), ())]


@exercise("cpu_operators.matmul_tiled", points=3, notebook=NB, needs=("matmul_tiled",),
          hint="tiles at the edges of a matrix that is no multiple of the tile are smaller, "
               "so clip each tile to the matrix; for speed, see what lets Numba vectorize "
               "the innermost loop (stride-1 access, a loop index that starts at 0)")
class _MatmulTiled(_Matmul):
    name, label = "matmul_tiled", "matmul_tiled(tile=64)"
    min_speedup = 1.2
    speed_detail = ("Is the innermost loop stride-1, and does it start at 0 (a signed index "
                    "that might be negative stops Numba from vectorizing)?")

    def cases(self):
        out = []
        # odd shapes that are no multiple of the tile, a tile larger than the matrix, tile 1
        for tile, shapes in [(8, [(37, 53, 29, np.float32), (16, 16, 16, np.float32)]),
                             (16, [(5, 3, 7, np.float32), (33, 17, 65, np.float64)]),
                             (1, [(4, 3, 5, np.float32)]),
                             (32, [(70, 40, 100, np.float32)])]:
            out += _matmul_cases(self.name, shapes, extra=(tile,))
        return out + [self.speed_case(np.random.default_rng(4), (64,))]


def _sum_cases():
    rng = np.random.default_rng(5)
    xs = [np.zeros(0, np.float64), np.array([2.5]), rng.uniform(-1, 1, 7),
          rng.uniform(0, 1, 1001).astype(np.float32), np.ones(100_000, np.float32),
          rng.uniform(-1, 1, 1_000_003)]
    return [{"what": f"parallel_sum of {x.size} {x.dtype.name} elements", "x": x} for x in xs]


@exercise("cpu_operators.parallel_sum", points=2, notebook=NB, needs=("parallel_sum",),
          hint="let Numba split the loop across threads (the lecture's prange section): "
               "accumulate into a local scalar, which Numba turns into one partial sum per "
               "thread; several threads writing one shared array element is a race")
class _ParallelSum(Check):
    def cases(self):
        return _sum_cases()

    def observe(self, ns, case):
        fn = need(ns, "parallel_sum")
        numba = _is_njit(fn)
        parallel = bool(numba and fn.targetoptions.get("parallel"))
        x = case["x"]
        got = call(case["what"], fn, x)
        return {"numba": numba, "parallel": parallel, "sum": _number(got), "x": x}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        _fact(t, obs.get("numba"), "`parallel_sum` is a Numba @njit function",
               "it should be compiled with Numba: keep @njit(parallel=True) on the line "
               "above `def parallel_sum`")
        _fact(t, obs.get("parallel"), "parallel_sum is compiled with parallel=True",
               "decorate it with @njit(parallel=True)")
        x = case["x"]
        tol = 1e-5 if x.dtype == np.float32 else 1e-9
        t.close(obs.get("sum"), np.sum(x, dtype=np.float64), case["what"], rtol=tol, atol=tol)
        t.equal(obs.get("x"), x, f"{case['what']} leaves its input unchanged")

    def inspect(self, src, t):
        d = src.definition("parallel_sum")
        t.true(d is not None and "prange" in d.calls(), "parallel_sum loops with prange",
               "its loop over x should be a prange loop (from numba import prange)"
               if d is not None else
               "no top-level definition of parallel_sum was found in the notebook")


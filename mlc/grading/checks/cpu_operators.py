"""Unit 03, CPU operators: loop order and tiling with Numba (the parallel sum is in
:mod:`.cpu_operators_sum`, the record of the reads of B in :mod:`.cpu_operators_trace`).

Each check follows the grader's split (see :mod:`mlc.grading.registry`): ``cases`` and
``judge`` run in the grader, ``observe`` next to the student's code.

The grader sends hidden shapes (odd, rectangular, smaller than a tile, empty) with an
output ``C`` full of NaN (garbage must not leak into the result); the worker calls the
student's ``@njit`` function and sends back what it wrote, and the judge compares with
numpy. The two matmul exercises are also about speed: their last case *times* the student's
kernel in a fresh process that holds only the student's definitions
(:mod:`mlc.grading.fresh`: no cell of the notebook can script the timer there), interleaved
with a reference (a load spike then slows both), with :func:`mlc.perf.timeit`:
``matmul_ikj`` against the naive ijk loop, ``matmul_tiled`` against the untiled ikj loop
(tiling must keep ikj's vectorized inner loop). The worker reports every round's time; the
judge takes the best of each, rejects measurements that cannot be true, and asks for
margins several times smaller than a correct solution's.

``matmul_tiled`` uses a module-level ``TILE``, a compile-time constant as in unit 04. That
it is *tiled* is observed, not read from the source: the worker runs the function's body as
plain Python with ``TILE`` set to 4 and to 8 and records the order in which it reads the
elements of B (:func:`traced_run`). A tiled kernel works on one ``TILE x TILE`` block of B at
a time, so any ``TILE**3`` consecutive reads touch at most about ``2 * TILE**2`` distinct
elements; an ikj loop that ignores ``TILE`` sweeps whole rows of B and touches ``TILE**3``.
The same record shows ``matmul_ikj``'s loop order: one read of B per multiply-add, and
successive reads that are neighbours in memory (a row of B, the innermost loop). Speed
alone cannot tell: an ijk loop spread over threads with ``prange``, or B copied transposed
first, beats the serial ijk loop without the loop order the exercise is about.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, call, exercise, need
from .cpu_operators_trace import traced_run, window_distinct

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


def _ikj():
    """The reference of the tiled exercise: the loop-order fix, untiled."""
    if "ikj" not in _REF:
        from numba import njit

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

        _REF["ikj"] = matmul_ikj
    return _REF["ikj"]


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


def _timed_rounds(what, fn, A, B, extra, reference="ijk"):
    """Interleaved rounds of a reference loop and ``fn`` on the same operands: seconds each."""
    from mlc.perf import timeit

    ref = _naive_ijk() if reference == "ijk" else _ikj()
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
    reference = "ijk"  # the loop it is timed against
    min_speedup = 1.0
    speed_detail = ""  # the nudge when it is too slow

    def speed_case(self, rng, extra):
        A = rng.uniform(-1, 1, (SPEED_N, SPEED_N)).astype(np.float32)
        B = rng.uniform(-1, 1, (SPEED_N, SPEED_N)).astype(np.float32)
        return {"what": f"{self.name} timed against the {self.ref_name} at "
                        f"{SPEED_N}x{SPEED_N}x{SPEED_N}", "speed": True, "A": A, "B": B,
                "extra": list(extra)}

    def observe(self, ns, case):
        fn = need(ns, self.name)
        out = {"numba": _is_njit(fn)}
        A, B, extra = case["A"], case["B"], tuple(case.get("extra", ()))
        if "trace" in case:
            C = case["C"].copy()
            out["reads"] = call(case["what"], traced_run, fn, case["trace"], A, B, C)
            out["C"] = C
        elif case.get("speed"):
            if out["numba"]:  # a pure-Python loop is not timed (it would take minutes)
                out.update(_timed_rounds(case["what"], fn, A, B, extra, self.reference))
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
        if "trace" in case:
            return self.judge_trace(case, obs, t)
        A = np.asarray(case["A"], np.float64)
        B = np.asarray(case["B"], np.float64)
        if not case.get("speed"):
            tol = 1e-4 if case["C"].dtype == np.float32 else 1e-10
            t.close(obs.get("C"), A @ B, case["what"], rtol=tol, atol=tol)
            return
        t.close(obs.get("C"), A @ B, f"{case['what']}: the timed call's result",
                rtol=1e-4, atol=1e-4)
        best_ref = _best(obs.get("t_ref"), f"the {self.ref_name}", case["what"], t)
        best_fn = _best(obs.get("t_fn"), f"`{self.name}`", case["what"], t)
        ratio = best_ref / best_fn
        claim = (f"at least {self.min_speedup:g}x faster than" if self.min_speedup > 1 else
                 f"at least {self.min_speedup:g}x as fast as")
        t.true(ratio >= self.min_speedup, f"{self.label} is {claim} the {self.ref_name} at "
               f"{SPEED_N}x{SPEED_N}x{SPEED_N}",
               f"{self.reference} took {best_ref * 1e3:.1f} ms, yours {best_fn * 1e3:.1f} ms: "
               f"{ratio:.2f}x. {self.speed_detail}")

    def judge_trace(self, case, obs, t):
        """What the order of the reads of B shows (see :func:`traced_run`)."""
        raise NotImplementedError("a traced _Matmul defines judge_trace()")  # abstract

    def trace_reads(self, case, obs, t):
        """The checked result and record of a traced run: the flat indices of B read."""
        t.close(obs.get("C"), case["A"] @ case["B"], f"{case['what']}: the result",
                rtol=1e-10, atol=1e-10)
        reads = obs.get("reads")
        size = case["B"].size
        if not (isinstance(reads, np.ndarray) and reads.ndim == 1 and reads.dtype.kind in "iu"
                and (reads.size == 0 or (reads.min() >= 0 and reads.max() < size))):
            t.fail(f"{case['what']}: the worker's record of the reads is malformed")
        return reads

    @property
    def ref_name(self):
        return "naive ijk loop" if self.reference == "ijk" else "untiled ikj loop"


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
          fresh="speed",
          hint="the order of the three loops decides how B and C are walked through memory: "
               "make the innermost loop read with stride 1 (the lecture's loop-order "
               "section); C arrives holding garbage, so give it a defined start")
class _MatmulIkj(_Matmul):
    name = label = "matmul_ikj"
    min_speedup = 2.0
    speed_detail = ("which loop is innermost decides the stride at which B and C are "
                    "read: the innermost loop should walk along a row")

    def cases(self):
        # K = 0: a product of empty sums is all zeros, whatever C held before
        out = _matmul_cases(self.name, [(1, 1, 1, np.float32), (3, 5, 2, np.float32),
                                        (17, 9, 13, np.float32), (8, 32, 1, np.float64),
                                        (64, 64, 64, np.float32), (4, 0, 3, np.float64),
                                        (0, 3, 2, np.float32)])
        rng = np.random.default_rng(6)
        n, k, m = 6, 8, 20
        out.append({"what": f"matmul_ikj run as plain Python on ({n}x{k}) @ ({k}x{m}), the "
                            f"order of its reads of B recorded", "trace": None,
                    "A": rng.uniform(-1, 1, (n, k)), "B": rng.uniform(-1, 1, (k, m)),
                    "C": np.full((n, m), np.nan)})
        return out + [self.speed_case(np.random.default_rng(4), ())]

    def judge_trace(self, case, obs, t):
        reads = self.trace_reads(case, obs, t)
        (n, k), m = case["A"].shape, case["B"].shape[1]
        t.true(reads.size >= n * k * m, f"{case['what']}: one read of B per multiply-add",
               f"{reads.size} reads of B were recorded for {n * k * m} multiply-adds: does it "
               f"hand the product to numpy (np.dot, @), or copy B into another layout first? "
               f"Write the three loops over A, B and C themselves")
        along = float(np.mean(np.abs(np.diff(reads)) == 1)) if reads.size > 1 else 0.0
        t.true(along >= 0.5, f"{case['what']}: the innermost loop walks along a row of B",
               f"{along:.0%} of successive reads of B are neighbours in memory (an ikj loop: "
               f"{(m - 1) / m:.0%}); your loops walk B another way, down a column or not at "
               f"all. Which loop is innermost?")


MIN_TILE, MAX_TILE = 4, 128  # the operand pools of matmul_tiled cover shapes up to 2T + 4
# (n, k, m) as (a, b) pairs meaning a * TILE + b: ragged, several tiles, smaller than a tile
_TILED_SHAPES = [(((1, 3), (1, 5), (0, 7)), np.float32), (((2, 1), (1, 0), (2, 3)), np.float32),
                 (((0, 5), (0, 3), (0, 6)), np.float32), (((1, 1), (0, 9), (1, 2)), np.float64),
                 (((1, 0), (0, 0), (0, 5)), np.float32)]  # K = 0: C is all zeros
# the traced runs: the student's function as plain Python with TILE replaced, B's reads recorded
_TRACES = [(4, (16, 12, 20)), (8, (24, 20, 40))]


def _dims(spec, T):
    return tuple(a * T + b for a, b in spec)


@exercise("cpu_operators.matmul_tiled", points=3, notebook=NB, needs=("matmul_tiled",),
          values=("TILE",), fresh="speed",
          hint="a tiled kernel works on one TILE x TILE block of B while it is in cache, then "
               "moves to the next: the k and j loops both step by TILE. Tiles at the edges of "
               "a matrix that is no multiple of TILE are smaller, so clip each tile to the "
               "matrix; for speed, see what lets Numba vectorize the innermost loop "
               "(stride-1 access, a loop index that starts at 0)",
          rebuilds=("mlc.ndarray.backends.cpu.matmul:matmul_tiled",))
class _MatmulTiled(_Matmul):
    name, label = "matmul_tiled", "matmul_tiled"
    reference = "ikj"
    min_speedup = 0.25  # a scalar inner loop runs at ~0.1x of ikj, a correct tiling at 0.4-0.7x
    speed_detail = ("Tiling cannot beat ikj by much when the matrices fit in cache, but it "
                    "must not lose ikj's vectorized inner loop: is the innermost loop "
                    "stride-1, does it start at 0 (a signed index that might be negative "
                    "stops Numba from vectorizing), and is TILE large enough that the "
                    "inner loops are not all overhead?")

    def cases(self):
        rng = np.random.default_rng(3)
        big = 2 * MAX_TILE + 4
        pools = {dt: (rng.uniform(-1, 1, (big, big)).astype(dt),
                      rng.uniform(-1, 1, (big, big)).astype(dt))
                 for dt in (np.float32, np.float64)}
        out = []
        for spec, dt in _TILED_SHAPES:
            out.append({"what": "({}T+{} x {}T+{}) @ ({}T+{} x {}T+{}) {}".format(
                            *spec[0], *spec[1], *spec[1], *spec[2], np.dtype(dt).name),
                        "spec": [list(s) for s in spec], "pool_A": pools[dt][0],
                        "pool_B": pools[dt][1]})
        for tile, (n, k, m) in _TRACES:
            A = rng.uniform(-1, 1, (n, k))
            B = rng.uniform(-1, 1, (k, m))
            out.append({"what": f"matmul_tiled run as plain Python with TILE = {tile} on "
                                f"({n}x{k}) @ ({k}x{m}), the order of its reads of B "
                                f"recorded", "trace": tile, "A": A, "B": B,
                        "C": np.full((n, m), np.nan)})
        return out + [self.speed_case(np.random.default_rng(4), ())]

    def observe(self, ns, case):
        if case.get("speed") or "trace" in case:
            return super().observe(ns, case)
        fn = need(ns, self.name)
        out = {"numba": _is_njit(fn), "tile": _number(ns.get("TILE"))}
        T = ns.get("TILE")
        if not (type(T) is int and MIN_TILE <= T <= MAX_TILE):
            return out  # the judge says what TILE should be
        n, k, m = _dims(case["spec"], T)
        A = np.ascontiguousarray(case["pool_A"][:n, :k])
        B = np.ascontiguousarray(case["pool_B"][:k, :m])
        C = np.full((n, m), np.nan, A.dtype)
        call(case["what"], fn, A, B, C)
        out["C"] = C
        return out

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        if case.get("speed") or "trace" in case:
            return super().judge(case, obs, t)
        _fact(t, obs.get("numba"), f"`{self.name}` is a Numba @njit function",
              f"it should be compiled with Numba: keep @njit (from numba import njit) on "
              f"the line above `def {self.name}`")
        T = obs.get("tile")
        _fact(t, type(T) is int and MIN_TILE <= T <= MAX_TILE,
              f"TILE is an int between {MIN_TILE} and {MAX_TILE}",
              f"TILE = {_short(T)}: a tile is a number of rows and columns, a module-level "
              f"constant as in unit 04, so that Numba compiles it in")
        n, k, m = _dims(case["spec"], T)
        A = np.asarray(case["pool_A"][:n, :k], np.float64)
        B = np.asarray(case["pool_B"][:k, :m], np.float64)
        tol = 1e-4 if case["pool_A"].dtype == np.float32 else 1e-10
        t.close(obs.get("C"), A @ B, f"{case['what']} with TILE = {T}: ({n}x{k}) @ ({k}x{m})",
                rtol=tol, atol=tol)

    def judge_trace(self, case, obs, t):
        T = case["trace"]
        reads = self.trace_reads(case, obs, t)
        window = T ** 3
        t.true(reads.size >= window, f"{case['what']}: B is read as the loops run",
               f"only {reads.size} reads of B were recorded. The check runs the body of "
               f"matmul_tiled as plain Python to see its loops: does it hand the work to "
               f"another compiled function? Write the loops in matmul_tiled itself")
        distinct = window_distinct(reads, window)
        bound = 2 * T * T
        t.true(distinct <= bound,
               f"matmul_tiled is tiled by TILE: with TILE = {T}, each run of TILE^3 = "
               f"{window} multiply-adds reads at most 2 * TILE^2 = {bound} distinct "
               f"elements of B (a TILE x TILE block, reused while it is in cache)",
               f"yours read {distinct:.0f} distinct elements of B per {window} reads, as a "
               f"loop nest that is not tiled by TILE does: it sweeps whole rows of B. Do "
               f"the k and j loops both step by TILE?")

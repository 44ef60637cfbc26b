"""Unit 03, CPU operators: loop order, tiling and parallel reductions with Numba.

Each check compiles nothing of its own but a naive reference; it calls the student's
``@njit`` function on hidden shapes (odd, rectangular, smaller than a tile, empty) and
compares with numpy. The two matmul exercises are also about speed, so their checks
time the student's kernel against a naive ijk loop *in the same process, interleaved*
(a load spike then slows both) and take the best of several runs; the margins asked
for are several times smaller than what a correct solution reaches.
"""

from __future__ import annotations

import time

import numpy as np

from ..registry import CheckFailed, exercise, call as _call

NB = "03_cpu_operators"
SPEED_N = 256  # the size at which speed is compared: 2 * 256^3 = 34 MFLOP per call

_REF = {}


def _naive_ijk():
    """The reference: i, j, then k innermost, so B is read down a column (stride n)."""
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


def _need_njit(ns, t, name):
    fn = t.need(ns, name)
    from numba.core.dispatcher import Dispatcher

    if not isinstance(fn, Dispatcher):
        raise CheckFailed(f"`{name}` should be compiled with Numba: put @njit (from numba "
                          f"import njit) on the line above `def {name}`")
    t.passed.append(f"`{name}` is a Numba @njit function")
    return fn


def _operands(rng, n, k, m, dtype):
    A = rng.uniform(-1, 1, (n, k)).astype(dtype)
    B = rng.uniform(-1, 1, (k, m)).astype(dtype)
    C = np.full((n, m), np.nan, dtype)  # garbage in C must not leak into the result
    return A, B, C


def _check_matmul(t, fn, cases, extra=()):
    rng = np.random.default_rng(3)
    for n, k, m, dtype in cases:
        A, B, C = _operands(rng, n, k, m, dtype)
        what = f"({n}x{k}) @ ({k}x{m}) {np.dtype(dtype).name}" + "".join(
            f", {e}" for e in extra)
        _call(what, fn, A, B, C, *extra)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        t.close(C, A.astype(np.float64) @ B.astype(np.float64), what, rtol=tol, atol=tol)


def _speedup(fn, extra=(), rounds=5):
    """Best time of the naive ijk loop over the best time of ``fn``, interleaved."""
    ref = _naive_ijk()
    rng = np.random.default_rng(4)
    A, B, C = _operands(rng, SPEED_N, SPEED_N, SPEED_N, np.float32)
    ref(A, B, C)  # compile (or load from cache) before timing
    fn(A, B, C, *extra)
    best_ref = best_fn = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        ref(A, B, C)
        t1 = time.perf_counter()
        fn(A, B, C, *extra)
        t2 = time.perf_counter()
        best_ref, best_fn = min(best_ref, t1 - t0), min(best_fn, t2 - t1)
    return best_ref / best_fn, best_ref, best_fn


@exercise("cpu_operators.matmul_ikj", points=2, notebook=NB,
          hint="loops in the order i, k, j: hoist a = A[i, k] out of the j loop and do "
               "C[i, j] += a * B[k, j]; set C to zero first (it arrives full of garbage)")
def _(ns, t):
    fn = _need_njit(ns, t, "matmul_ikj")
    _check_matmul(t, fn, [(1, 1, 1, np.float32), (3, 5, 2, np.float32),
                          (17, 9, 13, np.float32), (8, 32, 1, np.float64),
                          (64, 64, 64, np.float32)])
    ratio, t_ref, t_fn = _speedup(fn)
    t.true(ratio >= 2.0, f"matmul_ikj is at least 2x faster than the naive ijk loop at "
           f"{SPEED_N}x{SPEED_N}x{SPEED_N}",
           f"ijk took {t_ref * 1e3:.1f} ms, yours {t_fn * 1e3:.1f} ms: {ratio:.2f}x; the "
           "innermost loop should run over j, so B[k, j] and C[i, j] are read with stride 1")


@exercise("cpu_operators.matmul_tiled", points=3, notebook=NB,
          hint="loop over tiles (i0, k0, j0) with range(0, n, tile), clip each tile's end "
               "with min(i0 + tile, n), and inside a tile use the ikj order; make the "
               "innermost loop run from 0 over row views (Ci = C[i, j0:j1]) so Numba can "
               "vectorize it")
def _(ns, t):
    fn = _need_njit(ns, t, "matmul_tiled")
    # odd shapes that are no multiple of the tile, a tile larger than the matrix, tile 1
    for tile, cases in [(8, [(37, 53, 29, np.float32), (16, 16, 16, np.float32)]),
                        (16, [(5, 3, 7, np.float32), (33, 17, 65, np.float64)]),
                        (1, [(4, 3, 5, np.float32)]),
                        (32, [(70, 40, 100, np.float32)])]:
        _check_matmul(t, fn, cases, extra=(tile,))
    ratio, t_ref, t_fn = _speedup(fn, extra=(64,))
    t.true(ratio >= 1.2, f"matmul_tiled(tile=64) is at least 1.2x faster than the naive ijk "
           f"loop at {SPEED_N}x{SPEED_N}x{SPEED_N}",
           f"ijk took {t_ref * 1e3:.1f} ms, yours {t_fn * 1e3:.1f} ms: {ratio:.2f}x. Is the "
           "innermost loop stride-1 over j, and does it start at 0 (a signed index that "
           "might be negative stops Numba from vectorizing)?")


@exercise("cpu_operators.parallel_sum", points=2, notebook=NB,
          hint="@njit(parallel=True), a local accumulator `total = 0.0`, and "
               "`for i in prange(x.size): total += x[i]`; Numba turns that into one partial "
               "sum per thread. Never write to a shared array element from inside prange")
def _(ns, t):
    fn = _need_njit(ns, t, "parallel_sum")
    t.true(fn.targetoptions.get("parallel"), "parallel_sum is compiled with parallel=True",
           "decorate it with @njit(parallel=True)")
    rng = np.random.default_rng(5)
    cases = [np.zeros(0, np.float64), np.array([2.5]), rng.uniform(-1, 1, 7),
             rng.uniform(0, 1, 1001).astype(np.float32), np.ones(100_000, np.float32),
             rng.uniform(-1, 1, 1_000_003)]
    for x in cases:
        what = f"parallel_sum of {x.size} {x.dtype.name} elements"
        before = x.copy()
        got = _call(what, fn, x)
        tol = 1e-5 if x.dtype == np.float32 else 1e-9
        t.close(got, np.sum(x, dtype=np.float64), what, rtol=tol, atol=tol)
        t.equal(bool(np.array_equal(x, before)), True, f"{what} leaves its input unchanged")
    # after the cases, so that an unfinished stub reports "not implemented" first
    t.true("prange" in fn.py_func.__code__.co_names, "parallel_sum loops with prange",
           "use `for i in prange(x.size)` (from numba import prange)")

"""Unit 03, CPU operators (continued): a parallel reduction with Numba's ``prange``.

The worker calls the student's ``@njit(parallel=True)`` function on hidden arrays (empty,
one element, a million, and float32 data whose total a float32 accumulator cannot hold);
the grader compares with numpy's float64 sum. That the loop really shares out the work is
read from the source (:func:`_prange_problem`): a ``prange(1)`` around a serial loop gives
the right sum on one thread. The matmul exercises are in :mod:`.cpu_operators`.
"""

from __future__ import annotations

import ast

import numpy as np

from ..registry import Check, call, exercise, need
from .cpu_operators import NB, _fact, _is_njit, _number


def _sum_cases():
    rng = np.random.default_rng(5)
    xs = [np.zeros(0, np.float64), np.array([2.5]), rng.uniform(-1, 1, 7),
          rng.uniform(0, 1, 1001).astype(np.float32), np.ones(100_000, np.float32),
          rng.uniform(-1, 1, 1_000_003)]
    out = [{"what": f"parallel_sum of {x.size} {x.dtype.name} elements", "x": x} for x in xs]
    # 2^25 + 1 rounds back to 2^25 in float32: a float32 total drops every 1.0 after it
    x = np.ones(100_003, np.float32)
    x[0] = 2.0 ** 25
    out.append({"what": f"parallel_sum of {x.size} float32 elements, 2^25 and then ones (a "
                        f"float32 total cannot count them)", "x": x})
    return out


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
        t.true(isinstance(d.tree, ast.FunctionDef), "parallel_sum is a def",
               "define it with def parallel_sum(x): the grader reads its loops")
        problem = _prange_problem(d.tree)
        t.true(problem is None, "the prange loop splits the elements of x between threads",
               problem or "")


def _prange_problem(fn: ast.FunctionDef) -> str | None:
    """Why the ``prange`` loops of ``fn`` do not share out the work, or None.

    A prange loop parallelizes only what it iterates over: ``prange(1)`` around a serial
    loop runs on one thread, a prange loop that never reads ``x`` leaves the sum to
    something else, and ``out[0] += ...`` inside one is a race between the threads. A
    loop over Numba's thread count (one chunk of x per thread) shares out the work too."""
    x = fn.args.args[0].arg if fn.args.args else None
    # names computed from x or the thread count: n = x.size, chunks = (n + 63) // 64, ...
    from_x = {x, "get_num_threads"}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and from_x & _names(node.value):
            from_x |= {tg.id for tg in node.targets if isinstance(tg, ast.Name)}
    loops = [n for n in ast.walk(fn) if isinstance(n, ast.For) and isinstance(n.iter, ast.Call)
             and "prange" in _ids(n.iter.func)]
    if not any(from_x & _names(n.iter) for n in loops):
        return ("the range of its prange loop does not depend on x (prange(1) or another "
                "constant): the loop that does the work must be the prange loop, over "
                "x's elements, over chunks of them or over the threads")
    reads = [n for n in loops if any(isinstance(s, ast.Subscript) and x in _ids(s.value)
                                     for s in ast.walk(n))]
    if not reads:
        return "no prange loop reads x[...]: the parallel loop must do the summing"
    for loop in loops:
        var = _ids(loop.target)
        for node in ast.walk(loop):
            if not (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript)):
                continue
            index = node.target.slice
            parts = index.elts if isinstance(index, ast.Tuple) else [index]
            if not var & _ids(index):
                return (f"`{ast.unparse(node)}` inside "
                        "prange is a race: every thread updates the same element; "
                        "accumulate into a local scalar")
            # out[i % 8] or out[i // 64]: iterations on different threads share an element
            if not any(isinstance(p, ast.Name) and p.id in var for p in parts):
                return (f"`{ast.unparse(node)}` inside prange is a race: iterations that "
                        f"run on different threads update the same element; index it by "
                        f"the prange variable itself, or accumulate into a local scalar")
    return None


def _ids(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _names(node) -> set:
    """Names and attribute names (``numba.get_num_threads``) in ``node``."""
    return _ids(node) | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


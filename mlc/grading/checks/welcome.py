"""Unit 00, welcome: a first Numba kernel and the arithmetic of the roofline.

Each check follows the grader's split (see :mod:`mlc.grading.registry`): ``cases`` and
``judge`` run in the grader, ``observe`` next to the student's code.
"""

import ast

import numpy as np

from ..registry import Check, exercise, hidden_seed

NB = "00_welcome"


@exercise("welcome.saxpy", points=2, notebook=NB, needs=("saxpy",),
          hint="saxpy returns a new array with a * x[i] + y[i] at every i; check the loop "
               "covers every element and that x and y are only read")
class _Saxpy(Check):
    def cases(self):
        rng = np.random.default_rng(7)
        out = []
        for n in (1, 7, 1000, 0):
            x = rng.standard_normal(n).astype(np.float32)
            y = rng.standard_normal(n).astype(np.float32)
            out.append({"what": f"saxpy(1.5, x, y) with {n} elements", "a": 1.5, "x": x,
                        "y": y})
        return out

    def observe(self, ns, case):
        from numba.core.dispatcher import Dispatcher

        x, y = case["x"], case["y"]
        fn = ns["saxpy"]
        out = np.asarray(fn(np.float32(case["a"]), x, y))
        return {"out": out, "dtype": str(out.dtype), "x": x, "y": y,
                "numba": isinstance(fn, Dispatcher)}

    def judge(self, case, obs, t):
        x, y = case["x"], case["y"]
        t.true(obs.get("numba") is True, "saxpy is a function compiled by Numba",
               "the saxpy the notebook defines is not a Numba function: put @numba.njit "
               "on the line above `def saxpy`")
        t.close(obs["out"], case["a"] * x + y, case["what"], rtol=1e-5)
        t.equal(obs.get("dtype"), "float32", f"{case['what']}: the result is float32 like x")
        t.true(np.array_equal(obs["x"], x) and np.array_equal(obs["y"], y),
               f"x and y are left unchanged ({x.size} elements)", "write into a new array")

    def inspect(self, src, t):
        d = src.definition("saxpy")
        t.true(d is not None and isinstance(d.tree, ast.FunctionDef)
               and any({"njit", "jit"} & _names(dec) for dec in d.tree.decorator_list),
               "saxpy is compiled by Numba", "decorate `def saxpy` with @numba.njit")
        t.true(_loop_writes_element(d.tree), "saxpy computes its elements in an explicit loop",
               "the exercise is the loop itself: `a * x + y` on whole arrays is numpy's "
               "loop, not yours; write out[i] = ... inside a for loop over i")


def _names(node) -> set:
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))}


def _loop_writes_element(tree) -> bool:
    """Whether a ``for`` loop of ``tree`` stores into an element indexed by its own loop
    variable (``out[i] = ...``): a loop that only wraps whole-array numpy does not."""
    for loop in ast.walk(tree):
        if not (isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)):
            continue
        for node in ast.walk(loop):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, ast.AugAssign) else [])
            if any(isinstance(tg, ast.Subscript) and loop.target.id in _names(tg.slice)
                   for tg in targets):
                return True
    return False


@exercise("welcome.matmul_intensity", points=1, notebook=NB, needs=("matmul_intensity",),
          hint="intensity is FLOPs divided by bytes moved: count the multiply-adds of every "
               "output element, and the bytes of each matrix read or written once")
class _Intensity(Check):
    def cases(self):
        shapes = [(1024, 1024, 1024, 4), (64, 4096, 1, 4), (128, 256, 512, 2), (1, 1, 1, 8)]
        out = [{"what": f"matmul_intensity({n}, {k}, {m}, {b})", "args": [n, k, m, b]}
               for n, k, m, b in shapes]
        out.append({"what": "the default is 4 bytes (float32)", "args": [32, 32, 32]})
        return out

    def observe(self, ns, case):
        return float(ns["matmul_intensity"](*case["args"]))

    def judge(self, case, obs, t):
        n, k, m, b = (*case["args"], 4)[:4]
        t.close(obs, 2 * n * k * m / ((n * k + k * m + n * m) * b), case["what"], rtol=1e-9)


@exercise("welcome.roofline_time", points=2, notebook=NB, needs=("roofline_time", "bound_by"),
          hint="an op needs time to compute and time to move its data, and can overlap the "
               "two: which of the two times decides?")
class _Roofline(Check):
    def cases(self):
        args = [(2e9, 1e6, 1e11, 2e10), (1e6, 4e9, 1e11, 2e10), (5e10, 1e9, 1e11, 2e10),
                (1.0, 1.0, 1.0, 1.0)]
        out = [{"what": "roofline_time({:g}, {:g}, {:g}, {:g})".format(*a), "fn": "time",
                "args": list(a)} for a in args]
        out += [{"what": "a matmul-like op is compute bound", "fn": "bound",
                 "args": [2e9, 1e6, 1e11, 2e10]},
                {"what": "an elementwise-like op is memory bound", "fn": "bound",
                 "args": [1e6, 4e9, 1e11, 2e10]}]
        # the machine decides, not the op alone: an intensity of 0.25 FLOP/byte on a slow
        # core with fast memory, and of 1000 on a fast core with slow memory (a rule on
        # flops vs bytes, or on a ridge point typed in, answers both the other way)
        rng = np.random.default_rng(hidden_seed(1))
        for flops, nbytes, peak, bw in [(1e6, 4e6, 1e8, 1e12), (1e9, 1e6, 1e15, 1e6),
                                        (*rng.uniform(1, 10, 2) * 1e8, 1e11, 2e8)]:
            out.append({"what": f"bound_by({flops:g}, {nbytes:g}, {peak:g}, {bw:g})",
                        "fn": "bound", "args": [float(flops), float(nbytes), peak, bw]})
        return out

    def observe(self, ns, case):
        if case["fn"] == "time":
            return float(ns["roofline_time"](*case["args"]))
        return str(ns["bound_by"](*case["args"]))

    def judge(self, case, obs, t):
        flops, nbytes, peak, bw = case["args"]
        if case["fn"] == "time":
            t.close(obs, max(flops / peak, nbytes / bw), case["what"], rtol=1e-9)
        else:
            t.equal(obs, "compute" if flops / peak >= nbytes / bw else "memory", case["what"])

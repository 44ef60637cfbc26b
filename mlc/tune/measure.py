"""Measuring a candidate: build it, check it computes what the naive program computes,
time it.

Every candidate is a legal schedule, and a legal schedule never changes the result; the
check is still worth its one run, because it is what catches a bug in a schedule
primitive or in the code generator before a wrong program wins the search.
The reference output comes from the unscheduled PrimFunc, built once for the same
target. Failures (a ``ScheduleError``, a compile error, a crash, a wrong answer) are
returned as an error string, never raised: one broken candidate must not end a search.
"""

from __future__ import annotations

import numpy as np

from ..codegen import build
from ..perf import stopwatch


def random_arguments(func, rng: np.random.Generator) -> list:
    """One numpy array per parameter of ``func``: small random values of its dtype."""
    out = []
    for p in func.params:
        dt = np.dtype(p.dtype)
        if dt.kind == "f":
            arr = rng.uniform(-1.0, 1.0, size=p.shape).astype(dt)
        elif dt.kind in "iu":
            arr = rng.integers(0 if dt.kind == "u" else -4, 5, size=p.shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.random(p.shape) < 0.5
        else:
            raise TypeError(f"parameter {p.name}: cannot make test data of dtype {p.dtype}")
        out.append(arr)
    return out


class Measurer:
    """Times candidates of ``func`` on ``target`` against the naive program's output.

    ``repeat`` rounds of ``Module.time_evaluator`` (that is, :func:`mlc.perf.timeit`)
    give the median, each round at least ``min_time`` seconds of calls: shorter than
    ``timeit``'s default, since a search measures hundreds of candidates and only their
    order matters. A candidate whose single run after the check is already ``give_up``
    times slower than the best so far is timed by that run alone (it cannot win, and
    slow candidates would eat the budget).
    """

    def __init__(self, func, target: str, repeat: int = 3, seed: int = 0,
                 rtol: float = 1e-3, give_up: float = 8.0, min_time: float = 0.05):
        self.func, self.target, self.repeat = func, target, repeat
        self.min_time = min_time
        self.rtol, self.give_up = rtol, give_up
        naive = build(func, target)
        self.args = random_arguments(func, np.random.default_rng(seed))
        out_ids = {id(p) for p in naive.outputs}
        self.out_index = [i for i, p in enumerate(func.params) if id(p) in out_ids]
        self._reset_outputs()
        naive(*self.args)
        self.reference = [self.args[i].copy() for i in self.out_index]

    def _reset_outputs(self) -> None:
        # NaN in the outputs: an element the candidate forgets to write fails the check.
        for i in self.out_index:
            a = self.args[i]
            a[...] = np.nan if a.dtype.kind == "f" else 0

    def check(self) -> str | None:
        """None when the outputs match the reference, else what differs."""
        for i, ref in zip(self.out_index, self.reference, strict=True):
            got = self.args[i]
            if got.dtype.kind == "f":
                atol = self.rtol * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
                ok = np.allclose(got, ref, rtol=self.rtol, atol=atol)
            else:
                ok = np.array_equal(got, ref)
            if not ok:
                err = np.nanmax(np.abs(got.astype(np.float64) - ref)) if got.size else 0.0
                return (f"wrong result in {self.func.params[i].name}: max |error| {err:.3g}"
                        f"{' (NaN: unwritten elements)' if np.isnan(got).any() else ''}")
        return None

    def measure(self, sch, best: float = float("inf")) -> tuple:
        """``(seconds, None)`` for a working candidate, ``(inf, error message)`` if not."""
        try:
            mod = build(sch, self.target)
        except Exception as e:  # noqa: BLE001 - any failure to build is the candidate's
            return float("inf"), f"build failed: {type(e).__name__}: {e}"
        try:
            self._reset_outputs()
            mod(*self.args)  # the first call also compiles (numba is lazy)
            err = self.check()
            if err:
                return float("inf"), err
            with stopwatch() as once:  # one run, to spot a hopeless candidate cheaply
                mod(*self.args)
            if once.seconds > self.give_up * best:
                return once.seconds, None
            timer = mod.time_evaluator(repeat=self.repeat, min_time=self.min_time)
            return float(timer(*self.args)), None
        except Exception as e:  # noqa: BLE001
            return float("inf"), f"run failed: {type(e).__name__}: {e}"

"""The checks of unit 06 (scheduling).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: a split without its guard (or with
one it does not need), a textual substitution that also rewrites `ii` when splitting `i`,
guards left unrewritten, floor instead of ceiling; a matmul schedule that is illegal,
assumes one shape, computes something else or is no faster than the naive loop nest; a
"fused" relu still in a loop nest of its own.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from check_util import check_runner
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc import te
from mlc.grading.checks.scheduling import _run_tiny
from mlc.grading.grader import grade_notebook
from mlc.grading.release import release_notebook
from mlc.schedule.examples import matmul_hand_schedule

ROOT = Path(__file__).resolve().parents[1]


# ---- exercise 1: the tiny loop IR, as in the notebook ----------------------------------------

@dataclass
class Compute:
    name: str
    bindings: dict


@dataclass
class Guard:
    cond: str
    body: list = field(default_factory=list)


@dataclass
class Loop:
    var: str
    extent: int
    body: list = field(default_factory=list)


def substitute(expr, var, replacement):
    return re.sub(rf"\b{re.escape(var)}\b", f"({replacement})", expr)


def make_split(sub=substitute, guard="imperfect", ceil=True, rewrite_guards=True,
               check_factor=True):
    """The reference split, with switches that turn on one mistake each."""

    def split(nest, var, factor):
        if check_factor and (not isinstance(factor, int) or factor < 1):
            raise ValueError("factor must be a positive int")
        found = []

        def rewrite(s, old, new):
            if isinstance(s, Loop):
                return Loop(s.var, s.extent, [rewrite(c, old, new) for c in s.body])
            if isinstance(s, Guard):
                cond = sub(s.cond, old, new) if rewrite_guards else s.cond
                return Guard(cond, [rewrite(c, old, new) for c in s.body])
            return Compute(s.name, {k: sub(e, old, new) for k, e in s.bindings.items()})

        def visit(s):
            if isinstance(s, Loop) and s.var == var:
                found.append(s)
                fused = f"{var}_0 * {factor} + {var}_1"
                body = [rewrite(c, var, fused) for c in s.body]
                if (guard == "imperfect" and s.extent % factor) or guard == "always":
                    body = [Guard(f"({fused}) < {s.extent}", body)]
                outer = math.ceil(s.extent / factor) if ceil else s.extent // factor
                return Loop(f"{var}_0", outer, [Loop(f"{var}_1", factor, body)])
            if isinstance(s, Loop):
                return Loop(s.var, s.extent, [visit(c) for c in s.body])
            if isinstance(s, Guard):
                return Guard(s.cond, [visit(c) for c in s.body])
            return s

        out = [visit(s) for s in nest] if isinstance(nest, list) else visit(nest)
        if not found:
            raise ValueError(f"no loop named {var}")
        return out

    return split


TINY = {"Loop": Loop, "Guard": Guard, "Compute": Compute}


# ---- exercises 2 and 3: reference schedules ---------------------------------------------------

def schedule_matmul(sch):  # what the solution writes out primitive by primitive
    return matmul_hand_schedule(sch, tile_i=32, tile_j=64)


def fuse_relu(sch):
    i, j, k = sch.get_loops(sch.get_block("C"))
    sch.reverse_compute_at(sch.get_block("D"), j)
    return sch


def fuse_relu_compute_at(sch):
    x, y = sch.get_loops(sch.get_block("D"))
    sch.compute_at(sch.get_block("C"), y)


def fuse_relu_tiled(sch):
    """The hand schedule on C, D moved under the tile loop: C shrinks to a tile."""
    schedule_matmul(sch)
    j0 = sch.get_loops(sch.get_block("C_local"))[1]
    sch.reverse_compute_at(sch.get_block("D"), j0)


_run, _fails = check_runner({})  # each test passes the names it grades


def _passes(ex_id, **ns):
    rec = _run(ex_id, **ns)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]
    return rec


# ---- references pass --------------------------------------------------------------------------

def test_split_reference_passes():
    rec = _passes("scheduling.split", split=make_split(), **TINY)
    assert len(rec["passed"]) > 40


def test_fuse_relu_references_pass():
    for fn in (fuse_relu, fuse_relu_compute_at, fuse_relu_tiled):
        _passes("scheduling.fuse_relu", fuse_relu=fn)


def test_schedule_matmul_reference_passes():
    rec = _passes("scheduling.schedule_matmul", schedule_matmul=schedule_matmul)
    assert any("faster" in p for p in rec["passed"])


# ---- exercise 1 failures ------------------------------------------------------------------------

def test_split_failures():
    ex = "scheduling.split"
    assert "`split` is not defined" in _run(ex, **TINY)["message"]
    assert "`Loop` is not defined" in _run(ex, split=make_split())["message"]

    def todo(nest, var, factor):
        raise NotImplementedError("your code here")

    assert "not implemented" in _run(ex, split=todo, **TINY)["message"]
    _fails(ex, "imperfect", "instances", split=make_split(guard="never"), **TINY)
    _fails(ex, "number of guards added", "none for a perfect split",
           split=make_split(guard="always"), **TINY)
    _fails(ex, "imperfect", "computes 8 instances, the original 10",
           split=make_split(ceil=False), **TINY)
    # str.replace turns `ii` into `(i_0 * 2 + i_1)i` when splitting `i`
    msg = _fails(ex, "inner loop named ii", split=make_split(
        sub=lambda e, v, r: e.replace(v, f"({r})")), **TINY)
    assert "cannot evaluate" in msg or "instances" in msg
    _fails(ex, "triangle", split=make_split(rewrite_guards=False), **TINY)
    _fails(ex, "a factor of 0 raises ValueError", split=make_split(check_factor=False), **TINY)
    _fails(ex, "returned None", split=lambda nest, var, factor: None, **TINY)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(1, 14), st.sampled_from("ijk"))
def test_split_law_on_random_nests(n, m, factor, var):
    """The law the check grades: a split computes the same instances in the same order
    (with the check's own interpreter), and adds a guard exactly when it is imperfect."""
    def nest():
        return Loop("i", n, [Loop("j", m, [
            Compute("A", {"vi": "i"}),
            Guard("j <= i + 1", [Loop("k", 3, [Compute("B", {"vi": "i", "vj": "j",
                                                             "vk": "k"})])])])])

    extent = {"i": n, "j": m, "k": 3}[var]
    new = make_split()(nest(), var, factor)
    assert _run_tiny(new) == _run_tiny(nest())
    guards = sum(isinstance(x, Guard) for x in _walk(new))
    assert guards == 1 + (extent % factor != 0)
    wrong = make_split(guard="never")(nest(), var, factor)
    assert (_run_tiny(wrong) == _run_tiny(nest())) == (extent % factor == 0)


def _walk(s):
    for x in (s if isinstance(s, list) else [s]):
        yield x
        yield from _walk(getattr(x, "body", []))


def test_split_failure_shows_the_nest():
    msg = _fails("scheduling.split", split=make_split(guard="never"), **TINY)
    assert "for i_0 in range(3):" in msg and "for i_1 in range(4):" in msg


# ---- exercise 2 failures ------------------------------------------------------------------------

def _twice_matmul(n, k, m):
    A = te.placeholder((n, k), "float32", name="A")
    B = te.placeholder((k, m), "float32", name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j] * 2.0, axis=r), name="C")
    return te.create_prim_func([A, B, C])


def test_schedule_matmul_correctness_failures():
    ex = "scheduling.schedule_matmul"

    def parallel_k(sch):
        sch.parallel(sch.get_loops(sch.get_block("C"))[2])

    _fails(ex, "a primitive refused", "reduce iterator", schedule_matmul=parallel_k)

    def fixed_k(sch):  # factors written for one shape: 2 x 16 covers k = 32, not k = 40
        i, j, k = sch.get_loops(sch.get_block("C"))
        sch.split(k, factors=[2, 16])

    _fails(ex, "(48x40) @ (40x72)", "do not cover extent 40", schedule_matmul=fixed_k)

    def wrong_name(sch):
        sch.get_block("matmul")

    _fails(ex, "no block named 'matmul'", schedule_matmul=wrong_name)

    def replaces_the_program(sch):  # computes 2 * A @ B
        n, m = sch.func.params[2].shape
        k = sch.func.params[0].shape[1]
        sch.func = _twice_matmul(n, k, m)

    _fails(ex, "the result matches numpy", "first mismatch",
           schedule_matmul=replaces_the_program)

    def crashes(sch):
        return 1 / 0

    _fails(ex, "ZeroDivisionError", schedule_matmul=crashes)


def test_schedule_matmul_too_slow():
    msg = _fails("scheduling.schedule_matmul", "at least 3x faster", "unscheduled",
                 schedule_matmul=lambda sch: sch)
    assert "ms" in msg


# ---- exercise 3 failures ------------------------------------------------------------------------

def test_fuse_relu_failures():
    ex = "scheduling.fuse_relu"
    _fails(ex, "one loop nest at the root", "2 loop nests", fuse_relu=lambda sch: sch)

    def only_tiles(sch):  # a fast matmul, but the relu still a separate pass
        schedule_matmul(sch)

    _fails(ex, "one loop nest at the root", fuse_relu=only_tiles)

    def inline(sch):
        sch.reverse_compute_inline(sch.get_block("D"))

    _fails(ex, "a primitive refused", "reduction block", fuse_relu=inline)


# ---- the notebooks ------------------------------------------------------------------------------

def test_solution_notebook_gets_full_marks():
    report = grade_notebook(ROOT / "solutions" / "06_scheduling.ipynb", timeout=120)
    assert (report.score, report.max_score) == (8, 8), report.results


def test_released_notebook_gets_zero(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / "06_scheduling.ipynb", as_version=4)
    out = tmp_path / "06_scheduling.ipynb"
    nbformat.write(release_notebook(nb, "06_scheduling.ipynb"), out)
    report = grade_notebook(out, timeout=60)
    assert report.max_score == 8 and report.score == 0, report.results
    assert all("not implemented" in r.message or "not defined" in r.message
               for r in report.results), [r.message for r in report.results]


def test_grader_survives_a_parallel_kernel_run_before_a_check(tmp_path):
    """Regression: each check runs in a fork of the worker, and GNU OpenMP (Numba's default
    threading layer) aborted the fork when a cell had already run a prange loop, so a
    correct parallel_sum that the student tried in a cell scored 0. The grader now runs
    the worker with Numba's fork-safe "workqueue" layer."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in [
        "import numpy as np\nfrom numba import njit, prange\nfrom mlc.grading import check",
        "@njit(parallel=True)\ndef parallel_sum(x):\n    total = 0.0\n"
        "    for i in prange(x.size):\n        total += x[i]\n    return total\n"
        "print(parallel_sum(np.ones(1000)))",
        'check("cpu_operators.parallel_sum")']]
    path = tmp_path / "03_cpu_operators.ipynb"
    nbformat.write(nb, path)
    report = grade_notebook(path, timeout=60)
    result = {r.id: r for r in report.results}["cpu_operators.parallel_sum"]
    assert result.score == result.max_score, result.message

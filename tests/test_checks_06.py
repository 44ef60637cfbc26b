"""The checks of unit 06 (scheduling).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: a split without its guard (or with
one it does not need), a textual substitution that also rewrites `ii` when splitting `i`,
guards left unrewritten, floor instead of ceiling; a matmul schedule that is illegal,
assumes one shape, computes something else or is no faster than the naive loop nest; a
"fused" relu still in a loop nest of its own.

The grader never trusts the worker: the tests also hand each judge forged observations
(cycles, huge extents, malformed nodes, NaN or impossible timings) and check that the
student's expression text is parsed by the grader's own whitelist interpreter, never
evaluated; an untouched stub hears only "not implemented yet", with no hint.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pytest
from check_util import check_runner
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc import te, tir
from mlc.grading.checks import scheduling, scheduling_tir
from mlc.grading.checks.scheduling import data_to_nest, nest_to_data, run_tiny
from mlc.grading.check import _sources_of
from mlc.grading.grader import grade_notebook
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester
from mlc.grading.source import Sources
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
               check_factor=True, in_place=False, guard_op="<", enter_guards=True):
    """The reference split, with switches that turn on one mistake each (``in_place``:
    the bindings and guards below the loop are rewritten in the given statements)."""

    def split(nest, var, factor):
        if check_factor and (not isinstance(factor, int) or factor < 1):
            raise ValueError("factor must be a positive int")
        found = []

        def rewrite(s, old, new):
            if isinstance(s, Loop):
                return Loop(s.var, s.extent, [rewrite(c, old, new) for c in s.body])
            if isinstance(s, Guard):
                cond = sub(s.cond, old, new) if rewrite_guards else s.cond
                if in_place:
                    s.cond, s.body = cond, [rewrite(c, old, new) for c in s.body]
                    return s
                return Guard(cond, [rewrite(c, old, new) for c in s.body])
            if in_place:
                s.bindings.update({k: sub(e, old, new) for k, e in s.bindings.items()})
                return s
            return Compute(s.name, {k: sub(e, old, new) for k, e in s.bindings.items()})

        def visit(s):
            if isinstance(s, Loop) and s.var == var:
                found.append(s)
                fused = f"{var}_0 * {factor} + {var}_1"
                body = [rewrite(c, var, fused) for c in s.body]
                if (guard == "imperfect" and s.extent % factor) or guard == "always":
                    body = [Guard(f"({fused}) {guard_op} {s.extent}", body)]
                outer = math.ceil(s.extent / factor) if ceil else s.extent // factor
                return Loop(f"{var}_0", outer, [Loop(f"{var}_1", factor, body)])
            if isinstance(s, Loop):
                return Loop(s.var, s.extent, [visit(c) for c in s.body])
            if isinstance(s, Guard) and enter_guards:
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
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, 32])
    j0, j1 = sch.split(j, factors=[None, 64])
    sch.reorder(i0, j0, k, i1, j1)
    c_local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(c_local, j0)
    sch.decompose_reduction(c, k)
    sch.vectorize(j1)
    sch.parallel(i0)
    return sch


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
    assert _instances(new) == _instances(nest())
    guards = sum(isinstance(x, Guard) for x in _walk(new))
    assert guards == 1 + (extent % factor != 0)
    wrong = make_split(guard="never")(nest(), var, factor)
    assert (_instances(wrong) == _instances(nest())) == (extent % factor == 0)


def _instances(nest):
    """What the grader's interpreter sees of a nest of the notebook's classes: the
    observation the worker makes of it, rebuilt in the grader and run."""
    return run_tiny(data_to_nest(nest_to_data(nest)))


def _walk(s):
    for x in (s if isinstance(s, list) else [s]):
        yield x
        yield from _walk(getattr(x, "body", []))


def test_split_failure_shows_the_nest():
    msg = _fails("scheduling.split", split=make_split(guard="never"), **TINY)
    assert "for i_0 in range(3):" in msg and "for i_1 in range(4):" in msg


@pytest.mark.parametrize("ex_id,names", [
    ("scheduling.split", {"split": None, **TINY}),
    ("scheduling.schedule_matmul", {"schedule_matmul": None}),
    ("scheduling.fuse_relu", {"fuse_relu": None})])
def test_untouched_stub_hears_only_not_implemented(ex_id, names):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    name = ex_id.split(".")[1]
    rec = _run(ex_id, **{**names, name: stub})
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == ""


def test_split_hint_is_a_nudge_not_the_solution():
    hint = get("scheduling.split").hint
    assert hint and "Guard(" not in hint and "Loop(" not in hint and "_0 *" not in hint


def test_split_expressions_are_parsed_never_evaluated(tmp_path):
    """The grader runs the student's expression text with its own ast interpreter: a call,
    an attribute or an import in it is refused, and nothing of it runs."""
    marker = tmp_path / "ran"

    def sneaky(nest, var, factor):
        out = make_split()(nest, var, factor)
        for s in _walk(out):
            if isinstance(s, Compute):
                s.bindings["vi"] = f"open({str(marker)!r}, 'w').close() or 0"
        return out

    msg = _fails("scheduling.split", "cannot evaluate", "Call is not allowed", split=sneaky, **TINY)
    assert "open(" in msg and not marker.exists()
    for text in ("i.real", "[i]", "lambda: 0", "i ** 2", "i if i else 0", "'a'", "i @ i"):
        with pytest.raises(CheckFailed, match="cannot evaluate"):
            scheduling.evaluate(text, {"i": 1})
    with pytest.raises(CheckFailed, match="ZeroDivisionError"):
        scheduling.evaluate("i // (i - 1)", {"i": 1})
    with pytest.raises(CheckFailed, match="not a loop variable"):
        scheduling.evaluate("i + q", {"i": 1})


_expr = st.recursive(
    st.one_of(st.integers(-20, 20).map(str), st.sampled_from(["i", "j", "i_0", "ii"])),
    lambda e: st.one_of(
        st.tuples(e, st.sampled_from(["+", "-", "*", "//", "%", "<", "<=", ">", ">=", "==",
                                      "!=", "and", "or"]), e).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        e.map(lambda x: f"(not {x})"), e.map(lambda x: f"-{x}")),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(_expr, st.integers(-5, 9), st.integers(-5, 9))
def test_evaluate_agrees_with_python_on_its_subset(text, i, j):
    env = {"i": i, "j": j, "i_0": i + j, "ii": 3}
    try:
        want = eval(text, {"__builtins__": {}}, dict(env))  # noqa: S307 - test-made text
    except ZeroDivisionError:
        with pytest.raises(CheckFailed, match="ZeroDivisionError"):
            scheduling.evaluate(text, env)
        return
    assert scheduling.evaluate(text, env) == want


def test_split_result_that_is_huge_or_cyclic_is_refused():
    def huge(nest, var, factor):
        return Loop(f"{var}_0", 10**12, [Loop(f"{var}_1", factor, [])])

    _fails("scheduling.split", "more than", split=huge, **TINY)

    def cyclic(nest, var, factor):
        outer = make_split()(nest, var, factor)
        outer.body[0].body.append(outer)
        return outer

    _fails("scheduling.split", "cycle", split=cyclic, **TINY)

    def deep(nest, var, factor):
        out = make_split()(nest, var, factor)
        for _ in range(200):
            out = Guard("1 < 2", [out])
        return out

    _fails("scheduling.split", "deep", split=deep, **TINY)


def test_split_shared_statements_are_read_as_such():
    """A nest that puts one object in two places is seen with the sharing: `is` holds in
    the grader where it held in the student's nest."""
    inner = Loop("i_1", 4, [Compute("S", {"vi": "i_0 * 4 + i_1"})])
    data = nest_to_data([Loop("i_0", 3, [inner]), Loop("t", 2, [inner])])
    a, b = data_to_nest(data)
    assert a["body"][0] is b["body"][0] and len(data["nodes"]) == 4


@pytest.mark.parametrize("obs,fragment", [
    (None, "malformed"), ({"root": [0], "nodes": [{"kind": "Loop", "body": [7]}]}, "malformed"),
    ({"root": [0], "nodes": "x"}, "malformed"), ({"root": 0, "nodes": [{"kind": "X"}]},
                                                  "malformed"),
    ({"root": [0], "nodes": [{"kind": "Loop", "var": "i_0", "extent": 2, "body": [0]}]},
     "cycle"),
    ({"root": [0], "nodes": [{"kind": "Loop", "var": "i_0", "extent": 2.5, "body": []}]},
     "extents must be ints"),
    ({"root": [0], "nodes": [{"kind": "While", "body": []}]}, "only Loop, Guard and Compute"),
    ({"root": [0], "nodes": [{"kind": "Compute", "name": "S", "bindings": None,
                              "bindings_type": "list"}]}, "expected a dict"),
    ({"root": None, "nodes": []}, "returned None")])
def test_split_judge_on_forged_observations(obs, fragment):
    ex = get("scheduling.split")
    case = ex.check.cases()[0]
    with pytest.raises(CheckFailed, match=fragment):
        ex.check.judge(case, obs, _Tester())


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


def test_schedule_matmul_must_beat_the_one_line_reorder():
    """A loop order alone (i, k, j, even vectorized) passes the 3x over the unscheduled
    program at 256, but keeps no tile of C: graded by the loop nest, since on a busy machine
    the tiles' speedup over the reorder shrank to nothing even for the lecture's schedule."""
    def reorder(sch):
        i, j, k = sch.get_loops(sch.get_block("C"))
        sch.reorder(i, k, j)

    def reorder_vectorized(sch):
        i, j, k = sch.get_loops(sch.get_block("C"))
        sch.reorder(i, k, j)
        sch.vectorize(j)
        sch.parallel(i)

    # end to end once (both sizes are timed, ~20 s under load); the vectorized variant on
    # its loop nest alone, which decides
    rec = _run("scheduling.schedule_matmul", schedule_matmul=reorder_vectorized)
    assert rec["score"] == 0, rec
    assert "keeps a tile of C while k runs" in rec["message"], rec["message"]
    assert any("at least 3x faster than the unscheduled" in p for p in rec["passed"])
    with pytest.raises(CheckFailed, match="keeps a tile of C while k runs"):
        _judge_at_1024(reorder)


def test_schedule_matmul_may_not_call_the_hand_schedule():
    def delegates(sch):
        return matmul_hand_schedule(sch, tile_i=32, tile_j=64)

    ex = get("scheduling.schedule_matmul")
    # the live definition's source, as run_check reads it (the whole check would time the
    # schedule first, whose verdict under load could come before the source's)
    with pytest.raises(CheckFailed, match="does not call matmul_hand_schedule"):
        ex.check.inspect(_sources_of(ex, {"schedule_matmul": delegates}), _Tester())
    for cells in (["from mlc.schedule.examples import matmul_hand_schedule as h\n"],
                  ["import mlc.schedule.examples as ex\nf = ex.matmul_hand_schedule\n"],
                  ["f = getattr(examples, 'matmul_hand_schedule')\n"]):
        with pytest.raises(CheckFailed, match="mentions matmul_hand_schedule"):
            ex.check.inspect(Sources(cells), _Tester())
    # a comment, or a markdown cell (which never reaches the grader), is no call
    ex.check.inspect(Sources(["# unlike matmul_hand_schedule, ...\nx = 1\n"]),
                     _Tester())


def _speed_case(kind="unscheduled"):
    cases = get("scheduling.schedule_matmul").check.cases()
    assert [c.get("time", False) for c in cases] == [False, False, "unscheduled", "reorder"]
    return next(c for c in cases if c.get("time") == kind)


@pytest.mark.parametrize("t_ref,t_fn,fragment", [
    ([0.05] * 7, [float("nan")] * 7, "worker's timing"),
    ([0.05] * 7, [-1.0] * 7, "worker's timing"),
    ([0.05] * 7, [], "worker's timing"),
    ([0.05] * 7, "fast", "worker's timing"),
    ([0.05] * 7, [1e-9] * 7, "TFLOP/s"),
    ([0.05] * 7, [0.03] * 7, "1.67x"),
])
def test_schedule_matmul_judge_bounds_the_workers_timings(t_ref, t_fn, fragment):
    """Timings come from the worker, which the student's code shares: the grader accepts
    only positive, finite, physically possible ones."""
    ex = get("scheduling.schedule_matmul")
    case = _speed_case()
    c = (case["a"].astype(np.float64) @ case["b"].astype(np.float64)).astype(np.float32)
    obs = {"c": c, "loops": [["i_0", 8, "serial"], ["j_1", 64, "vectorized"]],
           "t_ref": t_ref, "t_fn": t_fn}
    with pytest.raises(CheckFailed, match=fragment):
        ex.check.judge(case, obs, _Tester())
    ex.check.judge(case, {**obs, "t_fn": [0.01] * 7}, _Tester())  # 5x: passes
    reorder = _speed_case("reorder")
    c = (reorder["a"].astype(np.float64) @ reorder["b"].astype(np.float64)).astype(np.float32)
    tiled = [["i_0", 32, "serial"], ["j_0", 16, "serial"], ["k", 1024, "serial"],
             ["i_1", 32, "serial"], ["j_1", 64, "vectorized"]]
    obs = {**obs, "c": c, "t_ref": [0.03] * 7, "size": 1024, "loops": tiled}
    for size in (None, 512, "1024"):
        with pytest.raises(CheckFailed, match="malformed"):
            ex.check.judge(reorder, {**obs, "size": size}, _Tester())
    # measured at 256 only (far slower than the reorder there): judged at 256, no result
    with pytest.raises(CheckFailed, match=r"at 256x256x256.*0.10x"):
        ex.check.judge(reorder, {"size": 256, "t_ref": [0.002], "t_fn": [0.02],
                                 "loops": tiled}, _Tester())
    with pytest.raises(CheckFailed, match="0.75x"):
        ex.check.judge(reorder, {**obs, "t_fn": [0.04] * 7}, _Tester())
    with pytest.raises(CheckFailed, match="tile of C"):  # fast, but no tile: i, k, j
        ex.check.judge(reorder, {**obs, "t_fn": [0.02] * 7,
                                 "loops": [["i", 1024, "serial"], ["k", 1024, "serial"],
                                                  ["j", 1024, "vectorized"]]}, _Tester())
    ex.check.judge(reorder, {**obs, "t_fn": [0.031] * 7}, _Tester())  # 0.97x: noise, passes


def test_schedule_matmul_judge_on_forged_results():
    ex = get("scheduling.schedule_matmul")
    case = ex.check.cases()[0]
    for obs in (None, {}, {"c": "zeros"}, {"c": np.zeros((2, 2))}):
        with pytest.raises(CheckFailed):
            ex.check.judge(case, obs, _Tester())


def test_schedule_matmul_hint_is_a_nudge():
    hint = get("scheduling.schedule_matmul").hint
    assert hint and not any(p in hint for p in ("cache_write", "reverse_compute_at",
                                                "decompose_reduction", "sch."))


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


def test_fuse_relu_judge_on_forged_observations():
    ex = get("scheduling.fuse_relu")
    case = ex.check.cases()[0]
    good = np.maximum(case["a"].astype(np.float64) @ case["b"].astype(np.float64), 0)
    for obs, fragment in [(None, "malformed"), ({"d": good}, "malformed"),
                          ({"d": good, "root": {"stmts": 1, "allocs": []}}, "malformed"),
                          ({"d": -good - 1, "root": {"stmts": ["For"], "allocs": []}},
                           "matches numpy"),
                          ({"d": good, "root": {"stmts": ["For", "For"], "allocs": []}},
                           "2 loop nests"),
                          ({"d": good, "root": {"stmts": ["For"], "allocs": [["C", [16, 8]]]}},
                           "allocates C[16, 8]")]:
        with pytest.raises(CheckFailed, match=re.escape(fragment)):
            ex.check.judge(case, obs, _Tester())
    ex.check.judge(case, {"d": good, "root": {"stmts": ["For"], "allocs": []}}, _Tester())
    hint = ex.hint
    assert hint and "reverse_compute_at" not in hint and "compute_at(" not in hint


def test_modules_stay_small():
    for mod in (scheduling, scheduling_tir):
        assert len(Path(mod.__file__).read_text().splitlines()) <= 400


# ---- issue 20: wrong answers written as a student who misread the idea ---------------------------
# Each scores 0 with a message that names the mistake; "scored before" marks those that got
# full marks until the check gained the hidden case or the observation that catches them.

def test_split_wrong_answers():
    ex = "scheduling.split"

    def zero_only(nest, var, factor):  # scored before: only 0 was refused, -2 went through
        if factor == 0:
            raise ValueError("factor 0")
        return make_split(check_factor=False)(nest, var, factor)

    _fails(ex, "a factor of -2 raises ValueError", split=zero_only, **TINY)
    # scored before: the bindings and guards rewritten in the statements it was given; the
    # result is right, and the notebook's run(new) == run(nest) compares a nest with itself
    _fails(ex, "the nest given to split is left as it was", "S(vi=(i_0 * 4 + i_1))",
           "new statements", split=make_split(in_place=True), **TINY)
    # the old variable replaced without parentheses: i * 3 becomes i_0 * 2 + i_1 * 3
    _fails(ex, "inner loop named ii", "instance #6", split=make_split(
        sub=lambda e, v, r: re.sub(rf"\b{v}\b", r, e)), **TINY)
    # scored before: the search for the loop never looks inside a Guard
    _fails(ex, "loop j inside a guard", "no loop named j", split=make_split(enter_guards=False),
           **TINY)
    # the guard lets the overhang's first element through
    _fails(ex, "computes 11 instances, the original 10", split=make_split(guard_op="<="),
           **TINY)


def _judge_at_1024(schedule):
    """The 1024^3 case against the reorder, judged on the loops ``schedule`` makes, with a
    correct result and timings of a tie (1.0x): what the structure alone decides."""
    ex, case = get("scheduling.schedule_matmul"), _speed_case("reorder")
    sch = tir.Schedule(scheduling_tir.matmul_func(1024, 1024, 1024))
    schedule(sch)
    c = (case["a"].astype(np.float64) @ case["b"].astype(np.float64)).astype(np.float32)
    obs = {"c": c, "loops": scheduling_tir._loops_of(sch.func, "C"), "size": 1024,
           "t_ref": [0.1] * 7, "t_fn": [0.1] * 7}
    ex.check.judge(case, obs, _Tester())


def test_schedule_matmul_wrong_answers():
    def row_tile(sch):  # scored before: a "tile" of one row is the reorder to i, k, j
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[None, 1])
        sch.reorder(i0, k, i1, j)
        sch.vectorize(j)

    def k_outermost(sch):  # scored before: all of C updated once per k
        i, j, k = sch.get_loops(sch.get_block("C"))
        sch.reorder(k, i, j)
        sch.vectorize(j)

    def k_innermost(sch):  # tiles of C, but each element's whole sum before the next
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[None, 32])
        j0, j1 = sch.split(j, factors=[None, 64])
        sch.reorder(i0, j0, i1, j1, k)

    for wrong, shown in ((row_tile, "i_1 (1)"), (k_outermost, "k (1024), i (1024)"),
                         (k_innermost, "j_1 (64), k (1024)")):
        with pytest.raises(CheckFailed, match="keeps a tile of C") as err:
            _judge_at_1024(wrong)
        assert shown in str(err.value), str(err.value)

    def panel(sch):  # 32 whole rows of C while k runs: a tile over i only, still a tile
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[None, 32])
        sch.reorder(i0, k, i1, j)

    def fused_tile(sch):  # the tile's two loops fused into one: still a tile of C
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[None, 4])
        j0, j1 = sch.split(j, factors=[None, 16])
        sch.reorder(i0, j0, k, i1, j1)
        sch.fuse(i1, j1)

    for right in (schedule_matmul, panel, fused_tile):
        _judge_at_1024(right)


def test_one_slower_round_does_not_decide_against_the_reorder(monkeypatch):
    """The rounds at 1024^3 stop early only where the schedule is 3x slower: one round
    lost under load (the lecture's schedule measured 0.85x in one) is one of seven."""
    import mlc.perf

    def rounds(fn_times):
        times = iter(t for pair in zip([0.1] * 7, fn_times, strict=True) for t in pair)
        monkeypatch.setattr(mlc.perf, "timeit", lambda *a, **k: next(times))
        run = lambda a, b, c: None  # noqa: E731
        return scheduling_tir._time_rounds(run, run, 0, 0, 0, short_if_slower=True)

    t_ref, t_fn = rounds([0.12, 0.09, 0.08, 0.09, 0.08, 0.09, 0.08])
    assert len(t_ref) == len(t_fn) == scheduling_tir.ROUNDS
    assert rounds([0.4] * 7)[1] == [0.4]


def test_fuse_relu_wrong_answers():
    ex = "scheduling.fuse_relu"

    def one_iteration(sch):  # scored before: both nests inside a loop that runs once
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=[1, None])
        sch.reverse_compute_at(sch.get_block("D"), i0)

    _fails(ex, "(96x4) @ (4x80)", "a common loop of more than one iteration", "i_0 (1)",
           fuse_relu=one_iteration)

    def inside_k(sch):  # the relu of each partial sum
        i, j, k = sch.get_loops(sch.get_block("C"))
        sch.reverse_compute_at(sch.get_block("D"), k)

    _fails(ex, "a primitive refused", "not final inside loop k", fuse_relu=inside_k)

    def loops_fused(sch):  # each nest's loops fused into one: still two passes
        sch.fuse(*sch.get_loops(sch.get_block("C"))[:2])
        sch.fuse(*sch.get_loops(sch.get_block("D")))

    _fails(ex, "one loop nest at the root", "2 loop nests", fuse_relu=loops_fused)

    def per_row(sch):  # right: a row of C consumed once final
        sch.reverse_compute_at(sch.get_block("D"), sch.get_loops(sch.get_block("C"))[0])

    _passes(ex, fuse_relu=per_row)


# ---- the notebooks ------------------------------------------------------------------------------

def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "06_scheduling.ipynb")
    assert (report.score, report.max_score) == (8, 8), report.results


def test_released_notebook_gets_zero(graded):
    # exercises/ is what `mlc release` writes (`mlc release --check` in CI).
    report = graded(ROOT / "exercises" / "06_scheduling.ipynb")
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

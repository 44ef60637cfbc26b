"""graph.Program: the steps after fusion, computed once, planned and run by one Executable."""

import numpy as np
import pytest

from mlc import graph, memory
from mlc.models import digits_cnn, digits_mlp


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _cnn():
    model, x = digits_cnn(batch=2)
    return graph.eliminate_dead_code(graph.fold_constants(graph.trace(model, x))), x


def test_program_of_a_fused_graph_has_one_step_per_group_with_its_io():
    g, _ = _cnn()
    fg = graph.fuse(g)
    prog = graph.Program.of(fg)
    assert len(prog.steps) == len(fg.groups) and prog.target is None
    inside = set()
    for step, group in zip(prog.steps, fg.groups, strict=True):
        assert list(step.nodes) == group
        assert all(x not in group for x in step.reads)            # read from outside
        assert set(step.writes) <= set(group)
        inside |= set(group)
    written = {t for s in prog.steps for t in s.writes}
    for n in g.nodes:            # every value read across steps is written by one step
        for u in g.users()[n]:
            if not n.is_leaf and fg.group_of[n] != fg.group_of[u]:
                assert n in written
    assert prog.tensors == list(dict.fromkeys(t for s in prog.steps for t in s.writes))
    # the same facts whatever asks: memory's liveness works on the same Program
    assert set(memory.liveness(fg)) == set(prog.tensors)


def test_lower_compiles_each_step_and_the_executable_runs_the_program():
    g, x = _cnn()
    prog = graph.lower(graph.fuse(g), target="python")
    assert prog.target == "python" and all(s.kernel is not None for s in prog.steps)
    exe = graph.Executable(prog)
    assert exe.program is prog and exe.plan is None and exe.kernels == len(prog.steps)
    _close(exe(x), graph.interpret(g, x))
    assert "Program: 6 steps" in str(prog)
    with pytest.raises(ValueError, match="lowered Program"):
        graph.Executable(graph.Program.of(g))
    with pytest.raises(ValueError, match="unknown target"):
        graph.lower(graph.fuse(g), target="tpu")


def test_assign_returns_a_new_program_with_offsets():
    g, x = _cnn()
    prog = graph.lower(graph.fuse(g), target="python")
    plan = memory.plan(prog, "greedy_by_breadth")
    planned = memory.assign(prog, plan)
    assert planned is not prog and not prog.planned and planned.planned
    assert planned.offsets == plan.offsets and planned.arena_bytes == plan.arena_bytes
    assert planned.steps == prog.steps                       # kernels are shared
    assert "@" in str(planned)                               # offsets are printed
    _close(graph.Executable(planned)(x), graph.interpret(g, x))


def test_unfused_reshape_is_a_view_step():
    g, x = _cnn()
    prog = graph.lower(graph.fuse(g, "none"), target="python")
    views = [s for s in prog.steps if s.view_of is not None]
    assert views and all(s.nodes[0].op == "reshape" and s.kernel is None for s in views)
    exe = graph.Executable(prog)
    assert exe.kernels == len(prog.steps) - len(views)
    _close(exe(x), graph.interpret(g, x))


def test_build_takes_a_pass_pipeline():
    model, x = digits_mlp(batch=3)
    g = graph.trace(model, x)
    seen = []

    def spy(h):
        seen.append(len(h.ops))
        return h

    exe = graph.build(g, target="python", passes=[graph.fold_constants, spy])
    assert seen == [len(graph.fold_constants(g).ops)]
    _close(exe(x), graph.interpret(g, x))


def test_plans_and_saved_graphs_keep_integer_dtypes(tmp_path):
    b = graph.GraphBuilder()
    x = b.input((4, 8), name="x")
    q = b.op("cast", b.op("relu", x), dtype="int8")
    acc = b.op("cast", q, dtype="int32")
    g = b.graph(b.op("cast", b.op("add", acc, acc), dtype="float32"))
    prog = graph.Program.of(g)
    p = memory.plan(prog, "naive", alignment=1)
    sizes = {t.name: (t.dtype, p.sizes[t]) for t in p.offsets}
    assert sizes["cast"] == ("int8", 32) and sizes["cast_1"] == ("int32", 128)
    graph.save(g, tmp_path / "g")
    assert [n.dtype for n in graph.load(tmp_path / "g").nodes] == [n.dtype for n in g.nodes]

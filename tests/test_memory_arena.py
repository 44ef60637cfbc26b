"""Arena execution: a built graph whose intermediates are views of one buffer."""

import numpy as np
import pytest

from mlc import graph, memory
from mlc.models import digits_cnn, digits_mlp


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


CASES = {
    "mlp": lambda: digits_mlp(batch=8),
    "cnn": lambda: digits_cnn(batch=4),
    "deep_mlp": lambda: (memory.deep_mlp(16, width=32), np.random.rand(4, 64).astype("float32")),
}


_BUILT: dict = {}


def _built(name, fuse=True, target="python"):
    """(graph, example, plain executable), built once per module: compiling is the slow
    part, and the arena does not depend on the target."""
    key = (name, fuse, target)
    if key not in _BUILT:
        model, x = CASES[name]()
        g = graph.trace(model, x)
        _BUILT[key] = (g, x, graph.build(g, target=target, fuse=fuse))
    return _BUILT[key]


def _in_arena(base, plan):
    """``base``'s program run in the arena of ``plan`` (compiled kernels are reused)."""
    return graph.Executable(memory.assign(base.program, plan))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fuse", [True, False])
def test_arena_equals_the_reference_and_calls_are_independent(name, fuse):
    g, x, base = _built(name, fuse, "cpu" if name == "mlp" else "python")
    exe = _in_arena(base, memory.plan(base.program, "greedy_by_size", inplace=True))
    y1 = exe(x)
    _close(y1, graph.interpret(g, x))
    x2 = np.random.default_rng(5).standard_normal(x.shape).astype("float32")
    y2 = exe(x2)
    _close(y2, graph.interpret(g, x2))
    _close(y1, graph.interpret(g, x))               # the first result was a copy
    _close(exe(x), y1)                              # and running again gives it again
    assert exe.plan.arena_bytes < exe.plan.naive_bytes or name == "mlp"


def test_build_plans_the_program_it_runs_and_refuses_a_foreign_plan():
    model, x = digits_cnn(batch=2)
    g = graph.trace(model, x)
    exe = graph.build(g, target="python", memory_plan="greedy_by_size")
    assert exe.plan == memory.plan(exe.program, "greedy_by_size")
    assert exe.program.offsets == exe.plan.offsets and exe.program.planned
    assert not hasattr(exe, "replanned")
    _close(exe(x), graph.interpret(g, x))
    # a plan of the same steps (another lowering of the same graph) is accepted
    again = graph.build(g, target="python", memory_plan=exe.plan)
    assert again.plan == exe.plan and set(again.plan.offsets) == set(again.program.tensors)
    _close(again(x), graph.interpret(g, x))
    # a plan of the unfused, unfolded graph describes other steps: refused, saying why
    with pytest.raises(ValueError, match=r"other steps: this program has 6 steps, the "
                                         r"plan's program 2\d"):
        graph.build(g, target="python", memory_plan=memory.plan(g))
    with pytest.raises(ValueError, match="memory_plan"):
        graph.build(g, memory_plan=object())
    with pytest.raises(TypeError, match="graph.Program"):
        memory.assign(g, exe.plan)


def test_a_plan_for_other_shapes_is_refused():
    m1, x1 = digits_mlp(batch=2)
    p = graph.lower(graph.fuse(graph.trace(m1, x1)), "python")
    other = graph.lower(graph.fuse(graph.trace(m1, np.zeros((5, 64), "float32"))), "python")
    with pytest.raises(ValueError, match=r"step 0 .* writes .*\[2, 64\]; in the plan's "
                                         r"program it writes .*\[5, 64\]"):
        memory.assign(p, memory.plan(other))


def test_views_alias_their_source():
    g, x, base = _built("cnn", False, "python")
    p = memory.plan(base.program, "greedy_by_size")
    views = [s for s in base.program.steps if s.view_of is not None]
    assert views and all(s.kernel is None for s in views)
    for s in views:
        if s.view_of in p.offsets:
            assert p.views[s.writes[0]] is s.view_of
            assert p.offsets[s.writes[0]] == p.offsets[s.view_of]
    assert base.kernels == len(base.program.steps) - len(views)
    # sharing the bytes saves the copies: below the bound that counts views separately
    assert p.lower_bound < memory.lower_bound(base.program)
    _close(_in_arena(base, p)(x), graph.interpret(g, x))


@pytest.mark.parametrize("name", sorted(CASES))
def test_measured_peak_equals_the_plan(name):
    g, x, base = _built(name, True, "cpu" if name == "mlp" else "python")
    plan = memory.plan(base.program, "greedy_by_size")
    with memory.track() as t:
        exe = _in_arena(base, plan)
        exe(x)
        exe(x)
    fp = exe.footprint
    assert fp["arena"] == plan.arena_bytes
    assert t.peak == fp["total"] == plan.arena_bytes + fp["weights"] + fp["inputs"]
    assert memory.peak_bytes(exe, x) == 0                     # a call allocates nothing


def test_inplace_saves_bytes_in_the_unfused_mlp():
    g, x, base = _built("mlp", False, "cpu")
    plain = _in_arena(base, memory.plan(base.program, "greedy_by_size"))
    inplace = _in_arena(base, memory.plan(base.program, "greedy_by_size", inplace=True))
    assert inplace.bytes_in_place > 0
    assert inplace.plan.arena_bytes < plain.plan.arena_bytes
    _close(inplace(x), plain(x))


def test_build_with_a_strategy_and_inplace():
    model, x = digits_mlp(batch=4)
    g = graph.trace(model, x)
    exe = graph.build(g, target="python", memory_plan="greedy_by_breadth", fuse=False,
                      inplace=True)
    _close(exe(x), graph.interpret(g, x))
    assert exe.plan.inplace and exe.plan.strategy == "greedy_by_breadth"

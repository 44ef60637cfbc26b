"""Arena execution: a built graph whose intermediates are views of one buffer."""

import numpy as np
import pytest

from mlc import graph, memory
from mlc.graph import examples as E


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


CASES = {
    "mlp": lambda: E.digits_mlp(batch=8),
    "cnn": lambda: E.digits_cnn(batch=4),
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


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fuse", [True, False])
def test_arena_equals_the_reference_and_calls_are_independent(name, fuse):
    g, x, base = _built(name, fuse, "cpu" if name == "mlp" else "python")
    exe = memory.plan(base, "greedy_by_size", inplace=True).bind(base)
    assert not exe.replanned
    y1 = exe(x)
    _close(y1, graph.interpret(g, x))
    x2 = np.random.default_rng(5).standard_normal(x.shape).astype("float32")
    y2 = exe(x2)
    _close(y2, graph.interpret(g, x2))
    _close(y1, graph.interpret(g, x))               # the first result was a copy
    _close(exe(x), y1)                              # and running again gives it again
    assert exe.memory_plan.arena_bytes < exe.memory_plan.naive_bytes or name == "mlp"


def test_build_with_a_plan_of_the_graph():
    model, x = E.digits_cnn(batch=2)
    g = graph.trace(model, x)
    plan = memory.plan(g, strategy="greedy_by_size")          # the unfused, unfolded graph
    exe = graph.build(g, target="python", memory_plan=plan)
    assert isinstance(exe, memory.ArenaExecutable)
    assert exe.replanned                                      # build fused: planned again
    assert exe.memory_plan.strategy == "greedy_by_size"
    _close(exe(x), graph.interpret(g, x))
    same = graph.build(g, target="python", fuse=False)
    exe2 = graph.build(g, target="python", fuse=False, memory_plan=memory.plan(same))
    assert not exe2.replanned
    _close(exe2(x), graph.interpret(g, x))
    with pytest.raises(ValueError, match="memory_plan"):
        graph.build(g, memory_plan="greedy_by_size")


@pytest.mark.parametrize("name", sorted(CASES))
def test_measured_peak_equals_the_plan(name):
    g, x, base = _built(name, True, "cpu" if name == "mlp" else "python")
    plan = memory.plan(base, "greedy_by_size")
    with memory.track() as t:
        exe = plan.bind(base)
        exe(x)
        exe(x)
    fp = exe.footprint
    assert fp["arena"] == plan.arena_bytes
    assert t.peak == fp["total"] == plan.arena_bytes + fp["weights"] + fp["inputs"]
    assert memory.peak_bytes(exe, x) == 0                     # a call allocates nothing


def test_inplace_saves_bytes_in_the_unfused_mlp():
    g, x, base = _built("mlp", False, "cpu")
    plain = memory.plan(base, "greedy_by_size").bind(base)
    inplace = memory.plan(base, "greedy_by_size", inplace=True).bind(base)
    assert inplace.bytes_in_place > 0
    assert inplace.memory_plan.arena_bytes < plain.memory_plan.arena_bytes
    _close(inplace(x), plain(x))


def test_memory_build_helper():
    model, x = E.digits_mlp(batch=4)
    g = graph.trace(model, x)
    exe = memory.build(g, target="python", memory_plan="greedy_by_breadth", fuse=False,
                       inplace=True)
    _close(exe(x), graph.interpret(g, x))
    assert exe.memory_plan.inplace

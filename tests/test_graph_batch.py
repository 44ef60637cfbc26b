"""The batch axis: a graph traced at one batch size interprets, builds and runs at any."""

import numpy as np
import pytest

import mlc
from mlc import graph, memory, nn
from mlc.models import digits_cnn, digits_mlp


def _eager(model, x):
    return model(mlc.Tensor(x, requires_grad=False)).numpy()


def _rand(b, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((b, *shape)).astype("float32")


def test_trace_finds_the_batch_symbol_in_shapes_and_attributes():
    model, x = digits_cnn(batch=3)
    g = graph.trace(model, x)
    assert graph.batch_size(g) == 3
    sig = {n.name: graph.symbolic.signature(n) for n in g.nodes}
    assert sig["x"] == "float32[N, 8, 8, 1]"
    assert sig["reshape"] == "float32[64*N, 9]"                    # im2col rows: 64 per image
    reshape = g.node("reshape")
    assert reshape.sym[1]["shape"] == (graph.Dim(64), 9)
    assert graph.batch_size(graph.at_batch(g, 7)) == 7
    assert graph.at_batch(g, 7).node("reshape").shape == (448, 9)


def test_a_graph_traced_at_batch_3_builds_once_and_equals_eager_at_1_3_and_50():
    model, x = digits_cnn(batch=3)
    g = graph.trace(model, x)
    exe = graph.build(g, target="python")
    for b in (1, 3, 50):
        xb = _rand(b, x.shape[1:], seed=b)
        np.testing.assert_allclose(exe(xb), _eager(model, xb), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(graph.interpret(g, xb), _eager(model, xb), rtol=1e-5,
                                   atol=1e-5)
    assert exe.at_batch(50) is exe.at_batch(50)                       # lowered once per batch
    assert exe.at_batch(3) is exe


def test_memory_plans_per_batch_or_for_a_stated_maximum():
    model, x = digits_mlp(batch=4)
    g = graph.trace(model, x)
    per = graph.build(g, target="python", memory_plan="greedy_by_size")
    top = graph.build(g, target="python", memory_plan="greedy_by_size", max_batch=32)
    assert top.program.batch == 32 and top.plan == memory.plan(top.program, "greedy_by_size")
    for b in (1, 4, 32):
        xb = _rand(b, (64,), seed=b)
        for exe in (per, top):
            np.testing.assert_allclose(exe(xb), _eager(model, xb), rtol=1e-5, atol=1e-5)
        # sized per batch: the plan of that batch's program; for the maximum: one arena
        assert per.at_batch(b).plan == memory.plan(per.at_batch(b).program, "greedy_by_size")
        assert top.at_batch(b).arena is top.arena
    assert per.at_batch(1).plan.arena_bytes < per.at_batch(32).plan.arena_bytes
    with pytest.raises(ValueError, match="larger than 32"):
        top(_rand(33, (64,)))


def test_shape_errors_name_the_axis():
    model, x = digits_mlp(batch=4)
    exe = graph.build(graph.trace(model, x), target="python")
    with pytest.raises(ValueError, match=r"axis 1 is 63, expected 64 \(axis 0 is the batch"):
        exe(np.zeros((9, 63), "float32"))
    with pytest.raises(ValueError, match="batch size"):
        exe(np.zeros((0, 64), "float32"))


def test_two_inputs_share_the_batch():
    lin = nn.Linear(5, 5)
    g = graph.trace(lambda a, b: lin(a) + b, np.ones((2, 5), "float32"),
                    np.ones((2, 5), "float32"))
    assert graph.batch_size(g) == 2
    a, b = _rand(6, (5,), 1), _rand(6, (5,), 2)
    want = lin(mlc.Tensor(a)).numpy() + b
    np.testing.assert_allclose(graph.interpret(g, a, b), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        graph.interpret(g, a, b[:3])


def test_a_model_whose_constant_depends_on_the_batch_keeps_its_shapes():
    def f(t):       # a constant made from the input's shape: no batch axis is possible
        return t + mlc.Tensor(np.arange(t.shape[0] * 3, dtype="float32").reshape(-1, 3))

    g = graph.trace(f, np.ones((2, 3), "float32"))
    assert graph.batch_size(g) is None and "depends on the batch size" in g.batch_reason
    with pytest.raises(ValueError, match=r"expected shape \[2, 3\], got \(4, 3\): axis 0"):
        graph.interpret(g, np.ones((4, 3), "float32"))
    assert graph.build(g, target="python")(np.ones((2, 3), "float32")).shape == (2, 3)


def test_passes_keep_the_batch_axis():
    model, x = digits_mlp(batch=3)
    g = graph.run_passes(graph.trace(model, x), verbose=False)
    xb = _rand(11, (64,))
    np.testing.assert_allclose(graph.interpret(g, xb), _eager(model, xb), rtol=1e-5,
                               atol=1e-5)


def test_a_batch_1_trace_has_no_batch_axis_and_says_why():
    model, x = digits_mlp(batch=1)
    g = graph.trace(model, x)
    assert graph.batch_size(g) is None and "trace at batch 2 or more" in g.batch_reason
    with pytest.raises(ValueError, match="trace at batch 2"):
        graph.at_batch(g, 4)


def test_folded_batch_norm_keeps_the_batch_axis():
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU())
    model.eval()                                   # running statistics, as the trace uses
    model.modules[1].running_mean = mlc.Tensor(np.linspace(-1, 1, 5).astype("float32"),
                                               requires_grad=False)
    g = graph.fold_batch_norm(graph.fold_constants(graph.trace(model, _rand(3, (6,)))))
    assert not any(n.op == "batch_norm" for n in g.nodes)
    xb = _rand(8, (6,), 3)
    np.testing.assert_allclose(graph.build(g, target="python")(xb), _eager(model, xb),
                               rtol=1e-5, atol=1e-5)


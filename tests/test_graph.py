"""mlc.graph: tracing, printing, interpreting, passes, patterns, post-dominators, fusion
and its explanations (no compilation here; see test_graph_build.py)."""

import numpy as np
import pytest

import mlc
from mlc import graph, nn, ops
from mlc.graph import examples
from mlc.graph.ir import GraphBuilder
from mlc.models import digits_cnn, digits_mlp


def _eager(model, x):
    if isinstance(model, nn.Module):
        model.eval()
    return model(mlc.Tensor(x)).numpy()


MODELS = {
    "mlp": digits_mlp,
    "cnn": lambda: digits_cnn(batch=2),
    "norm_softmax": examples.norm_softmax,
    "bn_mlp": examples.bn_mlp,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trace_and_interpret_match_eager(name):
    model, x = MODELS[name]()
    g = graph.trace(model, x)
    np.testing.assert_allclose(graph.interpret(g, x), _eager(model, x), rtol=1e-5, atol=1e-6)
    # topological order, marked inputs/outputs/constants
    seen = set()
    for n in g.nodes:
        assert all(id(i) in seen for i in n.inputs)
        seen.add(id(n))
    assert [n.op for n in g.inputs] == ["input"] and len(g.outputs) == 1
    assert all(p.value is not None and p.value.shape == p.shape for p in g.params)


def test_trace_covers_the_course_ops():
    model, x = examples.norm_softmax()
    g = graph.trace(model, x)
    ops_seen = {n.op for n in g.ops}
    assert {"matmul", "broadcast_to", "summation", "softmax", "relu", "power_scalar",
            "divide", "divide_scalar", "negate"} <= ops_seen
    cnn, xi = digits_cnn(batch=2)
    assert {"pad", "im2col", "reshape", "matmul"} <= {n.op for n in graph.trace(cnn, xi).ops}
    # batched matmul, transpose, tanh, sigmoid, logsumexp without keepdims, two outputs
    a = np.random.randn(2, 3, 4).astype("float32")
    b = np.random.randn(2, 4, 5).astype("float32")
    def f(p, q):
        return ops.tanh(p @ q), ops.sigmoid(ops.logsumexp(ops.transpose(p), axes=(1,)))

    g = graph.trace(f, a, b)
    outs = graph.interpret(g, a, b)
    ref = [t.numpy() for t in f(mlc.Tensor(a), mlc.Tensor(b))]
    assert len(outs) == 2
    assert all(np.allclose(o, r, atol=1e-6) for o, r in zip(outs, ref, strict=True))
    assert {"permute", "tanh", "sigmoid"} <= {n.op for n in g.ops}


def test_trace_puts_the_model_back_in_its_mode_and_uses_eval():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model.train()
    x = np.ones((2, 4), "float32")
    g = graph.trace(model, x)
    assert model.training and "multiply" not in {n.op for n in g.ops}


def test_print_is_one_node_per_line():
    model, x = digits_mlp()
    g = graph.trace(model, x)
    text = str(g)
    assert text.startswith("graph(%x: float32[1, 64])")
    assert "%matmul = matmul(%x, %modules.0.weight)" in text
    assert text.count("\n") == len(g.nodes) - len(g.inputs) + 2
    assert "return %add_1" in text


def test_untraceable_op_is_named():
    with pytest.raises(graph.TraceError, match="cannot trace op MakeTensorTuple"):
        graph.trace(lambda t: ops.stack([t, t]), np.ones((2, 2), "float32"))


def test_interpret_checks_inputs():
    model, x = digits_mlp()
    g = graph.trace(model, x)
    with pytest.raises(TypeError, match="takes 1 input"):
        graph.interpret(g)
    with pytest.raises(ValueError, match="shape"):
        graph.interpret(g, np.ones((2, 64), "float32"))
    with pytest.raises(TypeError, match="dtype"):
        graph.interpret(g, np.ones((1, 64)))


# --- passes --------------------------------------------------------------------------------


def test_fold_constants_folds_weight_reshape_but_not_broadcasts():
    cnn, x = digits_cnn(batch=2)
    g = graph.trace(cnn, x)
    f = graph.fold_constants(g)
    assert len(f.ops) == len(g.ops) - 2          # the two conv weight reshapes
    assert any(p.name == "modules.0.weight.reshape" for p in f.params)
    assert "broadcast_to" in {n.op for n in f.ops}
    np.testing.assert_allclose(graph.interpret(f, x), graph.interpret(g, x), rtol=1e-6)
    assert len(graph.trace(cnn, x).ops) == len(g.ops)  # the input graph is unchanged


def test_dead_code_and_cse():
    b = GraphBuilder()
    x = b.input((3, 4))
    e1, e2 = b.op("exp", x), b.op("exp", x)
    dead = b.op("log", x)
    s = b.op("add", e1, e2)
    g = b.graph(s)
    assert dead in g.nodes
    d = graph.eliminate_dead_code(g)
    assert [n.op for n in d.ops] == ["exp", "exp", "add"]
    c = graph.eliminate_common_subexpressions(d)
    assert [n.op for n in c.ops] == ["exp", "add"]
    assert c.outputs[0].inputs[0] is c.outputs[0].inputs[1]
    xv = np.random.randn(3, 4).astype("float32")
    np.testing.assert_allclose(graph.interpret(c, xv), graph.interpret(g, xv), rtol=1e-6)


def test_fold_batch_norm_after_linear():
    model, x = examples.bn_mlp()
    g = graph.trace(model, x)
    assert "batch_norm" in {n.op for n in g.ops}
    f = graph.fold_batch_norm(graph.fold_constants(g))
    assert "batch_norm" not in {n.op for n in f.ops}
    assert len(f.ops) == len(g.ops) - 1
    np.testing.assert_allclose(graph.interpret(f, x), graph.interpret(g, x), rtol=1e-4,
                               atol=1e-5)


def test_fold_batch_norm_leaves_unfoldable_ones():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.BatchNorm1d(6))
    g = graph.trace(model, np.ones((2, 4), "float32"))
    assert "batch_norm" in {n.op for n in graph.fold_batch_norm(g).ops}


def test_pass_manager_reports_each_pass(capsys):
    cnn, x = digits_cnn(batch=2)
    g = graph.trace(cnn, x)
    out = graph.run_passes(g, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    n = len(g.ops)
    assert lines[0].startswith(f"fold_constants: {n} -> {n - 2} ops (-2 reshape")
    assert len(lines) == len(graph.DEFAULT_PASSES)
    pm = graph.PassManager([graph.eliminate_dead_code])
    assert len(pm.run(out).ops) == len(out.ops) and pm.log[0].endswith("(no change)")


# --- patterns, post-dominators ---------------------------------------------------------------


def test_patterns():
    model, x = examples.norm_softmax()
    g = graph.trace(model, x)
    kinds = {n.op: graph.pattern(n) for n in g.ops}
    assert kinds["add"] == "elemwise" and kinds["broadcast_to"] == "broadcast"
    assert kinds["summation"] == "reduce" and kinds["softmax"] == "reduce"
    assert kinds["matmul"] == "out_elemwise_fusable"
    assert graph.pattern("reshape") == "injective" and graph.pattern("col2im") == "opaque"
    assert set(graph.PATTERNS) == {"elemwise", "broadcast", "injective", "reduce",
                                   "out_elemwise_fusable", "opaque"}


def _diamond(two_outputs=False):
    b = GraphBuilder()
    x = b.input((4, 4))
    a = b.op("exp", x, name="a")
    l, r = b.op("negate", a, name="l"), b.op("tanh", a, name="r")
    if two_outputs:
        return b.graph(l, r)
    return b.graph(b.op("add", l, r, name="d"))


def test_post_dominators_of_a_diamond():
    g = _diamond()
    ip = graph.post_dominators(g)
    a, l, r, d = (g.node(n) for n in "alrd")
    assert ip[a] is d and ip[l] is d and ip[r] is d and ip[d] is None
    g2 = _diamond(two_outputs=True)
    assert graph.post_dominators(g2)[g2.node("a")] is None


# --- fusion ----------------------------------------------------------------------------------


def test_diamond_fuses_when_the_sink_post_dominates():
    fg = graph.fuse(_diamond(), "tvm")
    assert fg.kernels == 1 and not graph.explain_fusion(fg)
    fg2 = graph.fuse(_diamond(two_outputs=True), "tvm")
    rep = graph.explain_fusion(fg2)
    assert fg2.kernels == 3 and {e.reason for e in rep} == {"graph_output"} or \
        {e.reason for e in rep} == {"multiple_consumers_outside"}


def test_mlp_and_linear_relu_groups():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 8), nn.ReLU())
    g = graph.trace(model, np.ones((2, 8), "float32"))
    for policy in ("tvm", "epilogue"):
        fg = graph.fuse(g, policy)
        assert fg.kernels == 3
        assert [sorted(n.op for n in gr) for gr in fg.groups] == \
            [["add", "broadcast_to", "matmul", "relu"]] * 3
        assert {e.reason for e in graph.explain_fusion(fg)} == {"matmul_prologue"}
    assert graph.fuse(g, "none").kernels == len(g.ops)


def test_softmax_and_layernorm_under_both_policies():
    x = np.random.randn(4, 8).astype("float32")
    whole = graph.trace(lambda t: ops.softmax(t), x)
    assert [n.op for n in whole.ops] == ["softmax"]
    assert all(graph.fuse(whole, p).kernels == 1 for p in graph.POLICIES)
    g = graph.decompose(whole)  # the same arithmetic as primitive ops: fusion decides
    assert sorted(n.op for n in g.ops).count("exp") == 1
    tvm, epi = graph.fuse(g, "tvm"), graph.fuse(g, "epilogue")
    assert (tvm.kernels, epi.kernels) == (4, 1)
    assert "reduce_epilogue" in {e.reason for e in graph.explain_fusion(tvm)}
    ln = graph.trace(nn.LayerNorm1d(8), x)
    assert graph.fuse(ln, "epilogue").kernels < graph.fuse(ln, "tvm").kernels


def test_policies_are_objects_and_bad_names_fail():
    g = _diamond()
    assert isinstance(graph.get_policy("tvm"), graph.TVMPolicy)
    assert graph.fuse(g, graph.EpiloguePolicy()).policy.name == "epilogue"
    with pytest.raises(ValueError, match="unknown fusion policy 'fastest'"):
        graph.fuse(g, "fastest")
    with pytest.raises(TypeError):
        graph.fuse(g, 3)


def test_size_limit():
    b = GraphBuilder()
    y = b.input((4,))
    for _ in range(6):
        y = b.op("tanh", y)
    g = b.graph(y)
    fg = graph.fuse(g, "tvm", max_group_size=4)
    assert max(len(gr) for gr in fg.groups) <= 4 and fg.kernels == 2
    assert [e.reason for e in graph.explain_fusion(fg)] == ["size_limit"]


def test_opaque_ops_stand_alone():
    b = GraphBuilder()
    x = b.input((1, 3, 3, 2, 2, 1))
    y = b.op("relu", x)
    z = b.op("col2im", y, shape=(1, 4, 4, 1), kernel=(2, 2), stride=1)
    g = b.graph(b.op("exp", z))
    fg = graph.fuse(g, "tvm")
    assert fg.kernels == 3
    assert {e.reason for e in graph.explain_fusion(fg)} == {"opaque"}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("policy", ["tvm", "epilogue"])
def test_every_unfused_edge_of_the_course_models_has_a_known_reason(name, policy):
    model, x = MODELS[name]()
    g = graph.fold_constants(graph.trace(model, x))
    fg = graph.fuse(g, policy)
    rep = graph.explain_fusion(fg)
    crossing = sum(1 for p in g.ops for c in g.users()[p] if fg.group_of[p] != fg.group_of[c])
    assert len(rep) == crossing
    for e in rep:
        assert e.reason in graph.REASONS and e.reason != "unknown"
        assert e.producer.name in e.sentence or e.consumer.name in e.sentence
    assert "producer" in str(rep)


def test_draw_colours_groups():
    import matplotlib

    matplotlib.use("Agg")
    model, x = digits_mlp()
    g = graph.trace(model, x)
    ax = g.draw()
    assert len(ax.patches) >= len(g.nodes)
    fg = graph.fuse(g)
    ax2 = fg.draw()
    colours = {tuple(p.get_facecolor()) for p in ax2.patches}
    assert len(colours) >= fg.kernels


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_fold_batch_norm_batch_one_and_no_bias(batch, bias):
    """Batch 1 traces add(matmul, constant) (no broadcast_to); a Linear without bias has
    no add at all: both fold, and the folded graph computes the same."""
    model, x = examples.bn_mlp(batch=batch)
    if not bias:
        model[0].bias = None
    model.eval()
    g = graph.fold_constants(graph.trace(model, x))
    if bias and batch == 1:
        first_add = next(n for n in g.ops if n.op == "add")
        assert {i.op for i in first_add.inputs} == {"matmul", "constant"}
    f = graph.fold_batch_norm(g)
    assert "batch_norm" not in {n.op for n in f.ops}
    np.testing.assert_allclose(graph.interpret(f, x), graph.interpret(g, x), rtol=1e-4,
                               atol=1e-5)
    # the folded layer is matmul + (broadcast) constant
    add = next(n for n in f.ops if n.op == "add")
    assert add.inputs[0].op == "matmul"
    assert add.inputs[1].op == ("constant" if batch == 1 and bias else "broadcast_to")

"""The op registry and the transformer's ops: each against numpy in eager mode, through
``graph.interpret`` and compiled (``graph.build``), with gradients where training needs
them. Tiny shapes: the whole file runs in seconds."""

import math

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import graph, ops
from mlc.graph import GraphBuilder
from mlc.graph import intrinsic_calls

from gradcheck_util import check_gradients

rng = np.random.default_rng(0)
ERF = np.vectorize(math.erf)


def _x(*shape):
    return rng.standard_normal(shape).astype("float32")


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_layer_norm(x, w, b, eps=1e-5):
    d = x - x.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + eps) * w + b


def _all_ways(fn, *arrays, expect, atol=1e-5):
    """``fn`` on Tensors eagerly, traced and interpreted, and compiled for cpu and (in
    the simulator) cuda, each equal to ``expect``; returns the graph."""
    eager = fn(*[mlc.Tensor(a, dtype=str(a.dtype), requires_grad=False) for a in arrays])
    np.testing.assert_allclose(eager.numpy(), expect, rtol=1e-5, atol=atol)
    g = graph.trace(fn, *arrays)
    assert all(n.dtype for n in g.nodes)
    np.testing.assert_allclose(graph.interpret(g, *arrays), expect, rtol=1e-5, atol=atol)
    for target in ("cpu", "cuda"):
        out = graph.build(g, target=target)(*arrays)
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=atol, err_msg=target)
    return g


CASES = {
    "erf": (lambda t: ops.erf(t), [_x(3, 5)], lambda a: ERF(a)),
    "gelu": (lambda t: ops.gelu(t), [_x(3, 5)], lambda a: a * (1 + ERF(a / math.sqrt(2))) / 2),
    "cast": (lambda t: ops.cast(t, "float64"), [_x(2, 3)], lambda a: a.astype("float64")),
    "concat": (lambda a, b: ops.concat([a, b, a], axis=1), [_x(2, 3), _x(2, 2)],
               lambda a, b: np.concatenate([a, b, a], axis=1)),
    "slice": (lambda t: ops.slice_(t, (1, 0, 2), (3, 2, 5)), [_x(4, 2, 6)],
              lambda a: a[1:3, 0:2, 2:5]),
    "where": (lambda c, a, b: ops.where(c, a, b),
              [(_x(3, 4) > 0).astype("float32"), _x(3, 4), _x(3, 4)],
              lambda c, a, b: np.where(c != 0, a, b)),
    "softmax": (lambda t: ops.softmax(t, axis=1), [_x(2, 5, 3)], lambda a: _np_softmax(a, 1)),
    "reduce_mean": (lambda t: ops.reduce_mean(t, (0, 2), keepdims=True), [_x(3, 2, 4)],
                    lambda a: a.mean((0, 2), keepdims=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy_eager_interpreted_and_compiled(name):
    fn, arrays, ref = CASES[name]
    g = _all_ways(fn, *arrays, expect=ref(*arrays))
    assert name in {n.op for n in g.ops}


def test_take_gathers_int64_rows_and_layer_norm_any_leading_axes():
    table, ids = _x(7, 4), rng.integers(0, 7, size=(2, 3)).astype("int64")
    g = _all_ways(lambda t, i: ops.take(t, i), table, ids, expect=table[ids])
    assert [n.dtype for n in g.inputs] == ["float32", "int64"]
    x, w, b = _x(2, 3, 6), _x(6), _x(6)
    _all_ways(lambda t, u, v: ops.layer_norm(t, u, v), x, w, b,
              expect=_np_layer_norm(x, w, b), atol=1e-5)


def test_int64_end_to_end():
    ids = np.array([[0, 2**40], [5, -3]], dtype="int64")
    t = mlc.Tensor(ids, dtype="int64", requires_grad=False)
    assert t.dtype == "int64" and t.numpy().dtype == np.int64
    assert (t.numpy() == ids).all() and int(t.realize_cached_data().sum()) == int(ids.sum())
    g = graph.trace(lambda i: ops.cast(i, "float32"), ids)
    assert g.inputs[0].dtype == "int64" and g.outputs[0].dtype == "float32"
    np.testing.assert_array_equal(graph.build(g)(ids), ids.astype("float32"))


def test_gradients():
    ref = nd.cpu_numpy()  # check_gradients' device
    ids = mlc.Tensor(np.array([[1, 0, 1]]), device=ref, dtype="int64", requires_grad=False)
    check_gradients(lambda t: ops.take(t, ids), _x(3, 2))      # row 1 gets two grads
    check_gradients(lambda t: ops.gelu(t), _x(2, 3))
    check_gradients(lambda t: ops.erf(t), _x(2, 3))
    check_gradients(lambda t: ops.softmax(t, axis=0), _x(3, 2))
    check_gradients(lambda t: ops.reduce_mean(t, (1,)), _x(2, 3))
    check_gradients(lambda a, b: ops.concat([a, b], axis=0), _x(1, 2), _x(2, 2))
    check_gradients(lambda t: ops.slice_(t, (0, 1), (2, 3)), _x(3, 3))
    check_gradients(lambda t, w, b: ops.layer_norm(t, w, b), _x(2, 2, 4), _x(4), _x(4),
                    rtol=1e-4, atol=1e-5)
    cond = mlc.Tensor(np.array([[1.0, 0.0]]), device=ref, dtype="float64", requires_grad=False)
    check_gradients(lambda a, b: ops.where(cond, a, b), _x(1, 2), _x(1, 2))


def test_bad_input_is_refused_before_any_kernel():
    t = mlc.Tensor(_x(4, 2))
    with pytest.raises(IndexError, match=r"ids must lie in \[0, 4\)"):
        ops.take(t, mlc.Tensor(np.array([4]), dtype="int64"))
    with pytest.raises(TypeError, match="integers"):
        ops.take(t, mlc.Tensor(np.array([1.0])))
    with pytest.raises(ValueError, match="not inside an axis"):
        ops.slice_(t, (0, 0), (5, 2))
    with pytest.raises(ValueError, match="differ on another axis"):
        ops.concat([t, mlc.Tensor(_x(4, 3))], axis=0)
    with pytest.raises(ValueError, match="weight and bias"):
        ops.layer_norm(t, mlc.Tensor(_x(3)), mlc.Tensor(_x(2)))
    b = GraphBuilder()
    with pytest.raises(TypeError, match="ids must be integers"):
        b.op("take", b.input((4, 2)), b.input((3,), name="i"))


def test_softmax_is_one_exp_per_element_under_every_policy():
    x = _x(6, 16)
    whole = graph.trace(lambda t: ops.softmax(t), x)
    for g in (whole, graph.decompose(whole)):
        for policy in graph.POLICIES:
            exe = graph.build(g, policy=policy)
            np.testing.assert_allclose(exe(x), _np_softmax(x), rtol=1e-5, atol=1e-7)
            exps = sum(intrinsic_calls(k.func) for k in exe.kernel_list if k.func is not None)
            assert exps == x.size, (policy, exps)


def test_registry_drives_tracing_interpreting_lowering_and_flops():
    d = graph.OPS["gelu"]
    assert d.pattern == "elemwise" and ops.GELU in d.traces
    assert d.infer([(2, 3)], ["float32"], {}) == ((2, 3), "float32")
    assert graph.OPS["cast"].infer([(2,)], ["float32"], {"dtype": "int64"}) == ((2,), "int64")
    assert graph.OPS["summation"].infer([(2, 3)], ["int8"], {"axes": (1,)}) == ((2,), "int32")
    with pytest.raises(ValueError, match="already registered"):
        graph.register(d)
    g = graph.trace(lambda a, b: a @ b, _x(2, 3, 4), _x(2, 4, 5))
    assert graph.ops.flops(g.outputs[0]) == 2 * 2 * 3 * 5 * 4


def test_interpreter_subclass_sees_every_node():
    class Ranges(graph.Interpreter):
        def run_node(self, node, inputs):
            out = super().run_node(node, inputs)
            self.seen[node.op] = float(out.numpy().max())
            return out

    x = _x(3, 4)
    g = graph.trace(lambda t: ops.gelu(ops.relu(t)), x)
    it = Ranges(g)
    it.seen = {}
    np.testing.assert_allclose(it.run(x), graph.interpret(g, x))
    assert set(it.seen) == {"relu", "gelu"} and it.seen["relu"] >= it.seen["gelu"] >= 0


def test_batched_matmul_has_its_own_schedule():
    q, k = _x(2, 3, 8, 4), _x(2, 3, 4, 16)  # 16 wide: narrower is packed (lower_matmul)
    exe = graph.build(graph.trace(lambda a, b: a @ b, q, k))
    np.testing.assert_allclose(exe(q, k), q @ k, rtol=1e-5, atol=1e-5)
    src = exe.source
    assert "local" in src and "fused" in src  # a local accumulator tile, batch loops fused

"""Tracing never turns work done off the tape into a constant (issue 18, item 5): it is
refused naming the module, or, for a sparse layer, traced as an extern op."""

import numpy as np
import pytest

import mlc
from mlc import compress, graph, nn, ops
from mlc.graph.trace import TraceError


class NumpyTanh(nn.Module):
    """Computes in numpy and wraps the result back into a Tensor: off the tape."""

    def forward(self, x):
        return mlc.Tensor(np.tanh(x.numpy()), requires_grad=False)


class ScaledNumpy(nn.Module):
    """Off the tape, then on it again with a parameter: still not a function of x."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, np.float32))

    def forward(self, x):
        return mlc.Tensor(x.numpy() * 2) * self.scale


class Positions(nn.Module):
    """An output that depends only on a parameter is a legitimate constant of the graph."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(np.arange(12, dtype=np.float32).reshape(4, 3))

    def forward(self, x):
        return ops.broadcast_to(ops.summation(self.table, axes=(0,)), x.shape)


class WithPositions(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = Positions()

    def forward(self, x):
        return x + self.pos(x)


def _x(rows=4, cols=3, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


@pytest.mark.parametrize("layer", [NumpyTanh, ScaledNumpy])
def test_an_off_tape_layer_is_refused_naming_it(layer):
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 3), layer(), nn.ReLU())
    with pytest.raises(TraceError, match=rf"module modules\.1 \({layer.__name__}\).*numpy"):
        graph.trace(model, _x())
    assert not vars(model.modules[1]).get("_forward_hooks")  # the trace's hooks are gone
    with pytest.raises(TraceError, match="the model"):  # a plain function is checked too
        graph.trace(lambda x: mlc.Tensor(x.numpy() + 1.0), _x())


def test_a_parameter_only_output_is_a_constant_and_traces():
    model = WithPositions()
    g = graph.trace(model, _x())
    x = _x(seed=1)
    np.testing.assert_allclose(graph.interpret(g, x), model(mlc.Tensor(x)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["csr", "2:4"])
def test_a_sparse_model_traces_as_extern_ops_and_compiles(fmt, tmp_path):
    np.random.seed(0)
    dense = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    compress.prune_2_4(dense)
    sparse = compress.to_sparse(compress.clone(dense), fmt=fmt)
    assert all(isinstance(m, compress.SparseLinear) for m in sparse.modules[::2])
    g = graph.trace(sparse, _x(2, 8))
    assert [n.op for n in g.nodes if n.op not in ("input", "constant")] == [
        "sparse_matmul", "relu", "sparse_matmul"]
    x_new = _x(5, 8, seed=3)  # new values, another batch
    want = dense(mlc.Tensor(x_new)).numpy()
    np.testing.assert_allclose(sparse(mlc.Tensor(x_new)).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.interpret(g, x_new), want, rtol=1e-5, atol=1e-6)
    exe = graph.build(g, memory_plan="greedy_by_size")
    np.testing.assert_allclose(exe(x_new), want, rtol=1e-5, atol=1e-6)
    graph.save(g, tmp_path / "g")  # the format's arrays are constants: saved without pickle
    np.testing.assert_allclose(graph.build(graph.load(tmp_path / "g"))(x_new), want,
                               rtol=1e-5, atol=1e-6)


def test_a_sparse_layer_has_no_gradient():
    np.random.seed(0)
    sparse = compress.to_sparse(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(NotImplementedError, match="SparseMatMul has no gradient"):
        sparse(mlc.Tensor(_x(2, 4))).sum().backward()


def test_batch_norm_still_traces_as_one_node_without_patching_forward():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    model.modules[1].running_mean.data = mlc.Tensor(np.arange(4, dtype=np.float32))
    g = graph.trace(model, _x())
    assert [n.op for n in g.nodes].count("batch_norm") == 1
    assert "forward" not in vars(model.modules[1])
    assert not vars(model.modules[1]).get("_forward_hooks") and model.training

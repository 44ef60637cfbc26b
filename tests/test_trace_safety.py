"""Tracing never turns work done off the tape into a constant (issue 18, item 5)."""

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


def test_tracing_to_sparse_is_refused_and_the_dense_model_compiles():
    np.random.seed(0)
    dense = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    compress.prune_magnitude(dense, 0.75)
    x_new = _x(5, 8, seed=3)
    want = dense(mlc.Tensor(x_new)).numpy()
    exe = graph.build(graph.trace(dense, _x(5, 8, seed=4)))  # masked weights: on the tape
    np.testing.assert_allclose(exe(x_new), want, rtol=1e-5, atol=1e-6)
    sparse = compress.to_sparse(compress.models.clone(dense))
    np.testing.assert_allclose(sparse(mlc.Tensor(x_new)).numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(TraceError, match=r"module modules\.0 \(SparseLinear\).*to_sparse"):
        graph.trace(sparse, _x(2, 8))


def test_batch_norm_still_traces_as_one_node_without_patching_forward():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    model.modules[1].running_mean.data = mlc.Tensor(np.arange(4, dtype=np.float32))
    g = graph.trace(model, _x())
    assert [n.op for n in g.nodes].count("batch_norm") == 1
    assert "forward" not in vars(model.modules[1])
    assert not vars(model.modules[1]).get("_forward_hooks") and model.training

"""Batched @ 2-D (a Linear on 3-D input) is one matmul node with a shared weight."""

import numpy as np
import pytest

import mlc
from mlc import graph, nn


@pytest.mark.parametrize("fuse", [False, True])
def test_linear_on_3d_input_traces_builds_and_matches(fuse):
    model = nn.Sequential(nn.Linear(8, 5), nn.ReLU())
    x = mlc.Tensor(np.random.default_rng(0).standard_normal((3, 4, 8)).astype(np.float32))
    g = graph.trace(model, x)
    mm = [n for n in g.nodes if n.op == "matmul"]
    assert len(mm) == 1 and mm[0].inputs[1].shape == (8, 5) and mm[0].shape == (3, 4, 5)
    exe = graph.build(g, target="python", fuse=fuse)
    np.testing.assert_allclose(exe(x.numpy()), model(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exe(x.numpy()), graph.interpret(g, x.numpy()), rtol=1e-5,
                               atol=1e-6)


def test_matmul_shape_rule_refuses_mismatched_batches():
    from mlc.graph import OPS

    f32 = ["float32", "float32"]
    assert OPS["matmul"].infer([(3, 4, 8), (8, 5)], f32, {}) == ((3, 4, 5), "float32")
    with pytest.raises(ValueError, match="do not match"):
        OPS["matmul"].infer([(3, 4, 8), (2, 8, 5)], f32, {})

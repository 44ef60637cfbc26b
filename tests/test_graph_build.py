"""mlc.graph.build: lowering fused groups to kernels and running them.

The property test runs hundreds of seeded random DAGs of elementwise, broadcast, reduce
and matmul nodes through ``interpret`` and ``build`` (unfused, "tvm", "epilogue") on the
"python" target (no compile time); a few fixed models are compiled for "cpu" (Numba),
with shapes chosen so that compiled kernels repeat, and one for "cuda" (the simulator
when there is no GPU, tiny shapes).
"""

import numpy as np
import pytest

import mlc
from mlc import graph, nn, ops
from mlc.graph import examples
from mlc.graph.ir import GraphBuilder

UNARY = [("relu", {}), ("tanh", {}), ("sigmoid", {}), ("negate", {}),
         ("mul_scalar", {"scalar": 0.5}), ("add_scalar", {"scalar": 1.0}), ("exp", {})]
BINARY = ["add", "multiply", "maximum"]


def random_dag(rng, n_ops=8, shape=(3, 5)):
    """A random DAG over one (3, 5) input: unary/binary elementwise ops, row reductions
    broadcast back, column-vector broadcasts and matmuls with a constant (5, 5)."""
    b = GraphBuilder()
    vals = [b.input(shape, name="x")]
    w = b.constant((rng.standard_normal((shape[1], shape[1])) * 0.4).astype("float32"), "w")
    for _ in range(n_ops):
        kind = rng.choice(["unary", "unary", "binary", "binary", "reduce", "matmul",
                           "broadcast"])
        a = vals[int(rng.integers(len(vals)))]
        if kind == "unary":
            op, attrs = UNARY[int(rng.integers(len(UNARY)))]
            if op == "exp":
                a = b.op("tanh", a)
            v = b.op(op, a, **attrs)
        elif kind == "binary":
            c = vals[int(rng.integers(len(vals)))]
            v = b.op(BINARY[int(rng.integers(len(BINARY)))], a, c)
        elif kind == "reduce":
            red = b.op(["summation", "reduce_max"][int(rng.integers(2))], a, axes=(1,),
                       keepdims=True)
            v = b.op("broadcast_to", b.op("tanh", red), shape=shape)
        elif kind == "broadcast":
            row = b.constant(rng.standard_normal((1, shape[1])).astype("float32"), "row")
            v = b.op("add", a, b.op("broadcast_to", row, shape=shape))
        else:
            v = b.op("tanh", b.op("matmul", a, w))
        vals.append(v)
    users = {id(x) for n in b.nodes for x in n.inputs}
    outs = [n for n in vals[1:] if id(n) not in users] or [vals[-1]]
    return b.graph(*outs)


def _close(a, b):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(y).max()))


@pytest.mark.parametrize("seed", range(4))
def test_random_dags_agree_everywhere(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        g = random_dag(rng, n_ops=int(rng.integers(3, 11)))
        x = rng.standard_normal((3, 5)).astype("float32")
        ref = graph.interpret(g, x)
        for fuse, policy in ((False, "tvm"), (True, "tvm"), (True, "epilogue")):
            exe = graph.build(g, target="python", fuse=fuse, policy=policy)
            _close(exe(x), ref)
        for policy in ("tvm", "epilogue"):
            rep = graph.explain_fusion(graph.fuse(g, policy))
            assert all(e.reason in graph.REASONS for e in rep)


def test_mlp_compiles_to_three_kernels():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 64), nn.ReLU())
    x = np.random.randn(8, 64).astype("float32")
    g = graph.trace(model, x)
    exe = graph.build(g, target="python")
    assert exe.kernels == 3
    model.eval()
    _close(exe(x), model(mlc.Tensor(x)).numpy())
    assert graph.build(g, target="python", fuse=False).kernels == len(g.ops)
    assert exe.source.count("def k") == 3


def test_linear_relu_on_cpu_uses_the_hand_schedule_with_its_epilogue():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
    x = np.random.randn(4, 64).astype("float32")
    exe = graph.build(graph.trace(model, x), target="cpu")
    assert exe.kernels == 1
    script = exe.kernel_list[0].func.script()
    assert 'scope="local"' in script and "max(" in script  # the tile, ReLU in its copy-back
    _close(exe(x), np.maximum(model(mlc.Tensor(x)).numpy(), 0))


def test_relu_x_w_plus_b_is_one_kernel_with_no_intermediate_buffer():
    x = np.random.randn(16, 32).astype("float32")
    w = mlc.Tensor(np.random.randn(32).astype("float32"))
    b = mlc.Tensor(np.random.randn(32).astype("float32"))
    g = graph.trace(lambda t: ops.relu(t * w + b), x)
    exe = graph.build(g, target="cpu")
    assert exe.kernels == 1
    assert "np.empty" not in exe.source  # multiply and add are inlined: no buffer
    _close(exe(x), np.maximum(x * w.numpy() + b.numpy(), 0))
    prof = exe.profile(x, repeat=2, min_time=0.001)
    assert len(prof) == 1 and "total" in str(prof)


@pytest.mark.parametrize("name", ["cnn", "norm_softmax", "bn_mlp"])
def test_course_models_build_and_match(name):
    make = {"cnn": lambda: examples.digits_cnn(batch=2), "norm_softmax": examples.norm_softmax,
            "bn_mlp": examples.bn_mlp}[name]
    model, x = make()
    g = graph.trace(model, x)
    ref = graph.interpret(g, x)
    for policy in ("tvm", "epilogue"):
        exe = graph.build(graph.run_passes(g, verbose=False), target="python", policy=policy)
        _close(exe(x), ref)


def test_epilogue_softmax_on_cpu_is_one_kernel():
    x = np.random.randn(8, 16).astype("float32")
    g = graph.trace(lambda t: ops.softmax(t), x)
    tvm = graph.build(g, target="cpu", policy="tvm")
    epi = graph.build(g, target="cpu", policy="epilogue")
    assert (tvm.kernels, epi.kernels) == (3, 1)
    _close(epi(x), graph.interpret(g, x))
    _close(tvm(x), graph.interpret(g, x))


def test_cuda_target_tiny():
    x = np.random.randn(4, 8).astype("float32")
    w = mlc.Tensor(np.random.randn(8, 6).astype("float32"))
    g = graph.trace(lambda t: ops.softmax(ops.relu(t @ w)), x)
    for policy in ("tvm", "epilogue"):
        exe = graph.build(g, target="cuda", policy=policy)
        _close(exe(x), graph.interpret(g, x))


def test_executable_validates_inputs_and_options():
    model, x = examples.digits_mlp()
    g = graph.trace(model, x)
    exe = graph.build(g, target="python")
    with pytest.raises(TypeError, match="takes 1 input"):
        exe(x, x)
    with pytest.raises(ValueError, match="shape"):
        exe(np.ones((2, 64), "float32"))
    with pytest.raises(TypeError, match="dtype"):
        exe(x.astype("float64"))
    with pytest.raises(TypeError, match="numpy array or NDArray"):
        exe([1.0] * 64)
    with pytest.raises(ValueError, match="unknown target"):
        graph.build(g, target="tpu")
    with pytest.raises(ValueError, match="unknown fusion policy"):
        graph.build(g, policy="greedy")
    with pytest.raises(ValueError, match="memory_plan"):
        graph.build(g, memory_plan=object())
    import mlc.ndarray as nd

    _close(exe(nd.array(x, device=nd.cpu_numpy())), graph.interpret(g, x))


def test_lowered_group_inlines_intermediates():
    x = np.random.randn(4, 8).astype("float32")
    g = graph.trace(lambda t: ops.exp(ops.tanh(t) * 2.0 + 1.0), x)
    exe = graph.build(g, target="python")
    (k,) = exe.kernel_list
    script = k.func.script()
    assert "alloc_buffer" not in script and "tanh" in script

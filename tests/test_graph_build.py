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
from mlc.models import digits_cnn, digits_mlp

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
    make = {"cnn": lambda: digits_cnn(batch=2), "norm_softmax": examples.norm_softmax,
            "bn_mlp": examples.bn_mlp}[name]
    model, x = make()
    g = graph.trace(model, x)
    ref = graph.interpret(g, x)
    for policy in ("tvm", "epilogue"):
        exe = graph.build(graph.run_passes(g, verbose=False), target="python", policy=policy)
        _close(exe(x), ref)


def test_epilogue_softmax_on_cpu_is_one_kernel():
    x = np.random.randn(8, 16).astype("float32")
    g = graph.decompose(graph.trace(lambda t: ops.softmax(t), x))
    tvm = graph.build(g, target="cpu", policy="tvm")
    epi = graph.build(g, target="cpu", policy="epilogue")
    assert (tvm.kernels, epi.kernels) == (4, 1)
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
    model, x = digits_mlp()
    g = graph.trace(model, x)
    exe = graph.build(g, target="python")
    with pytest.raises(TypeError, match="takes 1 input"):
        exe(x, x)
    with pytest.raises(ValueError, match=r"got \(2, 65\): axis 0 is 2, expected 1"):
        exe(np.ones((2, 65), "float32"))            # traced at batch 1: no batch axis
    with pytest.raises(ValueError, match="3 axes"):
        exe(np.ones((1, 64, 1), "float32"))
    with pytest.raises(ValueError, match=r"expected shape \[N, 64\], got \(2, 65\): axis 1"):
        graph.build(graph.trace(model, np.ones((3, 64), "float32")), target="python")(
            np.ones((2, 65), "float32"))
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


def _kernel_sources(exe):
    return [k.source for k in exe.kernel_list if k.source]


def test_epilogue_softmax_computes_exp_once_per_element_in_one_row_loop():
    x = (np.random.randn(6, 20) * 5).astype("float32")
    g = graph.trace(lambda t: ops.softmax(t, axis=-1), x)
    exe = graph.build(g, target="python", policy="epilogue")
    (src,) = _kernel_sources(exe)
    assert exe.kernels == 1
    # exp(x - max) once per element, kept in a one-row buffer; the output divides by the sum
    assert src.count("math.exp(") == 1 and "math.log(" not in src
    assert "np.empty((1, 20)" in src and src.count("np.empty((1, 1)") == 2
    # one loop over rows holds every pass; the accumulators are initialised outside
    # the reduce loops (decompose_reduction: no first-iteration branch in the sum)
    assert src.count("for i0 in") == 1 and "== 0:" not in src
    _close(exe(x), graph.interpret(g, x))
    cpu = graph.build(g, target="cpu", policy="epilogue")
    _close(cpu(x), graph.interpret(g, x))


@pytest.mark.parametrize("shape,axis", [((7, 5), 0), ((3, 4, 9), -1), ((3, 4, 9), 1)])
def test_softmax_rewrite_other_axes(shape, axis):
    x = np.random.randn(*shape).astype("float32")
    g = graph.trace(lambda t: ops.softmax(t, axis=axis), x)
    for policy in ("tvm", "epilogue"):
        exe = graph.build(g, target="python", policy=policy)
        _close(exe(x), graph.interpret(g, x))


def test_softmax_rewrite_skipped_when_the_chain_is_read_elsewhere():
    x = np.random.randn(5, 8).astype("float32")
    g = graph.eliminate_common_subexpressions(graph.trace(
        lambda t: (ops.softmax(t, axis=-1), ops.log_softmax(t, axis=-1)), x))
    exe = graph.build(g, target="python", policy="epilogue")
    # the log-softmax output reads the logsumexp chain: the softmax keeps its own exp
    assert "math.log(" in exe.source
    for got, ref in zip(exe(x), graph.interpret(g, x), strict=True):
        _close(got, ref)


def test_epilogue_layernorm_is_one_row_loop_with_scalar_accumulators():
    x = np.random.randn(6, 24).astype("float32")
    model = nn.LayerNorm1d(24)
    g = graph.trace(model, x)
    exe = graph.build(g, target="python", policy="epilogue")
    (src,) = _kernel_sources(exe)
    assert exe.kernels == 1 and src.count("for i0 in") == 1
    assert src.count("np.empty((1, 1)") == 2 and "np.empty((6, 1)" not in src
    _close(exe(x), graph.interpret(g, x))


def test_column_reduction_is_not_recomputed_per_row():
    x = np.random.randn(16, 8).astype("float32")
    g = graph.trace(lambda t: t / ops.broadcast_to(ops.summation(t, axes=(0,), keepdims=True),
                                                   t.shape), x)
    exe = graph.build(g, target="python", policy="epilogue")
    _close(exe(x), graph.interpret(g, x))
    # computing the column sum inside the row loop would redo it per row: it stays apart,
    # before the row loop
    (src,) = _kernel_sources(exe)
    assert src.count("for r0 in range(16)") == 1
    assert src.index("# block summation") < src.index("for i0 in range(16)")


def test_cnn_im2col_kernels_have_no_division_in_their_index_maps():
    model, x = digits_cnn(batch=3)
    model.eval()
    g = graph.trace(model, x)
    exe = graph.build(g, target="python")
    for k in exe.kernel_list:
        if any(n.op == "im2col" for n in k.nodes):
            body = k.source.split("def ", 1)[1]
            assert "//" not in body and "%" not in body, k.source
    _close(exe(x), graph.interpret(g, x))

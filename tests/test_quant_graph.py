"""Quantization as graph passes: residual and attention models, simulate, build, plan, save."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import graph, memory, nn, quant
from mlc.data import load_digits
from mlc.quant import examples


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _calib(X):
    return [X[i:i + 256] for i in range(0, len(X), 256)]


def _trace(model, X):
    return graph.trace(model, mlc.Tensor(X[:2], requires_grad=False))


@pytest.fixture(scope="module")
def residual(digits):
    X_train, y_train, _, _ = digits
    out = []
    for seed in (0, 1, 2):
        np.random.seed(seed)
        model = examples.train(examples.ResidualMLP(), X_train, y_train, epochs=8)
        g = _trace(model, X_train)
        out.append((g, quant.quantize_graph(g, _calib(X_train))))
    return out


def _acc(y, labels):
    return float((y.argmax(1) == labels).mean())


def test_residual_mlp_becomes_qlinear_and_qadd(residual, digits):
    _, _, X_test, y_test = digits
    losses = []
    for g, qg in residual:
        ops = [n.op for n in qg.ops]
        assert ops.count("qlinear") == 4 and ops.count("qadd") == 1
        assert set(ops) <= {"quantize", "qlinear", "qadd", "dequantize"}    # no float island
        y_int = quant.run(qg, X_test)
        assert (y_int == quant.simulate(qg, X_test)).all()     # code for code
        assert (y_int == graph.interpret(qg, X_test)).all()    # kernels == reference
        fp32 = _acc(graph.interpret(g, X_test), y_test)
        assert fp32 >= 0.92
        losses.append(fp32 - _acc(y_int, y_test))
    assert max(losses) <= 0.01, losses                       # at most 1 point, every seed


def test_prepare_observes_only_match_boundaries(residual):
    g, _ = residual[0]
    pg = quant.prepare(g)
    keys = [n.attrs["key"] for n in pg.nodes if n.op == "observe"]
    assert keys[0] == g.inputs[0].name and keys[-1] == pg.outputs[0].inputs[0].name
    assert len(keys) == len(set(keys))
    bare = quant.passes.strip_observers(pg)
    assert [n.op for n in bare.ops] == [n.op for n in quant.passes.fold(g).ops]


def test_attention_block_quantizes_with_float_islands(digits):
    X_train, y_train, X_test, y_test = digits
    np.random.seed(0)
    model = examples.train(examples.AttentionBlock(), X_train, y_train, epochs=8)
    g = _trace(model, X_train)
    qg = quant.quantize_graph(g, _calib(X_train))
    ops = [n.op for n in qg.ops]
    assert ops.count("qlinear") == 6 and ops.count("qadd") == 1     # the residual add only
    assert "exp" in ops and "dequantize" in ops                       # softmax stays float
    assert [n.attrs.get("alpha") for n in qg.ops if n.op == "qmatmul"] == [1 / 8 ** 0.5, None]
    y = quant.run(qg, X_test)
    assert (y == quant.simulate(qg, X_test)).all()
    assert _acc(graph.interpret(g, X_test), y_test) - _acc(y, y_test) <= 0.02
    exes = [graph.build(gg, target="cpu", memory_plan="greedy_by_size")
            for gg in (quant.passes.fold(g), qg)]
    assert exes[1].plan.arena_bytes <= 0.6 * exes[0].plan.arena_bytes
    assert (exes[1](X_test[:5]) == graph.interpret(qg, X_test[:5])).all()


def test_qmatmul_folds_the_dequantize_into_the_product():
    from mlc.quant import graph_ops

    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, (2, 3, 4, 5)).astype(np.int8)
    b = rng.integers(-128, 128, (2, 3, 5, 6)).astype(np.int8)
    attrs = {"s_a": 0.02, "z_a": 3, "s_b": 0.5, "z_b": -4, "alpha": 0.25}
    want = (0.02 * 0.5 * 0.25 * ((a.astype(np.int64) - 3) @ (b.astype(np.int64) + 4))
            ).astype(np.float32)
    assert (graph_ops.qmatmul_ref(attrs, a, b) == want).all()
    for device in (nd.cpu(), nd.cuda()):
        assert (graph_ops.qmatmul_kernel(attrs, a, b, device=device) == want).all()
    p = rng.random((2, 3, 4, 5)).astype(np.float32)        # a float operand (softmax's P)
    mixed = {"s_b": 0.5, "z_b": -4}
    np.testing.assert_allclose(graph_ops.qmatmul_kernel(mixed, p, b),
                               p @ quant.dequantize(b, 0.5, -4), rtol=1e-6)
    with pytest.raises(ValueError, match="equal batch axes"):
        graph_ops.qmatmul_kernel(attrs, a, b[:1])


def test_quantized_graph_builds_plans_and_saves(residual, digits, tmp_path):
    g, qg = residual[0]
    X = digits[2][:50]
    y = quant.run(qg, X)
    float_arena = memory.plan(quant.passes.fold(g), "greedy_by_size").arena_bytes
    int8_arena = memory.plan(qg, "greedy_by_size").arena_bytes
    assert int8_arena <= 0.6 * float_arena, (int8_arena, float_arena)
    exe = graph.build(qg, target="cpu", memory_plan="greedy_by_size")
    assert (exe(X) == y).all()
    graph.save(qg, tmp_path / "q")
    loaded = graph.load(tmp_path / "q")
    assert (quant.run(loaded, X) == y).all() and (graph.interpret(loaded, X) == y).all()


def test_int4_weights_take_a_fifth_of_the_bytes_and_keep_argmax(residual, digits):
    g, _ = residual[0]
    X_test = digits[2]
    wg = quant.quantize_weights(g, bits=4, group_size=32)
    assert [n.op for n in wg.ops].count("wmatmul") == 4 and "matmul" not in [n.op for n in wg.ops]
    fp32_bytes = sum(n.inputs[1].nbytes for n in g.ops if n.op == "matmul")
    int4_bytes = sum(n.inputs[1].nbytes + n.inputs[2].nbytes for n in wg.ops
                     if n.op == "wmatmul")
    assert int4_bytes <= 0.2 * fp32_bytes
    ref = graph.interpret(g, X_test)
    y4 = graph.interpret(wg, X_test)
    assert np.allclose(quant.run(wg, X_test), y4, rtol=1e-4, atol=1e-4)   # kernel == reference
    assert (y4.argmax(1) == ref.argmax(1)).mean() >= 0.95


def test_bad_weight_only_config_names_the_problem(residual):
    g, _ = residual[0]
    with pytest.raises(ValueError, match="bits"):
        quant.quantize_weights(g, bits=3)
    with pytest.raises(ValueError, match=r"does not divide K=64.*|.*does not divide K=64"):
        quant.quantize_weights(g, bits=4, group_size=48)


def test_an_unknown_op_is_a_float_island():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 4))
    x = np.random.randn(32, 8).astype(np.float32)
    g = graph.trace(model, mlc.Tensor(x[:2], requires_grad=False))
    qg = quant.quantize_graph(g, [x])
    ops = [n.op for n in qg.ops]
    i = ops.index("sigmoid")
    assert ops[i - 1:i + 2] == ["dequantize", "sigmoid", "quantize"]
    assert np.abs(quant.run(qg, x) - graph.interpret(g, x)).max() < 0.05


def test_qat_keys_observers_by_module_path(digits):
    X_train, y_train, X_test, y_test = digits
    np.random.seed(0)
    model = examples.train(examples.ResidualMLP(), X_train, y_train, epochs=3)
    qat = quant.prepare_qat(model, bits=8)
    assert sorted(qat.layers()) == ["block.fn.modules.0", "block.fn.modules.2", "head", "inp"]
    examples.train(qat, X_train, y_train, epochs=1, lr=0.002)
    with pytest.raises(RuntimeError, match="calibration_batches"):
        quant.convert(qat)                 # the residual sum: no layer reads it alone
    qm = quant.convert(qat, _calib(X_train))
    ops = [n.op for n in qm.graph.ops]
    assert ops.count("qadd") == 1 and quant.compare_codes(qm, X_test).ok
    fp32 = (qat.float_model()(mlc.Tensor(X_test, requires_grad=False)).numpy().argmax(1)
            == y_test).mean()
    assert (qm(X_test).argmax(1) == y_test).mean() >= fp32 - 0.01


def test_cuda_kernels_agree_on_the_graph(residual, digits):
    _, qg = residual[0]
    x = digits[2][:2]
    assert (quant.run(qg, x, device=nd.cuda()) == quant.run(qg, x)).all()


def test_a_built_graph_calls_the_bound_kernels(residual, digits, monkeypatch):
    import mlc.quant.kernels_cpu as kc
    import mlc.quant.kernels_graph as kg

    _, qg = residual[0]
    assert all(graph.OPS[op].extern.bind is not None for op in ("qlinear", "qadd", "quantize"))
    calls = {"pack_input": 0, "qadd_kernel": 0}
    for module, name in ((kc, "pack_input"), (kg, "qadd_kernel")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name: calls.update(
            {name: calls[name] + 1}) or real(*a))
    exe = graph.build(qg, target="cpu", memory_plan="greedy_by_size")
    for bs in (3, 1, 3):                  # an input panel per batch size, kept and reused
        x = digits[2][:bs]
        assert (exe(x) == graph.interpret(qg, x)).all()
    assert calls == {"pack_input": 12, "qadd_kernel": 3}


@pytest.mark.parametrize("relu", [False, True])
def test_qadd_kernels_equal_the_reference(relu):
    from mlc.quant import graph_ops

    rng = np.random.default_rng(1)
    attrs = dict(graph_ops.add_params(0.05, 0.013, 0.04), z_a=-7, z_b=20, z_out=-3, relu=relu)
    a, b = (rng.integers(-128, 128, (5, 7)).astype(np.int8) for _ in range(2))
    want = graph_ops.qadd_ref(attrs, a, b)
    for device in (nd.cpu(), nd.cuda()):
        assert (graph_ops.qadd_kernel(attrs, a, b, device=device) == want).all()
    with pytest.raises(ValueError, match="qadd needs two int8 arrays"):
        graph_ops.qadd_kernel(attrs, a, b[:2])

"""mlc.quant on the course's digits models: PTQ, the integer model, QAT, the report."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import nn, quant
from mlc.data import load_digits
from test_nn_train import accuracy, train

DEV = nd.cpu()


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def mlp(digits):
    np.random.seed(0)
    X_train, y_train, _, _ = digits
    model = nn.Sequential(nn.Linear(64, 64, device=DEV), nn.ReLU(), nn.Linear(64, 10, device=DEV))
    train(model, X_train, y_train, epochs=10, device=DEV)
    return model


@pytest.fixture(scope="module")
def cnn():
    np.random.seed(0)
    X_train, y_train, _, _ = load_digits(flatten=False)
    model = nn.Sequential(
        nn.Conv(1, 8, 3, device=DEV), nn.ReLU(),
        nn.Conv(8, 16, 3, stride=2, device=DEV), nn.ReLU(),
        nn.Flatten(), nn.Linear(256, 10, device=DEV))
    train(model, X_train, y_train, epochs=3, device=DEV)
    return model


def _acc(qmodel, X, y):
    return float((qmodel(X).argmax(1) == y).mean())


def test_ptq_mlp_w8a8_loses_at_most_half_a_point(mlp, digits):
    X_train, _, X_test, y_test = digits
    q = quant.quantize_model(mlp, [X_train[:512], X_train[512:]], per_channel=True)
    fp32, int8 = accuracy(mlp, X_test, y_test, DEV), _acc(q, X_test, y_test)
    assert fp32 >= 0.95
    assert int8 >= fp32 - 0.005, (fp32, int8)
    check = quant.compare_codes(q, X_test)
    assert check.ok and check.mismatched_codes == 0 and check.total_codes == 10 * len(X_test)


def test_ptq_cnn_w8a8_loses_at_most_half_a_point(cnn):
    X_train, _, X_test, y_test = load_digits(flatten=False)
    q = quant.quantize_model(cnn, [X_train], per_channel=True)
    assert [layer.kind for layer in q.layers] == ["conv", "conv", "linear"]
    fp32, int8 = accuracy(cnn, X_test, y_test, DEV), _acc(q, X_test, y_test)
    assert fp32 >= 0.85
    assert int8 >= fp32 - 0.005, (fp32, int8)
    assert quant.compare_codes(q, X_test).ok


def test_int8_weights_take_a_quarter_of_the_bytes(mlp, digits):
    q = quant.quantize_model(mlp, [digits[0][:256]])
    b = q.weight_bytes()
    assert 4 * b["int8_weights"] == b["fp32_weights"]
    n_out = sum(layer.shape[1] for layer in q.layers)
    assert b["scales"] == 4 * n_out                    # one float32 scale per output channel
    assert b["int8_total"] == b["int8_weights"] + b["scales"] + b["int32_bias_and_multipliers"]
    assert b["int8_total"] < b["fp32_total"] / 3


def test_integer_model_is_a_model(mlp, digits):
    X_train, _, X_test, _ = digits
    q = quant.quantize_model(mlp, [X_train[:256]], observer="histogram")
    for bs in (1, 7, 256):                              # any batch size
        assert q(X_test[:bs]).shape == (bs, 10)
    out = q(mlc.Tensor(X_test[:5], device=DEV, requires_grad=False))
    assert isinstance(out, mlc.Tensor) and out.shape == (5, 10)
    codes = q.codes(X_test[:5])
    assert codes.dtype == np.int8
    s, z = q.output_qparams
    assert np.allclose(q(X_test[:5]), s * (codes.astype(np.float32) - z))
    # the folded float program equals the float model
    ref = mlp(mlc.Tensor(X_test[:50], device=DEV, requires_grad=False)).numpy()
    assert np.allclose(q.float_forward(X_test[:50]), ref, atol=1e-4)
    # layer parameters: int8 per-channel symmetric weights, int32 bias, fixed-point M
    layer = q.layers[0]
    assert layer.w_q.dtype == np.int8 and layer.bias_q.dtype == np.int32
    assert layer.s_w.shape == (64,) and ((1 << 30) <= layer.m0).all()


def test_batch_norm_is_folded_before_quantizing(digits):
    np.random.seed(1)
    X_train, y_train, X_test, y_test = digits
    model = nn.Sequential(nn.Linear(64, 32, device=DEV), nn.BatchNorm1d(32, device=DEV),
                          nn.ReLU(), nn.Linear(32, 10, device=DEV))
    train(model, X_train, y_train, epochs=3, device=DEV)
    q = quant.quantize_model(model, [X_train])
    assert len(q.layers) == 2
    model.eval()
    ref = model(mlc.Tensor(X_test, device=DEV, requires_grad=False)).numpy()
    assert np.allclose(q.float_forward(X_test), ref, atol=1e-3)
    assert _acc(q, X_test, y_test) >= accuracy(model, X_test, y_test, DEV) - 0.02


def test_integer_model_on_cuda_matches_cpu(mlp, digits):
    X_train, _, X_test, _ = digits
    q = quant.quantize_model(mlp, [X_train[:256]])
    x = X_test[:2]                                      # 2 x 64 threads in the simulator
    assert (q.codes(x, device=nd.cuda()) == q.codes(x)).all()


def test_per_tensor_is_worse_than_per_channel_on_weights(cnn):
    X_train = load_digits(flatten=False)[0][:256]
    pc = quant.quantize_model(cnn, [X_train], per_channel=True)
    pt = quant.quantize_model(cnn, [X_train], per_channel=False)
    rp = quant.report(None, pc, X_train)
    rt = quant.report(None, pt, X_train)
    assert sum(r["weight_sqnr"] for r in rp.rows) > sum(r["weight_sqnr"] for r in rt.rows)


def test_an_op_with_no_integer_form_is_a_float_island():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 4, device=DEV), nn.Tanh(), nn.Linear(4, 2, device=DEV))
    x = np.random.randn(16, 4).astype(np.float32)
    q = quant.quantize_model(model, [x])
    ops = [n.op for n in q.graph.ops]
    i = ops.index("tanh")                                 # dequantize -> tanh -> quantize
    assert ops[i - 1:i + 2] == ["dequantize", "tanh", "quantize"]
    assert ops.count("qlinear") == 2 and quant.compare_codes(q, x).ok
    assert np.abs(q(x) - q.float_forward(x)).max() < 0.05
    with pytest.raises(quant.UnsupportedModelError, match="no Linear or Conv"):
        quant.quantize_model(nn.Sequential(nn.Tanh()), [x])
    with pytest.raises(ValueError, match="empty"):
        quant.quantize_model(model, [])


def test_fake_quantize_op_straight_through_gradient():
    x = mlc.Tensor(np.array([-3.0, -0.26, 0.0, 0.24, 0.7, 5.0], np.float32))
    y = quant.FakeQuantize(0.5, 0, -2, 1)(x)             # grid -1, -0.5, 0, 0.5
    assert y.numpy().tolist() == [-1.0, -0.5, 0.0, 0.0, 0.5, 0.5]
    y.sum().backward()
    assert x.grad.numpy().tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]   # 0 where clamped


def test_qat_4bit_recovers_at_least_half_the_ptq_gap(mlp, digits):
    X_train, y_train, X_test, y_test = digits
    fp32 = accuracy(mlp, X_test, y_test, DEV)
    ptq = _acc(quant.quantize_model(mlp, [X_train], weight_bits=4, act_bits=4), X_test, y_test)
    w_before = mlp.modules[0].weight.numpy().copy()
    np.random.seed(0)
    qat = quant.prepare_qat(mlp, bits=4)
    train(qat, X_train, y_train, epochs=3, device=DEV, lr=0.003)
    assert np.array_equal(mlp.modules[0].weight.numpy(), w_before)   # the float model is kept
    qm = quant.convert(qat)
    qat_acc = _acc(qm, X_test, y_test)
    gap = fp32 - ptq
    assert gap > 0.01, (fp32, ptq)                       # 4 bits do hurt
    assert qat_acc >= ptq + gap / 2, (fp32, ptq, qat_acc)
    assert quant.compare_codes(qm, X_test).ok
    assert qm.layers[0].w_q.min() >= -8 and qm.layers[0].w_q.max() <= 7


def test_report_table_and_chart(mlp, digits):
    import matplotlib

    matplotlib.use("Agg")
    X_train, _, X_test, y_test = digits
    q = quant.quantize_model(mlp, [X_train[:256]])
    rep = quant.report(mlp, q, (X_test, y_test))
    text = str(rep)
    assert "modules.0" in text and "output SQNR" in text and "accuracy" in text
    assert all(r["output_sqnr"] > 20 for r in rep.rows)   # W8A8: tens of dB
    assert rep.float_accuracy >= 0.95 and abs(rep.quant_accuracy - rep.float_accuracy) < 0.01
    ax = rep.plot()
    assert len(ax.patches) == len(q.layers)


def test_fp16_weights_halve_the_bytes_and_keep_accuracy(mlp, digits):
    _, _, X_test, y_test = digits
    half = quant.to_float16(mlp)
    assert quant.half_weights is quant.to_float16
    b = half.weight_bytes()
    assert b["fp16_total"] * 2 == b["fp32_total"] == 4 * sum(p.numpy().size
                                                             for p in mlp.parameters())
    assert all(h.dtype == "float16" for h in half.half.values())
    x = mlc.Tensor(X_test, device=DEV, requires_grad=False)
    with mlc.no_grad():
        ref = mlp(x).numpy()
        got = half(x).numpy()
    # the model computes with its weights rounded to fp16 ...
    for p, h in zip(half.model.parameters(), half.half.values(), strict=True):
        assert (p.numpy() == h.numpy().astype(np.float32)).all()
    assert 0 < half.max_abs_error < 1e-2
    # ... which changes the logits a little and the accuracy not at all (here)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    assert abs((got.argmax(1) == y_test).mean() - (ref.argmax(1) == y_test).mean()) <= 0.005
    # the float model is unchanged
    with mlc.no_grad():
        assert (mlp(x).numpy() == ref).all()
    assert half.half_activations is False and "HalfModel" in repr(half)
    with mlc.no_grad():
        out = quant.to_float16(mlp, half_activations=True)(X_test)    # numpy in, numpy out
    assert isinstance(out, np.ndarray) and np.abs(out - ref).max() < 0.05 * np.abs(ref).max()

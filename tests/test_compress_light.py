"""mlc.compress lighter models and reports: depthwise-separable conv, early exit,
FLOP counting, summary and the Pareto front."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import compress as C
from mlc import nn
from mlc.data import load_digits
from mlc.models import digits_cnn, digits_mlp


def _reference_dwsep(x, dw, pw, b, stride, pad):
    n, h, w, c = x.shape
    k = dw.shape[0]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    d = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            d[:, i, j, :] = (win * dw[None]).sum(axis=(1, 2))
    return d @ pw + b


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_separable_conv_matches_reference(stride):
    rng = np.random.default_rng(0)
    layer = C.DepthwiseSeparableConv(3, 5, 3, stride=stride)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    out = C.predict(layer, x)
    ref = _reference_dwsep(x, layer.depthwise.numpy(), layer.pointwise.numpy(),
                           layer.bias.numpy(), stride, 1)
    assert out.shape == ref.shape == (2, 6 // stride, 6 // stride, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    cost = C.conv_cost(3, 5, 3, out_pixels=36)
    assert sum(p.size for p in layer.parameters()) == cost["separable_params"] + 5
    assert nn.Conv(3, 5, 3).weight.size == cost["standard_params"]


def test_depthwise_separable_conv_gradient():
    rng = np.random.default_rng(1)
    dev = nd.cpu_numpy()
    layer = C.DepthwiseSeparableConv(2, 3, 3, device=dev, dtype="float64")
    x = mlc.Tensor(rng.standard_normal((1, 4, 4, 2)), device=dev, dtype="float64",
                   requires_grad=False)
    weight = rng.standard_normal((1, 4, 4, 3))
    (layer(x) * mlc.Tensor(weight, device=dev, dtype="float64",
                           requires_grad=False)).sum().backward()
    dw0 = layer.depthwise.numpy().copy()
    num = np.zeros_like(dw0)
    eps = 1e-6
    for idx in np.ndindex(dw0.shape):
        vals = []
        for delta in (eps, -eps):
            d = dw0.copy()
            d[idx] += delta
            layer.depthwise.data = mlc.Tensor(d, device=dev, dtype="float64",
                                              requires_grad=False)
            with mlc.no_grad():
                vals.append(float((layer(x).numpy() * weight).sum()))
        num[idx] = (vals[0] - vals[1]) / (2 * eps)
    np.testing.assert_allclose(layer.depthwise.grad.numpy(), num, rtol=1e-5, atol=1e-7)


def test_separable_cnn_has_fewer_params_and_flops_and_prunes():
    x = load_digits(flatten=False)[2][:4]
    std = digits_cnn(channels=(16, 32), seed=0)[0]
    sep = digits_cnn(channels=(16, 32), seed=0, conv=C.DepthwiseSeparableConv)[0]
    assert C.count_parameters(sep) < C.count_parameters(std)
    f_std, f_sep = C.count_flops(std, x[:1]), C.count_flops(sep, x[:1])
    # conv1: 2*9*16*64; conv2: 2*9*16*32*16 vs 2*(9*16 + 16*32)*16; fc: 2*512*10
    assert f_std == 2 * 9 * 16 * 64 + 2 * 9 * 16 * 32 * 16 + 2 * 512 * 10
    assert f_sep == 2 * 9 * 16 * 64 + 2 * (9 * 16 + 16 * 32) * 16 + 2 * 512 * 10
    small = C.prune_channels(sep, 0.5)  # slices depthwise inputs and pointwise outputs
    assert small[2].depthwise.shape == (3, 3, 8) and small[2].pointwise.shape == (8, 16)
    assert C.predict(small, x).shape == (4, 10)
    C.prune_magnitude(sep, 0.5)  # the pointwise weight is prunable
    assert any(a == "pointwise" for _, _, a in C.prunable(sep))


def test_early_exit_thresholds_move_flops_between_the_two_paths():
    X_train, y_train, X_test, y_test = load_digits()
    model = C.early_exit_mlp(32, seed=0)
    C.fit(model, X_train, y_train, epochs=3, loss_fn=model.loss, seed=0)
    early, full = model.flops_per_path(X_test[:1])
    assert early == 2 * (64 * 32 + 32 * 10) and full == early + 2 * (32 * 32 + 32 * 10)
    rows = C.early_exit_curve(model, X_test, y_test, thresholds=(0.0, 0.9, 1.01))
    assert rows[0]["exit_fraction"] == 1.0 and rows[0]["flops"] == early
    assert rows[-1]["exit_fraction"] == 0.0 and rows[-1]["flops"] == full
    assert rows[-1]["accuracy"] == pytest.approx(C.accuracy(model, X_test, y_test))
    assert early < rows[1]["flops"] < full or rows[1]["exit_fraction"] in (0.0, 1.0)
    fr = [r["exit_fraction"] for r in rows]
    assert fr == sorted(fr, reverse=True)


def test_summary_and_pareto():
    data = load_digits()
    model = digits_mlp(hidden=(32,), seed=0)[0]
    C.fit(model, data[0], data[1], epochs=2, seed=0)
    dense = C.summary(model, data, name="dense", repeat=1, min_time=0.0)
    pruned = C.prune_magnitude(C.clone(model), 0.9)
    sp = C.summary(pruned, data, name="pruned", latency=False)
    assert dense["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert dense["nonzeros"] == dense["params"] and dense["best_format"] == "int8"
    assert dense["bytes_dense"] == 4 * dense["params"]
    assert float(dense["latency"]) > 0 and dense["latency_batch"] == 360
    assert sp["nonzeros"] < 0.2 * sp["params"] and sp["latency"] is None
    assert sp["best_format"] == "int8-csr" and sp["sparse_flops"] < 0.2 * sp["flops"]
    assert "pruned" in C.summary_table([dense, sp])
    # as stored: the masked model holds its zeros and a float32 mask; the CSR one does not
    assert dense["stored_bytes"] == dense["bytes_dense"]
    assert sp["stored_bytes"] == dense["stored_bytes"] + 4 * (64 * 32 + 32 * 10)
    csr = C.summary(C.to_sparse(C.clone(pruned)), data, latency=False)
    assert csr["stored_bytes"] == csr["bytes"]["csr"] < 0.3 * dense["stored_bytes"]
    lat = C.compare_latency({"dense": model, "pruned": pruned}, data[2][:32], rounds=2,
                            repeat=1, min_time=0.0)
    assert set(lat) == {"dense", "pruned"} and len(lat["dense"]["rounds"]) == 2
    assert 0 < lat["dense"]["min"] <= lat["dense"]["median"]
    rows = [dict(name="a", accuracy=0.9, stored_bytes=10), dict(name="b", accuracy=0.95,
            stored_bytes=20), dict(name="c", accuracy=0.85, stored_bytes=30)]
    assert [r["name"] for r in C.pareto_front(rows)] == ["a", "b"]
    import matplotlib

    matplotlib.use("Agg")
    axes = C.pareto_chart([dense, sp] + [dict(name="x", accuracy=0.5, stored_bytes=100,
                                              latency=None)])
    assert len(axes) == 2

"""mlc.nn modules: shapes, parameters, train/eval behaviour, state_dict, devices."""

import numpy as np
import pytest

import mlc.ndarray as nd
from mlc import nn, optim
from mlc.autograd import Tensor
from gradcheck_util import check_gradients

DEVICES = [nd.cpu_numpy(), nd.cpu()] + ([nd.cuda()] if nd.cuda().enabled() else [])


def test_linear_shapes_and_values():
    lin = nn.Linear(5, 3)
    assert lin.weight.shape == (5, 3) and lin.bias.shape == (1, 3)
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in lin.parameters())
    x = np.random.randn(4, 5).astype(np.float32)
    y = lin(Tensor(x))
    np.testing.assert_allclose(y.numpy(), x @ lin.weight.numpy() + lin.bias.numpy(), rtol=1e-5)
    assert lin(Tensor(np.ones((2, 7, 5)))).shape == (2, 7, 3)  # leading axes pass through
    assert nn.Linear(5, 3, bias=False).parameters()[0].shape == (5, 3)
    assert len(nn.Linear(5, 3, bias=False).parameters()) == 1
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        lin(Tensor(np.ones((4, 6))))


def test_kaiming_init_scale():
    np.random.seed(1)
    w = nn.Linear(400, 300).weight.numpy()
    bound = np.sqrt(2.0) * np.sqrt(3.0 / 400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.var() - 2.0 / 400) < 0.1 * 2.0 / 400


def test_module_tree_parameters_and_children():
    inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model = nn.Sequential(nn.Flatten(), nn.Residual(inner), nn.Linear(4, 2), nn.Identity())
    names = [n for n, _ in model.named_parameters()]
    assert names == ["modules.1.fn.modules.0.weight", "modules.1.fn.modules.0.bias",
                     "modules.2.weight", "modules.2.bias"]
    assert len(model.children()) == 4 and len(model._children()) == 7
    x = Tensor(np.random.randn(3, 2, 2))
    assert model(x).shape == (3, 2)
    # a module shared twice counts its parameters once
    lin = nn.Linear(2, 2)
    assert len(nn.Sequential(lin, lin).parameters()) == 2


def test_named_modules_depth_first_each_once():
    inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    lin = nn.Linear(4, 4)
    model = nn.Sequential(nn.Residual(inner), lin, lin)
    got = model.named_modules()
    assert [n for n, _ in got] == ["", "modules.0", "modules.0.fn", "modules.0.fn.modules.0",
                                   "modules.0.fn.modules.1", "modules.1"]
    assert got[0][1] is model and got[-1][1] is lin
    assert [m for _, m in got[1:]] == model._children()
    assert inner.named_modules("enc")[1][0] == "enc.modules.0"


def test_forward_hooks_watch_replace_and_are_removed():
    np.random.seed(0)
    lin = nn.Linear(3, 2)
    x = Tensor(np.ones((4, 3)))
    calls = []
    pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
    post = lin.register_forward_hook(lambda m, args, out: calls.append(
        (m, args[0].shape, out.shape)))
    double = lin.register_forward_hook(lambda m, args, out: out * 10.0)
    y = lin(x)
    want = 10.0 * (2 * np.ones((4, 3)) @ lin.weight.numpy() + lin.bias.numpy())
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5)
    assert calls == [(lin, (4, 3), (4, 2))]  # hooks run in the order registered
    for h in (pre, post, double):
        h.remove()
    np.testing.assert_allclose(lin(x).numpy(), x.numpy() @ lin.weight.numpy()
                               + lin.bias.numpy(), rtol=1e-5)
    assert len(calls) == 1
    with lin.register_forward_hook(lambda m, a, o: o * 0.0):  # a handle is a context too
        assert not lin(x).numpy().any()
    assert lin(x).numpy().any()
    with pytest.raises(TypeError, match="callable"):
        lin.register_forward_hook("not a function")


def test_activations():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    t = Tensor(x, dtype="float64")
    np.testing.assert_allclose(nn.ReLU()(t).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Tanh()(t).numpy(), np.tanh(x))
    np.testing.assert_allclose(nn.Sigmoid()(t).numpy(), 1 / (1 + np.exp(-x)))


def test_dropout_train_and_eval():
    np.random.seed(0)
    drop = nn.Dropout(0.25)
    x = Tensor(np.ones((100, 100)))
    y = drop(x).numpy()
    zeros = (y == 0).mean()
    assert 0.22 < zeros < 0.28
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)  # the mean is preserved
    drop.eval()
    assert drop(x) is x
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_layernorm_normalises_rows_and_has_right_gradient():
    x = np.random.randn(4, 6) * 3 + 2
    ln = nn.LayerNorm1d(6, dtype="float64")
    y = ln(Tensor(x, dtype="float64")).numpy()
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-9)
    np.testing.assert_allclose(y.var(1), 1, rtol=1e-4)
    check_gradients(lambda t: ln(t), x, device=nd.cpu())
    with pytest.raises(ValueError):
        ln(Tensor(np.ones((4, 5))))


def test_batchnorm_train_eval_and_running_stats():
    bn = nn.BatchNorm1d(3, momentum=0.1, dtype="float64")
    x = np.random.randn(8, 3) * np.array([1.0, 2.0, 5.0]) + np.array([0.0, -1.0, 4.0])
    y = bn(Tensor(x, dtype="float64")).numpy()
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(y.var(0), 1, rtol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * x.mean(0))
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.var(0))
    assert not bn.running_mean.requires_grad
    check_gradients(lambda t: bn(t), x, device=nd.cpu())
    bn.eval()
    z = bn(Tensor(x[:1], dtype="float64")).numpy()  # one example works in eval mode
    ref = (x[:1] - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
    np.testing.assert_allclose(z, ref)


def test_train_eval_propagate():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2)))
    model.eval()
    assert not any(m.training for m in model._children()) and not model.training
    model.train()
    assert all(m.training for m in model._children())


def test_state_dict_round_trip():
    np.random.seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    a(Tensor(np.random.randn(5, 3)))  # updates running stats
    state = a.state_dict()
    assert set(state) == {"modules.0.weight", "modules.0.bias", "modules.1.weight",
                          "modules.1.bias", "modules.1.running_mean", "modules.1.running_var",
                          "modules.3.weight", "modules.3.bias"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    x = Tensor(np.random.randn(6, 3))
    a.eval(), b.eval()
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state["modules.0.weight"][:] = 0  # a copy: changing it does not touch the model
    assert np.abs(a.modules[0].weight.numpy()).sum() > 0
    with pytest.raises(KeyError, match="modules.3.bias"):
        b.load_state_dict({k: v for k, v in state.items() if k != "modules.3.bias"})
    bad = dict(state, **{"modules.3.bias": np.zeros((1, 5))})
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        b.load_state_dict(bad)


def test_module_to_device_keeps_identities():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    params = model.parameters()
    model.to(nd.cpu_numpy())
    assert model.parameters() == params
    assert all(p.device == nd.cpu_numpy() for p in params)
    assert model.modules[1].running_mean.device == nd.cpu_numpy()
    assert model(Tensor(np.ones((2, 3)), device=nd.cpu_numpy())).device == nd.cpu_numpy()


def test_softmax_loss_value_and_gradient():
    logits = np.random.randn(5, 4)
    y = np.array([0, 3, 1, 1, 2])
    z = Tensor(logits, dtype="float64")
    loss = nn.SoftmaxLoss()(z, Tensor(y, dtype="int32", requires_grad=False))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), -np.log(p[np.arange(5), y]).mean())
    loss.backward()
    np.testing.assert_allclose(z.grad.numpy(), (p - np.eye(4)[y]) / 5)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        nn.SoftmaxLoss()(z, Tensor(y[:4], requires_grad=False))


def test_conv_module_shapes():
    x = Tensor(np.random.randn(2, 8, 8, 3))
    conv = nn.Conv(3, 5, 3)
    assert conv.weight.shape == (3, 3, 3, 5) and conv.bias.shape == (5,)
    assert conv(x).shape == (2, 8, 8, 5)  # "same" padding
    assert nn.Conv(3, 4, 3, stride=2)(x).shape == (2, 4, 4, 4)
    assert nn.Conv(3, 4, 3, padding=0)(x).shape == (2, 6, 6, 4)
    y = nn.Conv(3, 4, 1, bias=False)(x)
    assert y.shape == (2, 8, 8, 4)


def _train_steps(dev, make_opt, steps):
    np.random.seed(3)
    model = nn.Sequential(nn.Linear(4, 3, device=dev), nn.ReLU(), nn.Linear(3, 2, device=dev))
    opt = make_opt(model.parameters())
    x = Tensor(np.random.randn(3, 4), device=dev, requires_grad=False)
    y = Tensor(np.array([0, 1, 1]), device=dev, dtype="int32", requires_grad=False)
    losses = []
    for _ in range(steps):
        opt.reset_grad()
        loss = nn.SoftmaxLoss()(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.device == dev and p.dtype == "float32" for p in model.parameters())
    return losses


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_small_model_trains_identically_on_each_device(device, opt):
    """The same model, data and updates give the same losses on every device (the CUDA
    simulator is slow: the model is tiny and runs two steps)."""
    make_opt = {"sgd": lambda p: optim.SGD(p, lr=0.5, momentum=0.5, weight_decay=0.01),
                "adam": lambda p: optim.Adam(p, lr=0.05)}[opt]
    ref = _train_steps(nd.cpu_numpy(), make_opt, 2)
    got = _train_steps(device, make_opt, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert got[-1] < got[0]


def test_every_layer_agrees_between_numba_and_numpy_devices():
    """Forward and backward through every kind of layer give the same numbers on cpu()."""
    def run(dev):
        np.random.seed(4)
        model = nn.Sequential(
            nn.Conv(2, 3, 3, device=dev), nn.ReLU(), nn.Flatten(),
            nn.Linear(48, 8, device=dev), nn.LayerNorm1d(8, device=dev), nn.Tanh(),
            nn.Residual(nn.Sequential(nn.Linear(8, 8, device=dev), nn.Sigmoid())),
            nn.BatchNorm1d(8, device=dev), nn.Dropout(0.5), nn.Linear(8, 3, device=dev))
        x = Tensor(np.random.randn(5, 4, 4, 2), device=dev, requires_grad=False)
        loss = nn.SoftmaxLoss()(model(x), Tensor(np.array([0, 1, 2, 1, 0]), device=dev,
                                                 dtype="int32", requires_grad=False))
        loss.backward()
        return [loss.numpy()] + [p.grad.numpy() for p in model.parameters()]

    for a, b in zip(run(nd.cpu()), run(nd.cpu_numpy()), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

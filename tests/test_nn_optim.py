"""mlc.optim against updates computed by hand, and mlc.init's initialisers."""

import numpy as np
import pytest

import mlc.ndarray as nd
from mlc import init, optim
from mlc.autograd import Tensor


def _param_with_grad(w, g):
    p = Tensor(np.array(w, dtype=np.float64), dtype="float64")
    p.grad = Tensor(np.array(g, dtype=np.float64), dtype="float64", requires_grad=False)
    return p


def test_sgd_plain_step():
    p = _param_with_grad([1.0, -2.0], [0.5, 0.25])
    opt = optim.SGD([p], lr=0.1)
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.95, -2.025])


def test_sgd_momentum_and_weight_decay_two_steps():
    w0, g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    lr, mu, wd = 0.1, 0.9, 0.01
    p = _param_with_grad(w0, g1)
    opt = optim.SGD([p], lr=lr, momentum=mu, weight_decay=wd)
    opt.step()
    u = (1 - mu) * (g1 + wd * w0)
    w1 = w0 - lr * u
    np.testing.assert_allclose(p.numpy(), w1)
    p.grad = Tensor(g2, dtype="float64", requires_grad=False)
    opt.step()
    u = mu * u + (1 - mu) * (g2 + wd * w1)
    np.testing.assert_allclose(p.numpy(), w1 - lr * u)


def test_adam_three_steps():
    b1, b2, eps, lr, wd = 0.9, 0.999, 1e-8, 0.01, 0.1
    w = np.array([0.3, -1.2, 2.0])
    grads = [np.array([0.1, -0.2, 0.3]), np.array([1.0, 0.0, -0.5]), np.array([-0.3, 0.2, 0.1])]
    p = _param_with_grad(w, grads[0])
    opt = optim.Adam([p], lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    m = v = np.zeros(3)
    for t, g in enumerate(grads, start=1):
        p.grad = Tensor(g, dtype="float64", requires_grad=False)
        opt.step()
        g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(p.numpy(), w, rtol=1e-12)


def test_reset_grad_and_params_without_grad():
    a = _param_with_grad([1.0], [1.0])
    b = Tensor(np.array([5.0]), dtype="float64")  # never got a gradient
    for opt in (optim.SGD([a, b], lr=1.0), optim.Adam([a, b])):
        opt.step()
        assert b.numpy()[0] == 5.0
        opt.zero_grad()
        assert a.grad is None and b.grad is None
        opt.reset_grad()
        a.grad = Tensor(np.array([1.0]), dtype="float64")
    with pytest.raises(TypeError):
        optim.SGD([np.ones(2)])


def test_steps_keep_float32_and_identity():
    p = Tensor(np.ones(3, dtype=np.float32))
    (p * p).sum().backward()
    opt = optim.Adam([p], lr=0.1)
    before = id(p)
    opt.step()
    assert id(p) == before and p.dtype == "float32" and p.op is None
    np.testing.assert_allclose(p.numpy(), 0.9, rtol=1e-6)


def test_init_shapes_and_ranges():
    np.random.seed(0)
    t = init.rand(3, 4, low=-2, high=-1)
    assert t.shape == (3, 4) and t.dtype == "float32" and not t.requires_grad
    assert (t.numpy() >= -2).all() and (t.numpy() < -1).all()
    assert init.randn(500, mean=3.0, std=0.1).numpy().mean() == pytest.approx(3.0, abs=0.02)
    assert init.zeros(2, 2).numpy().sum() == 0 and init.ones((2, 3)).numpy().sum() == 6
    np.testing.assert_array_equal(init.constant(2, c=7.0).numpy(), [7.0, 7.0])
    b = init.randb(1000, p=0.3).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0} and 0.25 < b.mean() < 0.35
    np.testing.assert_array_equal(init.one_hot(3, [2, 0]).numpy(), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        init.one_hot(3, [3])
    z = init.zeros_like(Tensor(np.ones((2, 2)), dtype="float64", device=nd.cpu_numpy()))
    assert z.dtype == "float64" and z.device == nd.cpu_numpy()
    assert init.ones(2, device=nd.cpu_numpy(), requires_grad=True).requires_grad


@pytest.mark.parametrize("name,var", [
    ("xavier_uniform", 2.0 / (300 + 200)), ("xavier_normal", 2.0 / (300 + 200)),
    ("kaiming_uniform", 2.0 / 300), ("kaiming_normal", 2.0 / 300)])
def test_init_schemes_have_their_variance(name, var):
    np.random.seed(1)
    w = getattr(init, name)(300, 200).numpy()
    assert w.shape == (300, 200)
    assert abs(w.var() / var - 1) < 0.05
    assert getattr(init, name)(3 * 3 * 2, 4, shape=(3, 3, 2, 4)).shape == (3, 3, 2, 4)
    with pytest.raises(ValueError):
        init.kaiming_uniform(3, 3, nonlinearity="swish")

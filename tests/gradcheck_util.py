"""Central-difference gradient checks for mlc ops (shared by the autograd/ops tests)."""

import numpy as np

import mlc
import mlc.ndarray as nd


def numeric_vjp(f, arrays, weight, device, eps=1e-6):
    """d/dx_i of sum(f(x) * weight) by central differences, for every input array."""
    def value(xs):
        with mlc.no_grad():
            out = f(*[mlc.Tensor(x, device=device, dtype="float64") for x in xs])
        return float((out.numpy() * weight).sum())

    xs = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for x in xs:
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            orig = x[idx]
            x[idx] = orig + eps
            up = value(xs)
            x[idx] = orig - eps
            down = value(xs)
            x[idx] = orig
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def check_gradients(f, *arrays, device=None, rtol=1e-5, atol=1e-6):
    """Compare the gradients from backward() with central differences (float64)."""
    device = device or nd.cpu_numpy()
    tensors = [mlc.Tensor(a, device=device, dtype="float64") for a in arrays]
    out = f(*tensors)
    rng = np.random.default_rng(1)
    weight = rng.standard_normal(out.shape)
    out.backward(mlc.Tensor(weight, device=device, dtype="float64", requires_grad=False))
    expected = numeric_vjp(f, arrays, weight, device)
    for i, (t, e) in enumerate(zip(tensors, expected, strict=True)):
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.shape == t.shape, f"input {i}: grad shape {t.grad.shape} != {t.shape}"
        assert t.grad.dtype == "float64"
        np.testing.assert_allclose(t.grad.numpy(), e, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")
    return out

"""Gradient hooks, detached gradients and the freed graph (issue 18, item 6)."""

import gc

import numpy as np
import pytest

import mlc
from mlc import memory, nn, ops
from mlc.autograd import Tensor


def _mlp(depth=3, width=4, seed=0):
    np.random.seed(seed)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


# --- register_hook --------------------------------------------------------------------------


def test_leaf_hooks_run_once_with_the_final_gradient_last_layer_first():
    model = _mlp()
    x = Tensor(np.random.default_rng(0).standard_normal((5, 4)), requires_grad=False)
    seen = []
    for name, p in model.named_parameters():
        p.register_hook(lambda g, name=name: seen.append((name, g.numpy().copy())))
    # the weight of layer 0 is used once, but a shared weight would get two partials:
    # the hook must see their sum, not each part
    loss = (model(x) * model(x)).sum()
    loss.backward()
    names = [n for n, _ in seen]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each once
    layers = [int(n.split(".")[1]) for n in names]
    assert layers == sorted(layers, reverse=True)  # reverse topological: last layer first
    for name, g in seen:
        np.testing.assert_array_equal(g, dict(model.named_parameters())[name].grad.numpy())


def test_hook_on_a_shared_leaf_sees_the_sum_of_its_uses():
    w = Tensor([2.0, 3.0])
    calls = []
    w.register_hook(lambda g: calls.append(g.numpy().copy()))
    (w * w * w).sum().backward()  # three uses of w
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], 3 * np.array([2.0, 3.0]) ** 2)


def test_a_hook_may_replace_the_gradient_and_be_removed():
    x = Tensor([1.0, 2.0])
    h = x * 3.0
    handle = h.register_hook(lambda g: g * 10.0)   # on an inner node: flows on to x
    x.register_hook(lambda g: g + 1.0)
    (h * h).sum().backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), 10 * 3 * 2 * 3 * np.array([1.0, 2.0]) + 1)
    handle.remove()
    handle.remove()  # twice is harmless
    (h * h).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * 3 * np.array([1.0, 2.0]) + 1)


def test_register_hook_rejects_bad_input():
    with pytest.raises(TypeError, match="callable"):
        Tensor([1.0]).register_hook(3)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0], requires_grad=False).register_hook(print)


# --- detached gradients, create_graph, the freed graph ----------------------------------


def test_gradients_have_no_history_unless_create_graph():
    x = Tensor([1.0, -2.0, 0.5], dtype="float64")
    (x ** 3).sum().backward()
    assert x.grad.op is None and not x.grad.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.grad.sum().backward()  # a constant: would silently give nothing
    (x ** 3).sum().backward(create_graph=True)
    dx = x.grad
    assert dx.op is not None
    dx.sum().backward()  # gradient of the gradient
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_second_backward_through_a_freed_graph_is_an_error():
    x = Tensor([1.0, 2.0])
    y = ops.exp(x * 2.0).sum()
    y.backward()
    assert y.inputs == []  # the activations are released although y is alive
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    z = ops.exp(x * 2.0).sum()
    z.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), first)


def test_a_finished_backward_holds_no_activations():
    """8 x Linear(256) at batch 256: while ``loss`` is still referenced (as in a training
    loop), what stays live after backward is the gradients, the input and the loss."""
    model = _mlp(depth=8, width=256)
    grad_bytes = sum(p.size * 4 for p in model.parameters())
    gc.collect()
    start = memory.live_bytes()
    x = Tensor(np.random.default_rng(1).standard_normal((256, 256)), requires_grad=False)
    loss = model(x).sum()
    loss.backward()
    gc.collect()
    live = memory.live_bytes() - start
    own = x.size * 4 + 2 * 4  # the input, the loss and its gradient (one float each)
    assert live <= grad_bytes + own, (live, grad_bytes + own)
    assert loss.numpy() is not None  # loss is kept alive until here on purpose
    # and the next step's peak is measured from a clean baseline
    with memory.track() as t:
        loss2 = model(x).sum()
        loss2.backward()
    assert t.peak > 8 * 256 * 256 * 4  # the activations of the forward pass


def test_grad_mode_is_restored_after_backward():
    x = Tensor([1.0])
    (x * 2.0).sum().backward()
    assert mlc.autograd.is_grad_enabled()
    with mlc.no_grad():
        y = x * 2.0
    assert y.op is None

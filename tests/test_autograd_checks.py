"""The checks of unit 02 (autodiff): full marks for the reference, clear failures otherwise."""

import numpy as np
import pytest

import mlc
from mlc import ops
from mlc.grading.check import run_check
from check_util import check_runner


# ---- reference solutions (the same as in solutions/02_autodiff.ipynb) ----------------------

def multiply_grad(out_grad, a, b):
    return out_grad * b, out_grad * a


def divide_grad(out_grad, a, b):
    return out_grad / b, -out_grad * a / (b * b)


def matmul_grad(out_grad, a, b):
    return out_grad @ ops.transpose(b), ops.transpose(a) @ out_grad


def summation_grad(out_grad, a, axes):
    kept = tuple(1 if axes is None or i in axes else n for i, n in enumerate(a.shape))
    return ops.broadcast_to(ops.reshape(out_grad, kept), a.shape)


def broadcast_to_grad(out_grad, a):
    lead = out_grad.ndim - a.ndim
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(a.shape)
                                      if n == 1 and out_grad.shape[lead + i] != 1)
    grad = ops.summation(out_grad, axes) if axes else out_grad
    return ops.reshape(grad, a.shape)


def find_topo_sort(node_list):
    order, visited = [], set()

    def visit(node):
        if id(node) in visited:
            return
        visited.add(id(node))
        for inp in node.inputs:
            visit(inp)
        order.append(node)

    for node in node_list:
        visit(node)
    return order


def compute_gradients(output, out_grad):
    grads = {id(output): [out_grad]}
    for node in reversed(find_topo_sort([output])):
        node.grad = sum(grads[id(node)][1:], start=grads[id(node)][0])
        if node.op is None:
            continue
        for inp, g in zip(node.inputs, node.op.gradient_as_tuple(node.grad, node), strict=True):
            grads.setdefault(id(inp), []).append(g)


def softmax_loss(logits, y):
    n, k = logits.shape
    one_hot = mlc.Tensor(np.eye(k)[y], device=logits.device, dtype=logits.dtype,
                         requires_grad=False)
    picked = ops.summation(logits * one_hot, axes=(1,))
    return ops.summation(ops.logsumexp(logits, axes=(1,)) - picked) / n


def sgd_step(params, lr):
    for p in params:
        if p.grad is not None:
            p.data = p.data - lr * p.grad.data


REFERENCE = dict(multiply_grad=multiply_grad, divide_grad=divide_grad,
                 matmul_grad=matmul_grad, summation_grad=summation_grad,
                 broadcast_to_grad=broadcast_to_grad, find_topo_sort=find_topo_sort,
                 compute_gradients=compute_gradients, softmax_loss=softmax_loss,
                 sgd_step=sgd_step)
IDS = ["autodiff.grad_ops", "autodiff.grad_reduce", "autodiff.topo_sort", "autodiff.backward",
       "autodiff.softmax_loss", "autodiff.sgd_step"]
_run, _fails = check_runner(REFERENCE)


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"], rec["message"]


def test_missing_and_unimplemented():
    rec = run_check("autodiff.grad_ops", {})
    assert rec["score"] == 0 and "not defined" in rec["message"]

    def todo(*args):
        raise NotImplementedError("your code here")

    assert "not implemented" in _fails("autodiff.topo_sort", find_topo_sort=todo)


def test_wrong_gradients_fail():
    msg = _fails("autodiff.grad_ops", multiply_grad=lambda g, a, b: (g * a, g * b))
    assert "multiply_grad" in msg
    assert "divide_grad" in _fails("autodiff.grad_ops",
                                   divide_grad=lambda g, a, b: (g / b, g * a / (b * b)))
    # numpy results cannot be differentiated again
    msg = _fails("autodiff.grad_ops",
                 matmul_grad=lambda g, a, b: (g.numpy() @ b.numpy().T, a.numpy().T @ g.numpy()))
    assert "Tensors" in msg
    # forgetting the transpose on batched operands
    assert "matmul_grad" in _fails(
        "autodiff.grad_ops",
        matmul_grad=lambda g, a, b: (g @ ops.transpose(b, (0, 1)) if b.ndim > 2 else
                                     g @ ops.transpose(b), ops.transpose(a) @ g))
    assert "broadcast_to_grad" in _fails(
        "autodiff.grad_reduce",
        broadcast_to_grad=lambda g, a: ops.reshape(ops.summation(g, tuple(range(g.ndim - a.ndim))),
                                                   a.shape) if g.shape != a.shape else g)


def test_wrong_topo_sort_and_backward_fail():
    def pre_order(nodes):
        order, seen = [], set()

        def visit(n):
            if id(n) not in seen:
                seen.add(id(n))
                order.append(n)
                for i in n.inputs:
                    visit(i)

        for n in nodes:
            visit(n)
        return order

    assert "order" in _fails("autodiff.topo_sort", find_topo_sort=pre_order)

    def last_partial_only(output, out_grad):  # forgets to add the partials up
        grads = {id(output): out_grad}
        for node in reversed(find_topo_sort([output])):
            node.grad = grads[id(node)]
            if node.op is not None:
                for inp, g in zip(node.inputs, node.op.gradient_as_tuple(node.grad, node),
                                  strict=True):
                    grads[id(inp)] = g

    assert "gradient of leaf x" in _fails("autodiff.backward",
                                          compute_gradients=last_partial_only)


def test_wrong_loss_and_step_fail():
    def naive_loss(logits, y):  # overflows for large logits
        n, k = logits.shape
        one_hot = mlc.Tensor(np.eye(k)[y], dtype=logits.dtype, device=logits.device,
                             requires_grad=False)
        lse = ops.log(ops.summation(ops.exp(logits), axes=(1,)))
        return ops.summation(lse - ops.summation(logits * one_hot, axes=(1,))) / n

    with np.errstate(all="ignore"):
        assert "1000" in _fails("autodiff.softmax_loss", softmax_loss=naive_loss)

    def graph_step(params, lr):  # builds the update into the graph
        for p in params:
            if p.grad is not None:
                p.cached_data = (p - lr * p.grad).cached_data
                p.op, p.inputs = ops.EWiseAdd(), [p.detach(), (-lr * p.grad).detach()]

    assert "leaf" in _fails("autodiff.sgd_step", sgd_step=graph_step)
    assert "after one step" in _fails("autodiff.sgd_step",
                                      sgd_step=lambda ps, lr: [setattr(p, "data", p.data)
                                                               for p in ps])

"""Wrong answers to unit 02's exercises that once scored full marks (issue 20's audit), each
now graded 0: a student who special-cases what the visible cases show, or skips what the
idea is for. The reference solutions and the checks' contract tests are in
test_autograd_checks.py."""

import numpy as np

import mlc
from mlc import ops
from check_util import check_runner
from test_autograd_checks import REFERENCE, find_topo_sort, summation_grad

_run, _fails = check_runner(REFERENCE)


def test_multiply_grad_that_detaches_out_grad_fails():
    """Right values and a second derivative in a and b, but the gradient of the gradient in
    out_grad (what a Hessian-vector product differentiates) is cut."""
    msg = _fails("autodiff.grad_ops",
                 multiply_grad=lambda g, a, b: (g.detach() * b, g.detach() * a))
    assert "out_grad has no .grad" in msg


def test_broadcast_to_grad_that_sums_leading_or_stretched_axes_but_not_both_fails():
    def either(out_grad, a):
        if out_grad.ndim > a.ndim:
            return ops.summation(out_grad, tuple(range(out_grad.ndim - a.ndim)))
        axes = tuple(i for i, n in enumerate(a.shape) if n == 1)
        return ops.reshape(ops.summation(out_grad, axes), a.shape) if axes else out_grad

    assert "(3, 1) to (2, 3, 4)" in _fails("autodiff.grad_reduce", broadcast_to_grad=either)


def test_topo_sort_by_kahns_algorithm_fails():
    """A valid topological order, but not the post-order DFS the exercise asks for."""
    def kahn(nodes):
        found, stack, seen = [], list(nodes), set()
        while stack:
            n = stack.pop()
            if id(n) not in seen:
                seen.add(id(n))
                found.append(n)
                stack.extend(n.inputs)
        users = {id(n): [] for n in found}
        indeg = {id(n): len({id(i) for i in n.inputs}) for n in found}
        for n in found:
            for i in {id(i): i for i in n.inputs}.values():
                users[id(i)].append(n)
        order = [n for n in found if indeg[id(n)] == 0]
        for n in order:  # grows while it is read: a queue
            for u in users[id(n)]:
                indeg[id(u)] -= 1
                if indeg[id(u)] == 0:
                    order.append(u)
        return order

    assert "post-order DFS" in _fails("autodiff.topo_sort", find_topo_sort=kahn)
    assert "every node once" in _fails("autodiff.topo_sort",
                                       find_topo_sort=lambda nodes: find_topo_sort(nodes[:1]))


def test_backward_down_every_path_fails():
    """Right gradients (the partials add up along the paths), but the work is exponential
    in depth: reverse mode exists to compute each op's gradient once."""
    def every_path(output, out_grad):
        def visit(node, g):
            node.grad = g if node.grad is None else node.grad + g
            if node.op is not None:
                for inp, gi in zip(node.inputs, node.op.gradient_as_tuple(g, node),
                                   strict=True):
                    visit(inp, gi)

        visit(output, out_grad)

    assert "gradient computed once" in _fails("autodiff.backward",
                                               compute_gradients=every_path)


def _one_hot(logits, y):
    n, k = logits.shape
    return mlc.Tensor(np.eye(k)[y], device=logits.device, dtype=logits.dtype,
                      requires_grad=False)


def test_softmax_loss_with_one_max_for_the_batch_or_through_log_of_softmax_fails():
    def global_max(logits, y):  # no overflow, but rows far below the max underflow to 0
        m = float(logits.numpy().max())
        lse = ops.log(ops.summation(ops.exp(logits - m), axes=(1,))) + m
        picked = ops.summation(logits * _one_hot(logits, y), axes=(1,))
        return ops.summation(lse - picked) / logits.shape[0]

    def log_of_softmax(logits, y):  # stable softmax, then log of a probability that is 0
        n, k = logits.shape
        m = mlc.Tensor(logits.numpy().max(1, keepdims=True), device=logits.device,
                       dtype=logits.dtype, requires_grad=False)
        e = ops.exp(logits - ops.broadcast_to(m, logits.shape))
        p = e / ops.broadcast_to(ops.reshape(ops.summation(e, axes=(1,)), (n, 1)), (n, k))
        return -ops.summation(ops.log(p) * _one_hot(logits, y)) / n

    def summed(logits, y):  # the batch total, not the mean
        return REFERENCE["softmax_loss"](logits, y) * logits.shape[0]

    with np.errstate(all="ignore"):
        assert "1000" in _fails("autodiff.softmax_loss", softmax_loss=global_max)
        assert "1000" in _fails("autodiff.softmax_loss", softmax_loss=log_of_softmax)
    assert "loss of 5 examples" in _fails("autodiff.softmax_loss", softmax_loss=summed)


def test_sgd_step_with_the_shown_learning_rate_typed_in_fails():
    def fixed_lr(params, lr):
        for p in params:
            if p.grad is not None:
                p.data = p.data - 0.1 * p.grad.data

    assert "after one step" in _fails("autodiff.sgd_step", sgd_step=fixed_lr)


def test_topo_sort_that_re_explores_shared_nodes_fails():
    """No visited set, only a membership test before appending: the same order as the
    post-order DFS, but every path is walked again (2^12 of them on the ladder)."""
    def re_explores(nodes):
        order = []

        def visit(n):
            for i in n.inputs:
                visit(i)
            if not any(n is o for o in order):
                order.append(n)

        for n in nodes:
            visit(n)
        return order

    msg = _fails("autodiff.topo_sort", "4096 paths", "inputs read at most 222 times",
                 "exponential", find_topo_sort=re_explores)
    assert "random graph" not in msg  # the order itself is right: only the work is wrong


def test_backward_that_adds_to_an_old_grad_fails():
    """Partials summed straight into .grad: right on fresh leaves, wrong from the second
    training step on, when the leaves still hold the last step's gradient."""
    def into_grad(output, out_grad):
        output.grad = out_grad
        for node in reversed(find_topo_sort([output])):
            if node.op is not None:
                for inp, g in zip(node.inputs, node.op.gradient_as_tuple(node.grad, node),
                                  strict=True):
                    inp.grad = g if inp.grad is None else inp.grad + g

    _fails("autodiff.backward", "gradient of leaf x", "from an earlier pass",
           compute_gradients=into_grad)


def test_softmax_loss_that_picks_the_label_logits_in_numpy_fails():
    """The picked logits become a constant: the loss is right, its gradient lacks -1/n at
    each label."""
    def numpy_pick(logits, y):
        n = logits.shape[0]
        picked = mlc.Tensor(logits.numpy()[np.arange(n), y], device=logits.device,
                            dtype=logits.dtype, requires_grad=False)
        return ops.summation(ops.logsumexp(logits, axes=(1,)) - picked) / n

    _fails("autodiff.softmax_loss", "gradient for 5x3 logits", softmax_loss=numpy_pick)


def test_sgd_step_that_replaces_the_parameters_or_their_dtype_fails():
    def new_objects(params, lr):  # the model still holds the old ones
        for i, p in enumerate(params):
            if p.grad is not None:
                params[i] = mlc.Tensor(p.numpy() - lr * p.grad.numpy(), device=p.device,
                                       dtype=p.dtype)

    _fails("autodiff.sgd_step", "parameter w after one step", sgd_step=new_objects)

    def float32(params, lr):  # numpy round trip into a float32 Tensor
        for p in params:
            if p.grad is not None:
                p.data = mlc.Tensor(p.numpy() - lr * p.grad.numpy(), device=p.device,
                                    dtype="float32")

    _fails("autodiff.sgd_step", "float64 tensor", "float32 array", sgd_step=float32)


def test_summation_grad_that_reads_no_axes_as_all_axes_fails():
    """``axes or all_axes`` turns axes=() (a sum over nothing, the identity) into a sum over
    everything."""
    def no_axes_is_all(out_grad, a, axes):
        return summation_grad(out_grad, a, axes or tuple(range(a.ndim)))

    _fails("autodiff.grad_reduce", "summation_grad for shape (2, 3), axes ()",
           "your code raised", summation_grad=no_axes_is_all)


def test_topo_sort_with_an_explicit_stack_passes():
    """An iterative search that looks at a node's inputs again each time one of them is
    done is linear too: the count allows it."""
    def with_a_stack(nodes):
        order, seen = [], set()
        for root in nodes:
            if id(root) in seen:
                continue
            seen.add(id(root))
            stack = [root]
            while stack:
                pending = [i for i in stack[-1].inputs if id(i) not in seen]
                if pending:
                    seen.add(id(pending[0]))
                    stack.append(pending[0])
                else:
                    order.append(stack.pop())
        return order

    assert _run("autodiff.topo_sort", find_topo_sort=with_a_stack)["score"] == 2


def test_softmax_loss_that_forgets_to_add_the_max_back_fails():
    """Shifted by the row maximum for stability, never shifted back: the gradient is right
    (the shift is a constant), the loss is not."""
    def unshifted(logits, y):
        n = logits.shape[0]
        m = mlc.Tensor(logits.numpy().max(1), device=logits.device, dtype=logits.dtype,
                       requires_grad=False)
        return REFERENCE["softmax_loss"](logits, y) - ops.summation(m) / n

    _fails("autodiff.softmax_loss", "loss of 5 examples", "expected 2.12145",
           softmax_loss=unshifted)

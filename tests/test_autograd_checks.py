"""The checks of unit 02 (autodiff): full marks for the reference, clear failures otherwise,
"not implemented yet" and no hint for an untouched stub, and judges that survive forged
observations."""

from pathlib import Path

import numpy as np
import pytest

import mlc
from mlc import ops
from mlc.grading import registry
from mlc.grading.check import run_check
from mlc.grading.protocol import verdict
from mlc.grading.wire import public, roundtrip
from check_util import check_runner

ROOT = Path(__file__).resolve().parents[1]


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


def test_notebooks_grade_full_and_zero(graded):
    report = graded(ROOT / "solutions" / "02_autodiff.ipynb")
    assert (report.score, report.max_score) == (13, 13), report.results
    report = graded(ROOT / "exercises" / "02_autodiff.ipynb")
    assert (report.score, report.max_score) == (0, 13), report.results
    for rec in report.results:
        assert "not implemented yet" in rec.message and rec.hint == "", rec


def test_missing_definitions():
    rec = run_check("autodiff.grad_ops", {})
    assert rec["score"] == 0 and "not defined" in rec["message"] and rec["hint"] == ""


def _todo(*args):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_gets_only_not_implemented(ex_id):
    rec = _run(ex_id, **{name: _todo for name in registry.get(ex_id).needs})
    assert rec["score"] == 0
    assert "not implemented yet" in rec["message"]
    assert rec["hint"] == ""


def test_one_stub_among_solved_functions_is_not_implemented():
    rec = _run("autodiff.grad_ops", divide_grad=_todo)
    assert rec["score"] == 0 and "not implemented yet" in rec["message"] and not rec["hint"]


# ---- the checks' own contract: plain cases, untrusted observations, nudging hints -----------

def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _keys(v)


@pytest.mark.parametrize("ex_id", IDS)
def test_cases_travel_without_their_answers(ex_id):
    for case in registry.get(ex_id).check.cases():
        sent = roundtrip(public(case))
        assert "what" in sent
        assert not [k for k in _keys(sent) if k.startswith("_")], case["what"]


FORGED = [None, 0, "all cases passed", [], {}, {"items": None}, {"items": [1, 2]},
          {"items": [{"tensor": True}, {"tensor": True, "value": "x"}]},
          {"items": [{"tensor": True, "value": np.zeros((99, 99))}] * 2},
          {"type": "list", "order": [0, 1, 2, 3, 99]}, {"type": "list", "order": "abcde"},
          {"type": "list", "order": [-1] * 5}, {"x": None, "y": {}, "w": 1, "out": []},
          {"a": {"tensor": True, "value": np.zeros(4)}}, {"loss": {"tensor": False}},
          {"loss": {"tensor": True, "value": np.zeros(3)}},
          {"loss": {"tensor": True, "value": np.array(np.nan)}, "grad": None},
          {"w": {"tensor": True, "value": np.zeros((3, 2)), "op": False},
           "b": None, "frozen": None}, np.zeros(3), [None] * 50]


@pytest.mark.parametrize("ex_id", IDS)
def test_forged_observations_score_zero(ex_id):
    ex = registry.get(ex_id)
    names = {n: "callable" for n in ex.needs}
    for case in ex.check.cases():
        for forged in FORGED:
            rec = verdict(ex, [case], names, [{"ok": roundtrip(forged)}], None)
            assert rec["score"] == 0, (forged, case["what"])
            assert "unexpected form" not in rec["message"], (forged, rec["message"])


CODE = ["=", "ops.", "np.", ".data", "reversed(", "transpose(", "@", "sum(", "one_hot",
        "lr *", "gradient_as_tuple"]


@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges_not_code(ex_id):
    hint = registry.get(ex_id).hint
    assert len(hint) > 40
    assert not [c for c in CODE if c in hint], hint


def test_topo_graphs_are_what_the_library_builds():
    """The judge reasons on the graph as data; it must be the graph the worker builds."""
    from mlc.grading.checks import autodiff as checks

    for case in registry.get("autodiff.topo_sort").check.cases():
        graph = roundtrip(public(case))["graph"]
        nodes = checks._build(graph)
        pos = {id(n): i for i, n in enumerate(nodes)}
        assert [[pos[id(i)] for i in n.inputs] for n in nodes] == checks._inputs(graph)
        want = checks._reference_topo(checks._inputs(graph), case["roots"])
        got = mlc.autograd.find_topo_sort([nodes[r] for r in case["roots"]])
        assert [pos[id(n)] for n in got] == want


def test_wrong_gradients_fail():
    msg = _fails("autodiff.grad_ops", multiply_grad=lambda g, a, b: (g * a, g * b))
    assert "multiply_grad" in msg
    assert "divide_grad" in _fails("autodiff.grad_ops",
                                   divide_grad=lambda g, a, b: (g / b, g * a / (b * b)))
    # numpy results cannot be differentiated again
    msg = _fails("autodiff.grad_ops",
                 matmul_grad=lambda g, a, b: (g.numpy() @ b.numpy().T, a.numpy().T @ g.numpy()))
    assert "Tensors" in msg
    # nor can Tensors made from numpy values: right numbers, but leaves of no graph
    msg = _fails("autodiff.grad_ops", matmul_grad=lambda g, a, b: (
        mlc.Tensor(g.numpy() @ np.swapaxes(b.numpy(), -1, -2), device=g.device, dtype=g.dtype),
        mlc.Tensor(np.swapaxes(a.numpy(), -1, -2) @ g.numpy(), device=g.device,
                   dtype=g.dtype)))
    assert "built with tensor ops" in msg
    # a multiply_grad that detaches its result is a leaf too
    assert "built with tensor ops" in _fails(
        "autodiff.grad_ops", multiply_grad=lambda g, a, b: ((g * b).detach(), (g * a).detach()))
    # one that cuts the graph at its inputs has no second derivative
    assert "x has no .grad after backward()" in _fails(
        "autodiff.grad_ops", multiply_grad=lambda g, a, b: (g * b.detach(), g * a.detach()))
    assert "a tuple of 2 Tensors" in _fails("autodiff.grad_ops",
                                            divide_grad=lambda g, a, b: g / b)
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

    def leaves_only(output, out_grad):  # sets no .grad on inner nodes nor the output
        compute_gradients(output, out_grad)
        output.grad = None

    assert "out_grad" in _fails("autodiff.backward", compute_gradients=leaves_only)
    assert "has no .grad" in _fails("autodiff.backward",
                                    compute_gradients=lambda output, out_grad: None)
    assert "returned None" not in _fails("autodiff.topo_sort",
                                         find_topo_sort=lambda nodes: tuple(nodes))


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

    def also_frozen(params, lr):  # moves the parameter that has no gradient
        sgd_step(params, lr)
        params[2].data = params[2].data * 0.5

    assert "left alone" in _fails("autodiff.sgd_step", sgd_step=also_frozen)
    assert "softmax_loss should return one number" in _fails(
        "autodiff.softmax_loss", softmax_loss=lambda z, y: ops.logsumexp(z, axes=(1,)))
    assert "Tensors" in _fails("autodiff.softmax_loss", softmax_loss=lambda z, y: 0.5)


def test_grad_reduce_results_must_be_differentiable_again():
    """Right numbers computed in numpy and wrapped in a Tensor are a leaf of no graph: the
    check differentiates the result with respect to out_grad and must fail them."""
    def numpy_summation_grad(out_grad, a, axes):
        kept = tuple(1 if axes is None or i in axes else n for i, n in enumerate(a.shape))
        value = np.broadcast_to(out_grad.numpy().reshape(kept), a.shape)
        return mlc.Tensor(value.copy(), device=out_grad.device, dtype=out_grad.dtype)

    msg = _fails("autodiff.grad_reduce", summation_grad=numpy_summation_grad)
    assert "differentiated again" in msg and "out_grad has no .grad" in msg, msg

    def numpy_broadcast_to_grad(out_grad, a):
        g = out_grad.numpy()
        g = g.sum(axis=tuple(range(g.ndim - a.ndim)))
        g = g.sum(axis=tuple(i for i, n in enumerate(a.shape) if n == 1), keepdims=True)
        return mlc.Tensor(g, device=out_grad.device, dtype=out_grad.dtype)

    assert "out_grad has no .grad" in _fails("autodiff.grad_reduce",
                                             broadcast_to_grad=numpy_broadcast_to_grad)
    # a detached result has the right values too, and no graph behind it
    assert "out_grad has no .grad" in _fails(
        "autodiff.grad_reduce",
        summation_grad=lambda g, a, axes: summation_grad(g, a, axes).detach())

"""Unit 02, automatic differentiation: gradients per op, topological order, backward,
the softmax loss and an SGD step, all on mlc Tensors.

Every check works in float64 on the ``cpu_numpy`` device (exact enough to compare with
formulas, and nothing to compile) and compares with numpy written out by hand, on cases
the notebook does not show.
"""

from __future__ import annotations

import numpy as np

from ..registry import CheckFailed, exercise, call as _call

NB = "02_autodiff"


def _t(array, requires_grad=True):
    import mlc
    import mlc.ndarray as nd

    return mlc.Tensor(np.asarray(array, dtype=np.float64), device=nd.cpu_numpy(),
                      dtype="float64", requires_grad=requires_grad)


def _tensors(t, result, n: int, what: str):
    """``result`` as a tuple of ``n`` mlc Tensors, or a clear failure."""
    from mlc.autograd import Tensor

    if n == 1:
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != n:
        raise CheckFailed(f"{what}: expected a tuple of {n} Tensors, got {result!r:.80}")
    for r in result:
        if not isinstance(r, Tensor):
            raise CheckFailed(f"{what}: expected mlc Tensors (built with tensor ops, so that "
                              f"gradients can be differentiated again), got {type(r).__name__}")
    return tuple(result)


def _close(t, tensor, expected, what):
    got = tensor.numpy()
    if got.shape != np.shape(expected):
        raise CheckFailed(f"{what}: expected shape {np.shape(expected)}, got shape {got.shape}")
    t.close(got, expected, what, rtol=1e-7, atol=1e-9)


# ---- exercise 1: the gradients of three ops -----------------------------------------------

@exercise("autodiff.grad_ops", points=3, notebook=NB,
          hint="each input gets out_grad times the derivative of the output in that input; "
               "for a @ b that is out_grad @ b^T and a^T @ out_grad (transpose = last two axes)")
def _(ns, t):
    from mlc import ops

    mul, div, mm = (t.need(ns, n) for n in ("multiply_grad", "divide_grad", "matmul_grad"))
    rng = np.random.default_rng(20)
    a, b, g = rng.standard_normal((3, 4)), rng.uniform(0.5, 2, (3, 4)), rng.standard_normal((3, 4))
    ga, gb = _tensors(t, _call("multiply_grad", mul, _t(g), _t(a), _t(b)), 2, "multiply_grad")
    _close(t, ga, g * b, "multiply_grad: gradient for a")
    _close(t, gb, g * a, "multiply_grad: gradient for b")
    ga, gb = _tensors(t, _call("divide_grad", div, _t(g), _t(a), _t(b)), 2, "divide_grad")
    _close(t, ga, g / b, "divide_grad: gradient for a")
    _close(t, gb, -g * a / b ** 2, "divide_grad: gradient for b")
    for sa, sb in [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((1, 5), (5, 1))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        g = rng.standard_normal((a @ b).shape)
        ga, gb = _tensors(t, _call("matmul_grad", mm, _t(g), _t(a), _t(b)), 2, "matmul_grad")
        _close(t, ga, g @ np.swapaxes(b, -1, -2), f"matmul_grad {sa} @ {sb}: gradient for a")
        _close(t, gb, np.swapaxes(a, -1, -2) @ g, f"matmul_grad {sa} @ {sb}: gradient for b")
    # gradients of gradients: d/da of sum(multiply_grad(1, a, a*a)[0]) = d/da sum(a^2) = 2a
    x = _t(rng.standard_normal(4))
    ga, _ = _call("multiply_grad", mul, _t(np.ones(4), False), x, x * x)
    _call("backward of your gradient", ops.summation(ga).backward)
    _close(t, x.grad, 2 * x.numpy(), "the gradient of your gradient (second derivative)")


# ---- exercise 2: the gradients of summation and broadcast_to -------------------------------

@exercise("autodiff.grad_reduce", points=2, notebook=NB,
          hint="summation and broadcast_to are adjoint: the gradient of a sum is the incoming "
               "gradient reshaped with 1s for the summed axes and broadcast back; the gradient "
               "of a broadcast sums over the axes that were added or stretched")
def _(ns, t):
    sg, bg = t.need(ns, "summation_grad"), t.need(ns, "broadcast_to_grad")
    rng = np.random.default_rng(21)
    for shape, axes in [((2, 3, 4), (1,)), ((2, 3, 4), (0, 2)), ((3, 2), None), ((5,), (0,))]:
        a = rng.standard_normal(shape)
        out = a.sum(axis=axes)
        g = rng.standard_normal(np.shape(out))
        (ga,) = _tensors(t, _call("summation_grad", sg, _t(g), _t(a), axes), 1,
                         "summation_grad")
        kept = tuple(1 if axes is None or i in axes else n for i, n in enumerate(shape))
        _close(t, ga, np.broadcast_to(np.reshape(g, kept), shape),
               f"summation_grad for shape {shape}, axes {axes}")
    for shape, new in [((3, 1), (3, 4)), ((4,), (2, 3, 4)), ((1, 3, 1), (2, 3, 5)),
                       ((2, 3), (2, 3))]:
        a = rng.standard_normal(shape)
        g = rng.standard_normal(new)
        (ga,) = _tensors(t, _call("broadcast_to_grad", bg, _t(g), _t(a)), 1,
                         "broadcast_to_grad")
        lead = len(new) - len(shape)
        want = g.sum(axis=tuple(range(lead)))
        want = want.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)
        _close(t, ga, want, f"broadcast_to_grad from {shape} to {new}")


# ---- exercise 3: topological order -------------------------------------------------------

def _reference_topo(nodes):
    order, seen = [], set()

    def visit(n):
        if id(n) in seen:
            return
        seen.add(id(n))
        for i in n.inputs:
            visit(i)
        order.append(n)

    for n in nodes:
        visit(n)
    return order


def _random_graph(rng, n_leaves=3, n_ops=12):
    nodes = [_t(rng.standard_normal(2)) for _ in range(n_leaves)]
    for _ in range(n_ops):
        i, j = rng.integers(0, len(nodes), 2)
        r = rng.random()
        nodes.append(nodes[i] * nodes[j] if r < 0.4 else
                     nodes[i] + nodes[j] if r < 0.8 else nodes[i].exp())
    return nodes


@exercise("autodiff.topo_sort", points=2, notebook=NB,
          hint="post-order depth-first search: visit a node's inputs (in order) before "
               "appending the node, and never visit a node twice")
def _(ns, t):
    topo = t.need(ns, "find_topo_sort")
    a, b = _t([1.0]), _t([2.0])
    c = a * b
    d = c + a
    e = d.exp()
    got = _call("find_topo_sort([e])", topo, [e])
    names = {id(a): "a", id(b): "b", id(c): "c", id(d): "d", id(e): "e"}
    if not isinstance(got, list):
        raise CheckFailed(f"find_topo_sort should return a list, got {type(got).__name__}")
    t.equal([names.get(id(n), "?") for n in got], ["a", "b", "c", "d", "e"],
            "order of c = a*b; d = c + a; e = exp(d)")
    rng = np.random.default_rng(22)
    for k in range(4):
        nodes = _random_graph(rng)
        roots = [nodes[-1]] if k < 2 else [nodes[-1], nodes[-3]]
        got = _call("find_topo_sort", topo, roots)
        want = _reference_topo(roots)
        t.true(len(got) == len(want) and len({id(n) for n in got}) == len(want),
               f"random graph {k}: every node once", f"{len(got)} nodes, expected {len(want)}")
        pos = {id(n): i for i, n in enumerate(got)}
        t.true(all(pos[id(i)] < pos[id(n)] for n in got for i in n.inputs),
               f"random graph {k}: every node after its inputs")
        t.true([id(n) for n in got] == [id(n) for n in want],
               f"random graph {k}: the post-order DFS order")


# ---- exercise 4: the backward pass ---------------------------------------------------------

@exercise("autodiff.backward", points=3, notebook=NB,
          hint="walk reversed(find_topo_sort([output])); at each node add up the partial "
               "gradients its users sent, store the sum in node.grad, then call "
               "node.op.gradient_as_tuple(node.grad, node) and send each result to its input")
def _(ns, t):
    backward = t.need(ns, "compute_gradients")
    rng = np.random.default_rng(23)
    xv, yv, wv = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), \
        rng.standard_normal((2, 4))

    def build():
        x, y, w = _t(xv), _t(yv), _t(wv)
        c = _t(rng_c, requires_grad=False)
        h = (x * y + x * x) @ w          # x is used three times
        out = (h.tanh() * c).sum(axes=(1,))
        return (x, y, w), out

    rng_c = rng.standard_normal((3, 4))
    (x, y, w), out = build()
    g = rng.standard_normal(3)
    _call("compute_gradients(out, out_grad)", backward, out, _t(g, requires_grad=False))
    (rx, ry, rw), ref = build()
    ref.backward(_t(g, requires_grad=False))
    for name, mine, theirs in [("x", x, rx), ("y", y, ry), ("w", w, rw)]:
        if mine.grad is None:
            raise CheckFailed(f"leaf {name} has no .grad after compute_gradients")
        _close(t, mine.grad, theirs.grad.numpy(), f"gradient of leaf {name}")
    t.true(out.grad is not None and np.allclose(out.grad.numpy(), g),
           "the output's .grad is out_grad")
    # a second graph: a node reached by two paths of different length
    a = _t(rng.standard_normal(4))
    b = a.exp()
    z = (b * a + b).sum()
    _call("compute_gradients on exp(a) * a + exp(a)", backward, z, _t(1.0, False))
    av = a.numpy()
    _close(t, a.grad, np.exp(av) * (av + 2), "gradient of sum(exp(a) * a + exp(a))")


# ---- exercise 5: the softmax loss -----------------------------------------------------------

@exercise("autodiff.softmax_loss", points=2, notebook=NB,
          hint="mean over the batch of logsumexp(z) - z[y]; use ops.logsumexp (stable) and "
               "pick z[y] as a sum of z times a one-hot matrix of the labels")
def _(ns, t):
    loss_fn = t.need(ns, "softmax_loss")
    rng = np.random.default_rng(24)
    for n, k, scale in [(5, 3, 1.0), (8, 10, 3.0), (4, 6, 1000.0)]:
        z = rng.standard_normal((n, k)) * scale
        y = rng.integers(0, k, n)
        logits = _t(z)
        loss = _call("softmax_loss", loss_fn, logits, y)
        (loss,) = _tensors(t, loss, 1, "softmax_loss")
        if loss.size != 1:
            raise CheckFailed(f"softmax_loss should return one number, got shape {loss.shape}")
        m = z.max(1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(1)) + m[:, 0]
        want = (lse - z[np.arange(n), y]).mean()
        t.close(loss.numpy().reshape(()), want, f"loss of {n} examples, {k} classes, "
                f"logits up to {scale:g}", rtol=1e-7)
        _call("loss.backward()", loss.reshape(()).backward if loss.shape else loss.backward)
        p = np.exp(z - m) / np.exp(z - m).sum(1, keepdims=True)
        _close(t, logits.grad, (p - np.eye(k)[y]) / n, f"gradient for {n}x{k} logits")


# ---- exercise 6: one SGD step ---------------------------------------------------------------

@exercise("autodiff.sgd_step", points=1, notebook=NB,
          hint="for each parameter with a gradient, set p.data = p.data - lr * p.grad.data "
               "(on .data, so the update builds no graph and the parameter stays the same object)")
def _(ns, t):
    import mlc

    step = t.need(ns, "sgd_step")
    rng = np.random.default_rng(25)
    w, b, frozen = _t(rng.standard_normal((3, 2))), _t(rng.standard_normal(2)), \
        _t(rng.standard_normal(2))
    loss = ((mlc.ops.tanh(_t(rng.standard_normal((4, 3)), False) @ w) + b) ** 2).sum()
    loss.backward()
    frozen.grad = None
    before = {id(p): (p.numpy(), None if p.grad is None else p.grad.numpy())
              for p in (w, b, frozen)}
    _call("sgd_step(params, lr=0.1)", step, [w, b, frozen], 0.1)
    for name, p in [("w", w), ("b", b)]:
        old, grad = before[id(p)]
        _close(t, p, old - 0.1 * grad, f"parameter {name} after one step")
        t.true(p.op is None and p.requires_grad,
               f"{name} is still a trainable leaf (no graph was built into it)")
    t.close(frozen.numpy(), before[id(frozen)][0], "a parameter without gradient is left alone")

"""Unit 02, automatic differentiation (continued): the backward pass, the softmax loss and
one SGD step. The helpers and the first three exercises are in :mod:`.autodiff`; as
there, observe builds the Tensors in the worker and reports numpy data, and judge
computes every gradient with numpy by hand in the grader."""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need
from .autodiff import NB, RTOL, _t, close, grad_obs, judge_grad, judge_tensors, tensor_obs

# ---- exercise 4: the backward pass ---------------------------------------------------------

DEPTH = 10  # of the chain whose node b is used twice at each level


def _count_gradient_calls(root) -> list[int]:
    """In the worker: wrap the ``gradient`` of every op in ``root``'s graph so that calls
    are counted (in the returned one-element list). Reverse mode calls each once; pushing
    partials down every path calls them once per path."""
    count, seen, stack = [0], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.inputs)
        if node.op is not None and id(node.op) not in seen:
            seen.add(id(node.op))
            node.op.gradient = _counted(node.op.gradient, count)
    return count


def _counted(fn, count):
    def gradient(*args, **kwargs):
        count[0] += 1
        return fn(*args, **kwargs)
    return gradient


@exercise("autodiff.backward", points=3, notebook=NB, needs=("compute_gradients",),
          hint="Visit the nodes so that every node is handled after all the nodes that use "
               "it, starting from the output. A node used several times receives one partial "
               "gradient from each use, and its .grad is their total; each op's gradient "
               "method tells what to send on to its inputs (lecture 02, 'Topological order' "
               "and 'The chain rule, one op at a time').",
          rebuilds=("mlc.autograd.backward:compute_gradient_of_variables",))
class _Backward(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(23))
        x, y, w = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), \
            rng.standard_normal((2, 4))
        c = rng.standard_normal((3, 4))
        g = rng.standard_normal(3)
        return [{"what": "compute_gradients(out, out_grad)", "graph": "tanh", "x": x, "y": y,
                 "w": w, "c": c, "g": g},
                {"what": "compute_gradients on exp(a) * a + exp(a)", "graph": "exp",
                 "a": rng.standard_normal(4)},
                {"what": f"compute_gradients on b = b * c + b, {DEPTH} times (2^{DEPTH} paths)",
                 "graph": "chain", "a": rng.standard_normal(3),
                 "c": rng.uniform(-0.2, 0.2, 3)},
                {"what": "compute_gradients(out, out_grad) on leaves that still hold the .grad "
                         "of an earlier pass (a training step before this one)", "graph": "tanh",
                 "x": x, "y": y, "w": w, "c": c, "g": g, "stale": True}]

    def observe(self, ns, case):
        backward = need(ns, "compute_gradients")
        if case["graph"] == "chain":
            a, c = _t(case["a"]), _t(case["c"])
            b = a
            for _ in range(DEPTH):
                b = b * c + b
            z = b.sum()
            calls = _count_gradient_calls(z)
            call(case["what"], backward, z, _t(1.0, False))
            return {"a": grad_obs(a), "c": grad_obs(c), "calls": calls[0]}
        if case["graph"] == "exp":  # a node reached by two paths of different length
            a = _t(case["a"])
            b = a.exp()
            z = (b * a + b).sum()
            call(case["what"], backward, z, _t(1.0, False))
            return {"a": grad_obs(a)}
        x, y, w = _t(case["x"]), _t(case["y"]), _t(case["w"])
        if case.get("stale"):  # .grad is set afresh by each pass, never added to
            for leaf in (x, y, w):
                leaf.grad = _t(np.full(leaf.shape, 7.0), False)
        h = (x * y + x * x) @ w          # x is used three times
        out = (h.tanh() * _t(case["c"], False)).sum(axes=(1,))
        call(case["what"], backward, out, _t(case["g"], False))
        return {"x": grad_obs(x), "y": grad_obs(y), "w": grad_obs(w), "out": grad_obs(out)}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        if case["graph"] == "exp":
            a = case["a"]
            judge_grad(t, obs.get("a"), np.exp(a) * (a + 2), "leaf a",
                       "gradient of sum(exp(a) * a + exp(a))")
            return
        if case["graph"] == "chain":  # b = a (c + 1)^DEPTH
            a, c = case["a"], case["c"]
            judge_grad(t, obs.get("a"), (c + 1) ** DEPTH, "leaf a", f"{case['what']}: leaf a")
            judge_grad(t, obs.get("c"), DEPTH * a * (c + 1) ** (DEPTH - 1), "leaf c",
                       f"{case['what']}: leaf c")
            n_ops = 2 * DEPTH + 1
            calls = obs.get("calls")  # fewer: a gradient called through the class is not seen
            t.true(type(calls) is int and calls <= n_ops,
                   f"{case['what']}: each op's gradient computed once",
                   f"the graph has {n_ops} ops and your backward called their gradients "
                   f"{str(obs.get('calls'))[:20]} times; following every path separately "
                   f"costs work exponential in the depth")
            return
        x, y, w, c, g = (case[k] for k in "xywcg")
        q = x * y + x * x
        th = np.tanh(q @ w)
        gh = g[:, None] * c * (1 - th ** 2)
        gq = gh @ w.T
        stale = (" (it held 7 everywhere from an earlier pass: compute_gradients sets .grad, "
                 "it does not add to what was there)") if case.get("stale") else ""
        for name, want in [("x", gq * (y + 2 * x)), ("y", gq * x), ("w", q.T @ gh)]:
            judge_grad(t, obs.get(name), want, f"leaf {name}",
                       f"gradient of leaf {name}{stale}")
        got = obs.get("out")
        t.true(isinstance(got, dict) and isinstance(got.get("value"), np.ndarray)
               and got["value"].shape == g.shape and bool(np.allclose(got["value"], g)),
               "the output's .grad is out_grad")


# ---- exercise 5: the softmax loss -----------------------------------------------------------

@exercise("autodiff.softmax_loss", points=2, notebook=NB, needs=("softmax_loss",),
          hint="The loss is the batch mean of the log of the softmax denominator minus the "
               "label's logit. Large logits overflow exp: mlc.ops has a stable op for that "
               "log-sum (lecture 02, 'The computational graph'). Select each label's logit "
               "with Tensor ops so the gradient flows back to the logits.",
          rebuilds=("mlc.nn.loss:SoftmaxLoss.forward",))
class _SoftmaxLoss(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(24))
        out = []
        for n, k, scale in [(5, 3, 1.0), (8, 10, 3.0), (4, 6, 1000.0)]:
            z = rng.standard_normal((n, k)) * scale
            y = rng.integers(0, k, n)
            out.append({"what": f"loss of {n} examples, {k} classes, logits up to {scale:g}",
                        "z": z, "y": y})
        return out

    def observe(self, ns, case):
        logits = _t(case["z"])
        loss = call("softmax_loss", need(ns, "softmax_loss"), logits, case["y"])
        obs = {"loss": tensor_obs(loss)}
        if obs["loss"]["tensor"] and loss.size == 1:
            call("loss.backward()", loss.reshape(()).backward if loss.shape else loss.backward)
            obs["grad"] = grad_obs(logits)
        return obs

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        (loss,) = judge_tensors({"items": [obs.get("loss")], "repr": ""}, 1, "softmax_loss")
        value = loss["value"]
        if value.size != 1:
            raise CheckFailed(f"softmax_loss should return one number, got shape {value.shape}")
        z, y = case["z"], case["y"]
        n, k = z.shape
        m = z.max(1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(1)) + m[:, 0]
        t.close(value.reshape(()), (lse - z[np.arange(n), y]).mean(), case["what"], rtol=RTOL)
        p = np.exp(z - m) / np.exp(z - m).sum(1, keepdims=True)
        judge_grad(t, obs.get("grad"), (p - np.eye(k)[y]) / n, "the logits",
                   f"gradient for {n}x{k} logits", after="loss.backward()")


# ---- exercise 6: one SGD step ---------------------------------------------------------------

@exercise("autodiff.sgd_step", points=1, notebook=NB, needs=("sgd_step",),
          hint="Move each parameter against its gradient, scaled by the learning rate, and "
               "skip parameters that have no gradient. The update itself must not become part "
               "of a graph, and each parameter stays the same leaf object (lecture 02, "
               "'Training an MLP on handwritten digits', and the exercise's text).",
          rebuilds=("mlc.optim:SGD.step",))
class _SgdStep(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(25))
        w, b, frozen = rng.standard_normal((3, 2)), rng.standard_normal(2), \
            rng.standard_normal(2)
        x = rng.standard_normal((4, 3))
        lr = float(np.round(rng.uniform(0.02, 0.5), 3))  # hidden: not the 0.1 shown
        return [{"what": "sgd_step(params, lr=0.1)", "w": w, "b": b, "frozen": frozen,
                 "x": x, "lr": 0.1},
                {"what": f"sgd_step(params, lr={lr})", "w": w, "b": b, "frozen": frozen,
                 "x": x, "lr": lr}]

    def observe(self, ns, case):
        import mlc

        w, b, frozen = _t(case["w"]), _t(case["b"]), _t(case["frozen"])
        loss = ((mlc.ops.tanh(_t(case["x"], False) @ w) + b) ** 2).sum()
        loss.backward()
        frozen.grad = None
        call(case["what"], need(ns, "sgd_step"), [w, b, frozen], case["lr"])
        return {name: tensor_obs(p) for name, p in [("w", w), ("b", b), ("frozen", frozen)]}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        x, w, b, lr = case["x"], case["w"], case["b"], case["lr"]
        th = np.tanh(x @ w)
        dpre = 2 * (th + b)
        grads = {"w": x.T @ (dpre * (1 - th ** 2)), "b": dpre.sum(0)}
        for name in ("w", "b"):
            (p,) = judge_tensors({"items": [obs.get(name)], "repr": ""}, 1, f"parameter {name}")
            close(t, p["value"], case[name] - lr * grads[name],
                  f"{case['what']}: parameter {name} after one step")
            t.true(p.get("op") is False and p.get("requires_grad") is True,
                   f"{name} is still a trainable leaf (no graph was built into it)")
        (p,) = judge_tensors({"items": [obs.get("frozen")], "repr": ""}, 1, "parameter frozen")
        t.close(p["value"], case["frozen"], "a parameter without gradient is left alone")

"""Unit 02, automatic differentiation: gradients per op, topological order, backward,
the softmax loss and an SGD step, all on mlc Tensors.

Tensors do not travel, so the split (see :mod:`mlc.grading.registry`) is: ``cases``
draws every input in the grader as numpy arrays (and, for the graph exercises, the graph
itself as a list of ops); ``observe`` builds float64 Tensors on the ``cpu_numpy`` device
in the worker (exact enough to compare with formulas, and nothing to compile), calls the
student's function and reports what came back as data: for each result whether it is a
Tensor, its values, and whether it has an op (so it can be differentiated again); for a
graph, the positions of the nodes in the order returned. ``judge`` computes every
reference with numpy written out by hand, in the grader, and compares.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need

NB = "02_autodiff"
RTOL, ATOL = 1e-7, 1e-9


# ---- in the worker: Tensors in, data out ---------------------------------------------------

def _t(array, requires_grad=True):
    import mlc
    import mlc.ndarray as nd

    return mlc.Tensor(np.asarray(array, dtype=np.float64), device=nd.cpu_numpy(),
                      dtype="float64", requires_grad=requires_grad)


def _repr(value, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - the student's object may fail to print
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tensor_obs(value) -> dict:
    """One value as data: a Tensor's values and whether an op made it, else its type."""
    from mlc.autograd import Tensor

    if isinstance(value, Tensor):
        return {"tensor": True, "value": np.asarray(value.numpy()),
                "op": value.op is not None, "requires_grad": bool(value.requires_grad)}
    return {"tensor": False, "type": type(value).__name__}


def tensors_obs(result, n: int) -> dict:
    """What a gradient function returned: one value (``n == 1``) or a tuple of ``n``."""
    items = (result,) if n == 1 else result
    if not isinstance(items, (tuple, list)):
        return {"items": None, "repr": _repr(result)}
    return {"items": [tensor_obs(r) for r in items], "repr": _repr(result)}


def grad_obs(tensor):
    """A tensor's ``.grad`` after a backward pass, as data (None when there is none)."""
    grad = getattr(tensor, "grad", None)
    return None if grad is None else tensor_obs(grad)


# ---- in the grader: reading the observations -----------------------------------------------

def judge_tensors(obs, n: int, what: str) -> list[dict]:
    """The ``n`` observed Tensors (dicts with "value" and "op"), or a clear failure."""
    items = obs.get("items") if isinstance(obs, dict) else None
    if not isinstance(items, list) or len(items) != n:
        got = obs.get("repr") if isinstance(obs, dict) else obs
        raise CheckFailed(f"{what}: expected a tuple of {n} Tensors, got {str(got)[:80]}")
    for r in items:
        if not (isinstance(r, dict) and r.get("tensor") is True
                and isinstance(r.get("value"), np.ndarray)):
            kind = r.get("type") if isinstance(r, dict) else "?"
            raise CheckFailed(f"{what}: expected mlc Tensors (built with tensor ops, so that "
                              f"gradients can be differentiated again), got {str(kind)[:40]}")
    return items


def close(t, value, expected, what: str) -> None:
    t.close(value, expected, what, rtol=RTOL, atol=ATOL)


def judge_grad(t, obs, expected, name: str, what: str,
               after: str = "compute_gradients") -> None:
    """An observed ``.grad`` (see :func:`grad_obs`) equals ``expected``."""
    if obs is None:
        raise CheckFailed(f"{name} has no .grad after {after}")
    (g,) = judge_tensors({"items": [obs], "repr": "a .grad"}, 1, f"the .grad of {name}")
    close(t, g["value"], expected, what)


# ---- exercise 1: the gradients of three ops -----------------------------------------------

@exercise("autodiff.grad_ops", points=3, notebook=NB,
          needs=("multiply_grad", "divide_grad", "matmul_grad"),
          hint="Each input receives out_grad times the partial derivative of the output in "
               "that input, written with Tensor ops so that the result is part of a graph. "
               "For matmul, let the shapes guide you: each gradient has its input's shape, "
               "and batched operands have leading batch axes (lecture 02, 'The chain rule, "
               "one op at a time').",
          rebuilds=("mlc.ops.ops_mathematic:EWiseMul.gradient",
                    "mlc.ops.ops_mathematic:EWiseDiv.gradient",
                    "mlc.ops.ops_shape:MatMul.gradient"))
class _GradOps(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(20))
        a, b, g = (rng.standard_normal((3, 4)), rng.uniform(0.5, 2, (3, 4)),
                   rng.standard_normal((3, 4)))
        out = [{"what": "multiply_grad", "fn": "multiply_grad", "g": g, "a": a, "b": b},
               {"what": "divide_grad", "fn": "divide_grad", "g": g, "a": a, "b": b}]
        for sa, sb in [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((1, 5), (5, 1))]:
            a, b = rng.standard_normal(sa), rng.standard_normal(sb)
            g = rng.standard_normal((a @ b).shape)
            out.append({"what": f"matmul_grad {sa} @ {sb}", "fn": "matmul_grad",
                        "g": g, "a": a, "b": b})
        # gradients of gradients: d/da of sum(multiply_grad(1, a, a*a)[0]) = d/da sum(a^2)
        out.append({"what": "the gradient of your gradient (second derivative)",
                    "fn": "second", "x": rng.standard_normal(4)})
        # and in out_grad: d/dg of sum(multiply_grad(g, a, b)[0]) = b; a gradient that
        # detaches out_grad loses it (a Hessian-vector product differentiates through it)
        out.append({"what": "the gradient of your gradient in out_grad",
                    "fn": "second_g", "x": rng.standard_normal(4),
                    "a": rng.standard_normal(4), "b": rng.standard_normal(4)})
        return out

    def observe(self, ns, case):
        from mlc import ops

        if case["fn"] not in ("second", "second_g"):
            f = need(ns, case["fn"])
            return tensors_obs(call(case["fn"], f, _t(case["g"]), _t(case["a"]), _t(case["b"])),
                               2)
        if case["fn"] == "second_g":
            g = _t(case["x"])
            result = call("multiply_grad", need(ns, "multiply_grad"), g, _t(case["a"]),
                          _t(case["b"]))
            total = ops.summation(result[0])
            if total.requires_grad:
                call("backward of your gradient", total.backward)
            return grad_obs(g)
        x = _t(case["x"])
        result = call("multiply_grad", need(ns, "multiply_grad"), _t(np.ones(4), False), x,
                      x * x)
        total = ops.summation(result[0])
        if total.requires_grad:  # else no graph leads back to x: x gets no .grad
            call("backward of your gradient", total.backward)
        return grad_obs(x)

    def judge(self, case, obs, t):
        if case["fn"] == "second":
            judge_grad(t, obs, 2 * case["x"], "x", case["what"], after="backward()")
            return
        if case["fn"] == "second_g":
            judge_grad(t, obs, case["b"], "out_grad", case["what"], after="backward()")
            return
        a, b, g = case["a"], case["b"], case["g"]
        ga, gb = judge_tensors(obs, 2, case["what"])
        if case["fn"] == "multiply_grad":
            want_a, want_b = g * b, g * a
        elif case["fn"] == "divide_grad":
            want_a, want_b = g / b, -g * a / b ** 2
        else:
            want_a, want_b = g @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ g
        close(t, ga["value"], want_a, f"{case['what']}: gradient for a")
        close(t, gb["value"], want_b, f"{case['what']}: gradient for b")
        t.true(ga.get("op") is True and gb.get("op") is True,
               f"{case['what']}: the gradients are built with tensor ops",
               "a Tensor made from numpy values is a leaf: nothing can differentiate "
               "through it")


# ---- exercise 2: the gradients of summation and broadcast_to -------------------------------

@exercise("autodiff.grad_reduce", points=2, notebook=NB,
          needs=("summation_grad", "broadcast_to_grad"),
          hint="summation and broadcast_to are adjoint: each one's gradient is built from the "
               "other. Think about which axes of the input disappeared in a sum, or were added "
               "or stretched in a broadcast, and how out_grad must be reshaped to match the "
               "input's shape (lecture 02, 'The chain rule, one op at a time').",
          rebuilds=("mlc.ops.ops_shape:Summation.gradient",
                    "mlc.ops.ops_shape:BroadcastTo.gradient"))
class _GradReduce(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(21))
        out = []
        # axes () sums nothing: `axes or all_axes` reads it as None
        for shape, axes in [((2, 3, 4), (1,)), ((2, 3, 4), (0, 2)), ((3, 2), None),
                            ((5,), (0,)), ((2, 3), ())]:
            a = rng.standard_normal(shape)
            g = rng.standard_normal(np.shape(a.sum(axis=axes)))
            out.append({"what": f"summation_grad for shape {shape}, axes {axes}",
                        "fn": "summation_grad", "g": g, "a": a, "axes": axes,
                        "w": rng.standard_normal(shape)})
        for shape, new in [((3, 1), (3, 4)), ((4,), (2, 3, 4)), ((1, 3, 1), (2, 3, 5)),
                           ((2, 3), (2, 3)), ((3, 1), (2, 3, 4))]:
            a, g = rng.standard_normal(shape), rng.standard_normal(new)
            out.append({"what": f"broadcast_to_grad from {shape} to {new}",
                        "fn": "broadcast_to_grad", "g": g, "a": a,
                        "w": rng.standard_normal(shape)})
        return out

    def observe(self, ns, case):
        from mlc import ops

        f = need(ns, case["fn"])
        g = _t(case["g"])
        args = [g, _t(case["a"])]
        if case["fn"] == "summation_grad":
            args.append(case["axes"])
        result = call(case["what"], f, *args)
        out = tensors_obs(result, 1)
        # differentiate the result again: d/d(out_grad) of sum(result * w)
        from mlc.autograd import Tensor

        if (isinstance(result, Tensor) and result.requires_grad
                and tuple(result.shape) == np.shape(case["w"])):
            call(f"backward through your {case['fn']}",
                 ops.summation(result * _t(case["w"], False)).backward)
            out["second"] = grad_obs(g)
        return out

    def judge(self, case, obs, t):
        (ga,) = judge_tensors(obs, 1, case["fn"])
        a, g, w = case["a"], case["g"], case["w"]
        if case["fn"] == "summation_grad":
            axes = case["axes"]
            kept = tuple(1 if axes is None or i in axes else n for i, n in enumerate(a.shape))
            want = np.broadcast_to(np.reshape(g, kept), a.shape)
            want_dg = np.reshape(w.sum(axis=axes), g.shape)  # the adjoint: a sum again
        else:
            want = g.sum(axis=tuple(range(g.ndim - a.ndim)))
            want = want.sum(axis=tuple(i for i, n in enumerate(a.shape) if n == 1),
                            keepdims=True)
            want_dg = np.broadcast_to(w, g.shape)  # the adjoint: a broadcast again
        close(t, ga["value"], want, case["what"])
        judge_grad(t, obs.get("second"), want_dg, "out_grad",
                   f"{case['what']}: differentiated again (the gradient of sum(result * w) "
                   f"with respect to out_grad)",
                   after=f"a backward pass through the result of {case['fn']}: build it "
                         f"from out_grad with tensor ops, so it can be differentiated again")


# ---- exercise 3: topological order -------------------------------------------------------

_KINDS = ("mul", "add", "exp")
LADDER = 12  # levels of the ladder graph whose 2^LADDER paths expose a search that re-explores


def _random_graph(rng, n_leaves=3, n_ops=12) -> dict:
    """A graph as data: leaf values, then ops [kind, i, j] on earlier nodes."""
    leaves = [rng.standard_normal(2) for _ in range(n_leaves)]
    ops, n = [], n_leaves
    for _ in range(n_ops):
        i, j = (int(v) for v in rng.integers(0, n, 2))
        r = rng.random()
        ops.append(["mul", i, j] if r < 0.4 else ["add", i, j] if r < 0.8 else ["exp", i, i])
        n += 1
    return {"leaves": leaves, "ops": ops}


def _build(graph) -> list:
    """In the worker: the graph's Tensors, leaves first, one per op after them."""
    nodes = [_t(v) for v in graph["leaves"]]
    for kind, i, j in graph["ops"]:
        nodes.append(nodes[i] * nodes[j] if kind == "mul" else
                     nodes[i] + nodes[j] if kind == "add" else nodes[i].exp())
    return nodes


class _CountedInputs(list):
    """A node's ``inputs`` that counts how often they are read (in the worker): a search
    that remembers what it has seen reads each node's inputs once; one that re-explores
    shared nodes reads them once per path, exponentially many on a ladder."""

    def __init__(self, items, count):
        super().__init__(items)
        self.count = count

    def __iter__(self):
        self.count[0] += 1
        return super().__iter__()

    def __getitem__(self, index):
        self.count[0] += 1
        return super().__getitem__(index)


def _ladder(depth: int) -> dict:
    """b = b * c + b, ``depth`` times: 2^depth paths from the top down to a."""
    ops, b = [], 0
    for _ in range(depth):
        ops += [["mul", b, 1], ["add", 2 + len(ops), b]]
        b = 2 + len(ops) - 1
    return {"leaves": [np.array([0.5, 1.0]), np.array([0.1, 0.2])], "ops": ops}


def _inputs(graph) -> list[list[int]]:
    """In the grader: the inputs of each node, as positions."""
    return [[] for _ in graph["leaves"]] + [[i] if kind == "exp" else [i, j]
                                            for kind, i, j in graph["ops"]]


def _reference_topo(inputs, roots) -> list[int]:
    order, seen = [], set()

    def visit(n):
        if n in seen:
            return
        seen.add(n)
        for i in inputs[n]:
            visit(i)
        order.append(n)

    for n in roots:
        visit(n)
    return order


@exercise("autodiff.topo_sort", points=2, notebook=NB, needs=("find_topo_sort",),
          hint="A depth-first search can emit a node once everything it depends on has been "
               "emitted; remember which nodes you have already seen, since graphs share "
               "nodes (lecture 02, 'Topological order').",
          rebuilds=("mlc.autograd.backward:find_topo_sort",))
class _TopoSort(Check):
    def cases(self):
        fixed = {"leaves": [np.array([1.0]), np.array([2.0])],
                 "ops": [["mul", 0, 1], ["add", 2, 0], ["exp", 3, 3]]}
        out = [{"what": "order of c = a*b; d = c + a; e = exp(d)", "graph": fixed,
                "roots": [4], "call": "find_topo_sort([e])", "_names": "abcde"}]
        rng = np.random.default_rng(hidden_seed(22))
        for k in range(4):
            graph = _random_graph(rng)
            n = len(graph["leaves"]) + len(graph["ops"])
            out.append({"what": f"random graph {k}", "graph": graph,
                        "roots": [n - 1] if k < 2 else [n - 1, n - 3],
                        "call": "find_topo_sort"})
        ladder = _ladder(LADDER)
        out.append({"what": f"b = b * c + b, {LADDER} times ({2 ** LADDER} paths from the "
                            f"top to a), with the reads of each node's inputs counted",
                    "graph": ladder, "roots": [1 + len(ladder["ops"])],
                    "call": "find_topo_sort", "count": True})
        return out

    def observe(self, ns, case):
        nodes = _build(case["graph"])
        pos = {id(n): i for i, n in enumerate(nodes)}
        roots = [nodes[r] for r in case["roots"]]
        count = [0]
        if case.get("count"):
            for n in nodes:
                n.inputs = _CountedInputs(n.inputs, count)
        got = call(case["call"], need(ns, "find_topo_sort"), roots)
        if not isinstance(got, list):
            return {"type": type(got).__name__}
        return {"type": "list", "order": [pos.get(id(n), -1) for n in got],
                "reads": count[0]}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict) or obs.get("type") != "list":
            kind = obs.get("type") if isinstance(obs, dict) else "?"
            t.fail(f"find_topo_sort should return a list, got {str(kind)[:40]}")
        got = obs.get("order")
        if not (isinstance(got, list) and all(isinstance(i, int) for i in got)):
            t.fail(f"{case['what']}: malformed observation")
        inputs = _inputs(case["graph"])
        want = _reference_topo(inputs, case["roots"])
        if "_names" in case:
            names = case["_names"]
            t.equal([names[i] if 0 <= i < 5 else "?" for i in got], list(names), case["what"])
            return
        k = case["what"]
        t.true(len(got) == len(want) and set(got) == set(want),
               f"{k}: every node once", f"{len(got)} nodes, expected {len(want)}"
               + ("" if -1 not in got else ", some of them not nodes of the graph"))
        pos = {n: i for i, n in enumerate(got)}
        t.true(all(pos[i] < pos[n] for n in got for i in inputs[n]),
               f"{k}: every node after its inputs")
        t.true(got == want, f"{k}: the post-order DFS order")
        if case.get("count"):
            # linear work, with room for searches that look at a node's inputs again each
            # time one of its inputs is finished (an explicit stack does)
            size = len(inputs) + sum(len(i) for i in inputs)
            reads, bound = obs.get("reads"), 3 * size
            t.true(type(reads) is int and reads <= bound,
                   f"{k}: the nodes' inputs read at most {bound} times (3 per node and edge)",
                   f"your search read them {str(reads)[:20]} times: it explores a node "
                   f"again each time another path reaches it, which costs work exponential "
                   f"in the depth; skip the nodes you have already visited")

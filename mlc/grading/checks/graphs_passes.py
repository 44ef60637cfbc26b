"""Unit 08, graphs and fusion (3 of 3): one graph pass, common subexpression elimination.

``graphs.cse`` calls ``eliminate_common_subexpressions(g)`` on graphs full of repeated
work (twins, twins of twins that are equal only once their inputs are merged, repeated
constants) and near-misses that must stay apart (other attributes, swapped operands of a
divide, constants of one shape or of equal bytes that differ). The worker reads the
returned graph back as plain data with :func:`read_graph` (by ``getattr``, inputs as
indices of earlier nodes). The grader rebuilds it with :func:`rebuild`, which accepts
only the ops of :data:`ALLOWED`, checks every attribute, recomputes every shape and
bounds every size before anything runs, then interprets both graphs with
``mlc.graph.interpret`` on its own inputs: the outputs must agree bit for bit, no two op
nodes may share (op, inputs, attributes), and the result may not be larger than
``mlc.graph.eliminate_common_subexpressions``'s. The worker also reports the graph it
passed in, read back after the call: a pass must not change its argument.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need
from .graphs import (_FORBIDDEN_LIBRARY, BINARY, MAX_NODES, NB, SHAPE, UNARY, _Maker,
                     _tuples, build_graph, show_graph)

MAX_SIZE = 1 << 16      # elements of one node of a returned graph
ALLOWED = set(UNARY) | set(BINARY) | {"divide", "add_scalar", "mul_scalar", "broadcast_to",
                                      "summation", "reduce_max", "reshape", "permute",
                                      "flip", "matmul"}


# ---- the hidden graphs --------------------------------------------------------------------------

def cse_graph(seed: int, n_steps: int = 8) -> dict:
    """A random graph with repeated subexpressions and near-misses, as plain data."""
    rng = np.random.default_rng(seed)
    m = _Maker(rng)
    pool = [m.add("input", name="x0"), m.add("input", name="x1")]
    bias = rng.uniform(-1, 1, (1, SHAPE[1])).astype(np.float32)

    def any_():
        return pool[int(rng.integers(len(pool)))]

    for _ in range(n_steps):
        step = int(rng.integers(7))
        a, b = any_(), any_()
        if step == 0:    # twins: the same unary op twice
            op = UNARY[int(rng.integers(len(UNARY)))]
            pool += [m.add(op, [a]), m.add(op, [a])]
        elif step == 1:  # twins of twins: equal only after their inputs are merged
            op = UNARY[int(rng.integers(len(UNARY)))]
            t1, t2 = m.add(op, [a]), m.add(op, [a])
            op2 = BINARY[int(rng.integers(len(BINARY)))]
            pool += [m.add(op2, [t1, b]), m.add(op2, [t2, b])]
        elif step == 2:  # the same scalar op, once with another scalar
            s = float(rng.choice([0.5, 2.0]))
            pool += [m.add("add_scalar", [a], {"scalar": s}),
                     m.add("add_scalar", [a], {"scalar": s}),
                     m.add("add_scalar", [a], {"scalar": -s})]
        elif step == 3:  # a divide and its swapped twin, which differ
            pool += [m.add("divide", [a, m.add("add_scalar", [b], {"scalar": 3.0})]),
                     m.add("divide", [m.add("add_scalar", [b], {"scalar": 3.0}), a])]
        elif step == 4:  # the same bias constant twice, each broadcast
            c1 = m.add("constant", (), {}, bias.shape, bias, name=f"bias{len(m.nodes)}")
            c2 = m.add("constant", (), {}, bias.shape, bias, name=f"bias{len(m.nodes)}")
            pool += [m.add("add", [a, m.add("broadcast_to", [c1], {"shape": SHAPE})]),
                     m.add("add", [b, m.add("broadcast_to", [c2], {"shape": SHAPE})])]
        elif step == 5:  # row sums over the same axes, and over the other axis
            s1 = m.add("summation", [a], {"axes": (1,), "keepdims": True}, (SHAPE[0], 1))
            s2 = m.add("summation", [a], {"axes": (1,), "keepdims": True}, (SHAPE[0], 1))
            s3 = m.add("summation", [a], {"axes": (0,), "keepdims": True}, (1, SHAPE[1]))
            pool += [m.add("add", [m.add("broadcast_to", [s1], {"shape": SHAPE}),
                                   m.add("broadcast_to", [s2], {"shape": SHAPE})]),
                     m.add("broadcast_to", [s3], {"shape": SHAPE})]
        else:            # a node with nothing to merge
            pool.append(m.add(BINARY[int(rng.integers(len(BINARY)))], [a, b]))
    return m.data()


def _cse_cases():
    out = [("softmax written twice by hand (exp(x) / sum(exp(x)) with two exps)",
            _softmax_twice())]
    for i, seed in enumerate(range(700, 716)):
        out.append((f"hidden random graph #{i + 1}", cse_graph(hidden_seed(seed), 3 + i % 8)))
    out.append(("constants that only look alike (equal shapes, equal bytes, nearly equal "
                "values)", _constants_that_differ()))
    return out


def _constants_that_differ():
    """x times four (1, 8) biases: the first's twin, other values, the first's a few
    float32 steps off (np.allclose's "equal"); and x @ the first's bytes as an (8, 1)
    column. Only the twin may merge: a key of shape, bytes or closeness merges more."""
    rng = np.random.default_rng(hidden_seed(717))
    m = _Maker(rng)
    x = m.add("input", name="x")
    v = rng.uniform(0.5, 1, (1, SHAPE[1])).astype(np.float32)
    biases = (("bias", v), ("bias_twin", v.copy()),
              ("bias_other", rng.uniform(-1, 1, v.shape).astype(np.float32)),
              ("bias_near", (v * np.float32(1 + 4e-6)).astype(np.float32)))
    outs = []
    for name, value in biases:
        c = m.add("constant", (), {}, value.shape, value, name=name)
        outs.append(m.add("multiply", [x, m.add("broadcast_to", [c], {"shape": SHAPE})]))
    col = m.add("constant", (), {}, (SHAPE[1], 1), v.reshape(SHAPE[1], 1), name="column")
    outs.append(m.add("matmul", [x, col], shape=(SHAPE[0], 1)))
    return {"nodes": m.nodes, "inputs": m.inputs, "outputs": outs}


def _softmax_twice():
    m = _Maker(np.random.default_rng(0))
    x = m.add("input", name="x")
    e1, e2 = m.add("exp", [x]), m.add("exp", [x])
    s = m.add("summation", [e2], {"axes": (1,), "keepdims": True}, (SHAPE[0], 1))
    d = m.add("divide", [e1, m.add("broadcast_to", [s], {"shape": SHAPE})])
    return {"nodes": m.nodes, "inputs": m.inputs, "outputs": [d]}


# ---- in the worker: the student's graph -> plain data --------------------------------------------

def _int_tuple(v, what):
    try:
        return tuple(int(s) for s in v)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: shape {v!r} is not a tuple of ints") from None


def read_graph(g, what: str) -> dict:
    """A graph the student's code returned, as plain data: nodes in the order of
    ``g.nodes``, each node's inputs as indices of earlier nodes."""
    nodes = getattr(g, "nodes", None)
    if not isinstance(nodes, (list, tuple)):
        raise CheckFailed(f"{what}: returned a {type(g).__name__}, expected a Graph (with "
                          ".nodes, .inputs, .outputs)")
    if len(nodes) > MAX_NODES:
        raise CheckFailed(f"{what}: the graph has more than {MAX_NODES} nodes")
    index: dict = {}
    out = []
    keep = list(nodes)  # every object stays alive, so that no id() is reused
    for n in keep:
        name = str(getattr(n, "name", "?"))[:80]
        ins = getattr(n, "inputs", ())
        if not isinstance(ins, (list, tuple)):
            raise CheckFailed(f"{what}: %{name}.inputs is a {type(ins).__name__}")
        idx = []
        for x in ins:
            if id(x) not in index:
                raise CheckFailed(f"{what}: %{name} reads %{getattr(x, 'name', '?')}, which "
                                  "is not among the nodes before it in g.nodes")
            idx.append(index[id(x)])
        attrs = getattr(n, "attrs", {})
        if not isinstance(attrs, dict):
            raise CheckFailed(f"{what}: %{name}.attrs is a {type(attrs).__name__}")
        op = str(getattr(n, "op", "?"))
        d = {"name": name, "op": op, "inputs": idx,
             "attrs": {str(k): v for k, v in attrs.items()},
             "shape": _int_tuple(getattr(n, "shape", ()), f"{what}: %{name}"),
             "dtype": str(getattr(n, "dtype", "?"))}
        if op == "constant":
            value = getattr(n, "value", None)
            d["value"] = np.asarray(value) if isinstance(value, np.ndarray) else None
        index[id(n)] = len(out)
        out.append(d)

    def positions(attr):
        seq = getattr(g, attr, None)
        if not isinstance(seq, (list, tuple)):
            raise CheckFailed(f"{what}: g.{attr} is a {type(seq).__name__}, expected a list")
        bad = [x for x in seq if id(x) not in index]
        if bad:
            raise CheckFailed(f"{what}: %{getattr(bad[0], 'name', '?')} is in g.{attr} but "
                              "not in g.nodes")
        return [index[id(x)] for x in seq]

    return {"nodes": out, "inputs": positions("inputs"), "outputs": positions("outputs")}


def _same_structure(data) -> list:
    return [(d["name"], d["op"], list(d["inputs"]), repr(sorted(d["attrs"].items())))
            for d in data["nodes"]]


# ---- in the grader: plain data -> a validated Graph --------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_attrs(op, attrs, shapes, where) -> dict:
    """The attributes of a returned node, checked for its op; tuples where the library
    wants them."""
    a = {k: _tuples(v) for k, v in attrs.items()}
    want = {"add_scalar": {"scalar"}, "mul_scalar": {"scalar"}, "broadcast_to": {"shape"},
            "summation": {"axes", "keepdims"}, "reduce_max": {"axes", "keepdims"},
            "reshape": {"shape"}, "permute": {"axes"}, "flip": {"axes"}}.get(op, set())
    if set(a) != want:
        raise CheckFailed(f"{where}: a {op} node takes attributes {sorted(want)}, this one "
                          f"has {sorted(a)}")
    nd_ = len(shapes[0]) if shapes else 0
    if "scalar" in a and not (isinstance(a["scalar"], (int, float)) and not isinstance(
            a["scalar"], bool) and math.isfinite(a["scalar"])):
        raise CheckFailed(f"{where}: scalar={a['scalar']!r} is not a finite number")
    if "keepdims" in a and not isinstance(a["keepdims"], bool):
        raise CheckFailed(f"{where}: keepdims={a['keepdims']!r} is not a bool")
    if "shape" in a:
        s = a["shape"]
        if not (isinstance(s, tuple) and all(_is_int(v) and 0 < v <= MAX_SIZE for v in s)
                and len(s) <= 6):
            raise CheckFailed(f"{where}: shape={s!r} is not a tuple of positive ints")
        if op == "reshape" and math.prod(s) != math.prod(shapes[0]):
            raise CheckFailed(f"{where}: cannot reshape {shapes[0]} to {s}")
        if op == "broadcast_to":
            try:
                ok = np.broadcast_shapes(shapes[0], s) == s
            except ValueError:
                ok = False
            if not ok:
                raise CheckFailed(f"{where}: cannot broadcast {shapes[0]} to {s}")
    if "axes" in a:
        ax = a["axes"]
        if not (isinstance(ax, tuple) and all(_is_int(v) and 0 <= v < nd_ for v in ax)
                and len(set(ax)) == len(ax)):
            raise CheckFailed(f"{where}: axes={ax!r} are not distinct axes of a "
                              f"{nd_}-d value")
        if op == "permute" and sorted(ax) != list(range(nd_)):
            raise CheckFailed(f"{where}: axes={ax!r} is not a permutation of {nd_} axes")
    return a


def rebuild(obs, what: str):
    """The Graph of a :func:`read_graph` observation, made and checked in the grader."""
    from ... import graph
    from ...graph.ops import infer_shape

    if not isinstance(obs, dict) or not all(isinstance(obs.get(k), list)
                                            for k in ("nodes", "inputs", "outputs")):
        raise CheckFailed(f"{what}: malformed observation of the graph")
    raw = obs["nodes"]
    if len(raw) > MAX_NODES:
        raise CheckFailed(f"{what}: the graph has more than {MAX_NODES} nodes")
    nodes = []
    for i, d in enumerate(raw):
        if not (isinstance(d, dict) and isinstance(d.get("op"), str)
                and isinstance(d.get("name"), str) and isinstance(d.get("inputs"), list)
                and isinstance(d.get("attrs"), dict)):
            raise CheckFailed(f"{what}: malformed node {i} in the observation")
        op, where = d["op"], f"{what}: %{d['name']}"
        if d.get("dtype") != "float32":
            raise CheckFailed(f"{where} has dtype {d.get('dtype')!r}; these graphs are float32")
        if not all(_is_int(j) and 0 <= j < i for j in d["inputs"]):
            raise CheckFailed(f"{what}: malformed inputs of node {i} in the observation")
        ins = [nodes[j] for j in d["inputs"]]
        if op in ("input", "constant"):
            if ins:
                raise CheckFailed(f"{where}: an {op} node reads nothing")
            shape = d.get("shape")
            if not (isinstance(shape, tuple) and all(_is_int(s) and s > 0 for s in shape)
                    and math.prod(shape) <= MAX_SIZE):
                raise CheckFailed(f"{where}: bad shape {shape!r}")
            value = None
            if op == "constant":
                value = d.get("value")
                if not isinstance(value, np.ndarray) or value.shape != shape \
                        or value.dtype.kind not in "biuf":
                    raise CheckFailed(f"{where}: a constant's value must be an array of "
                                      f"its shape {shape}")
                value = value.astype(np.float32)
            nodes.append(graph.Node(op, (), {}, shape, "float32", d["name"], value))
            continue
        if op not in ALLOWED:
            raise CheckFailed(f"{where}: op {op!r} is not one these graphs use "
                              f"({', '.join(sorted(ALLOWED))})")
        shapes = [x.shape for x in ins]
        attrs = _check_attrs(op, d["attrs"], shapes, where)
        try:
            shape = infer_shape(op, shapes, attrs)
        except Exception as err:  # noqa: BLE001 - any forged node may arrive
            raise CheckFailed(f"{where}: {op} of shapes {shapes} is not valid: {err}") \
                from None
        if math.prod(shape) > MAX_SIZE:
            raise CheckFailed(f"{where}: {math.prod(shape)} elements, more than {MAX_SIZE}")
        if tuple(d.get("shape", ())) != shape:
            raise CheckFailed(f"{where} says its shape is {d.get('shape')}, but {op} of "
                              f"{shapes} gives {shape}")
        nodes.append(graph.Node(op, ins, attrs, shape, "float32", d["name"]))
    ok = all(_is_int(j) and 0 <= j < len(nodes) for j in obs["inputs"] + obs["outputs"])
    if not ok:
        raise CheckFailed(f"{what}: malformed inputs/outputs in the observation")
    try:
        return graph.Graph(nodes, [nodes[j] for j in obs["inputs"]],
                           [nodes[j] for j in obs["outputs"]])
    except ValueError as err:
        raise CheckFailed(f"{what}: not a valid graph: {err}") from None


def _key(n):
    return (n.op, tuple(id(x) for x in n.inputs), repr(sorted(n.attrs.items())))


@exercise("graphs.cse", points=3, notebook=NB, needs=("eliminate_common_subexpressions",),
          rebuilds=("mlc.graph:eliminate_common_subexpressions",
                    "mlc.graph.passes:eliminate_common_subexpressions"),
          hint="two nodes compute the same value when they have the same op, the same "
               "attributes and the same inputs *once the inputs themselves have been "
               "merged*: walk the nodes in order, remember what you have seen under such a "
               "key, and build a new graph; equal constants are the same value too")
class _CSE(Check):
    def cases(self):
        from ... import graph

        out = []
        for i, (what, data) in enumerate(_cse_cases()):
            g = build_graph(data)
            lib = graph.eliminate_common_subexpressions(g)
            rng = np.random.default_rng(500 + i)
            xs = [rng.uniform(-1, 1, n.shape).astype(np.float32) for n in g.inputs]
            out.append({"what": what, "graph": data, "_inputs": xs,
                        "_size": len(lib.ops) + len(lib.params)})
        return out

    def observe(self, ns, case):
        fn = need(ns, "eliminate_common_subexpressions")
        g = build_graph(case["graph"])
        res = call(case["what"], fn, g)
        if res is None:
            raise CheckFailed(f"{case['what']}: returned None; a pass returns a new graph")
        return {"result": read_graph(res, case["what"]),
                "argument": read_graph(g, case["what"] + " (the graph passed in)")}

    def judge(self, case, obs, t):
        from ... import graph

        what, data = case["what"], case["graph"]
        if not isinstance(obs, dict) or "result" not in obs or "argument" not in obs:
            t.fail(f"{what}: malformed observation")
        arg = obs["argument"]
        index = {d["name"]: i for i, d in enumerate(data["nodes"])}
        orig = [(d["name"], d["op"], [index[x] for x in d["inputs"]],
                 repr(sorted(d["attrs"].items()))) for d in data["nodes"]]
        if not isinstance(arg, dict) or not isinstance(arg.get("nodes"), list) or \
                _same_structure_safe(arg) != orig:
            t.fail(f"{what}: the graph passed in was changed; a pass builds a new graph "
                   "and leaves its argument as it was")
        g = build_graph(data)
        new = rebuild(obs["result"], what)
        shown = f" (graph: {show_graph(data, 16)})"
        sig = [(n.shape, n.dtype) for n in g.inputs]
        if [(n.shape, n.dtype) for n in new.inputs] != sig:
            t.fail(f"{what}: the result's inputs are {[n.signature() for n in new.inputs]}, "
                   f"the graph's {[n.signature() for n in g.inputs]}: keep every input, "
                   "in order")
        if len(new.outputs) != len(g.outputs):
            t.fail(f"{what}: the result has {len(new.outputs)} outputs, the graph "
                   f"{len(g.outputs)}")
        xs = case["_inputs"]
        want = graph.interpret(g, *xs)
        try:
            got = graph.interpret(new, *xs)
        except Exception as err:  # noqa: BLE001 - a valid-looking graph may still fail
            raise CheckFailed(f"{what}: the returned graph does not run: "
                              f"{type(err).__name__}: {err}") from None
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for k, (a, b) in enumerate(zip(got, want, strict=True)):
            # bit for bit: merging equal expressions changes no bit; merging constants a
            # few float32 steps apart (np.allclose's "equal") changes some
            if np.shape(a) != np.shape(b) or not np.array_equal(a, b, equal_nan=True):
                t.fail(f"{what}: output {k} differs from the original's: two nodes you "
                       "merged do not compute the same value (other attributes or operands, "
                       f"or constants that are not equal){shown}")
        t.passed.append(f"{what}: every output equals the original's, bit for bit")
        seen: dict = {}
        for n in new.ops:
            k = _key(n)
            if k in seen:
                t.fail(f"{what}: %{seen[k].name} and %{n.name} are both {n.op} of the same "
                       f"inputs with the same attributes: one of them is left over{shown}")
            seen[k] = n
        size = len(new.ops) + len(new.params)
        if size > case["_size"]:
            t.fail(f"{what}: the result has {len(new.ops)} ops and {len(new.params)} "
                   f"constants, {size} in all; mlc.graph's CSE leaves {case['_size']}: some "
                   f"repeated work (or a repeated constant) is still there{shown}")
        t.passed.append(f"{what}: {size} nodes, outputs unchanged")

    def inspect(self, src, t):
        d = src.definition("eliminate_common_subexpressions")
        used = d.calls() & {"eliminate_common_subexpressions", "run_passes", "PassManager"} \
            if d is not None else set()
        t.true(not used, "eliminate_common_subexpressions is your own pass",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN_LIBRARY}")


def _same_structure_safe(arg):
    try:
        return _same_structure(arg)
    except (KeyError, TypeError, AttributeError):
        return None

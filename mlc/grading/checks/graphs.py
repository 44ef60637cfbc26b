"""Unit 08, graphs and fusion (1 of 3): graphs as plain data, op patterns, post-dominators.

Every exercise of the unit takes an ``mlc.graph.Graph``. Graphs cross the wire as plain
data (:func:`graph_data`): a list of nodes, each a dict with its name, op, the names of
its inputs, its attributes, shape and dtype (and, for a constant, its value as an array),
plus the names of the graph's inputs and outputs. The worker makes a real ``Graph`` of
the notebook's library from it (:func:`build_graph`) and hands that to the student's
function; what the function returns goes back as names (a map, groups) or, for a graph,
through :func:`read_graph`, and the grader rebuilds and validates it itself
(:mod:`.graphs_passes`). The grader's references are computed with ``mlc.graph`` on the
grader's own copy of the graph, never on anything the worker sent.

* ``graphs.op_pattern``: ``op_pattern(op_name)`` on every op unit 08 knew (pinned),
  judged against ``mlc.graph.pattern``.
* ``graphs.post_dominator``: ``post_dominator(g)`` on hand-made and hidden random DAGs,
  judged against ``mlc.graph.post_dominators``; one of them is 40 residual blocks deep,
  which an answer that enumerates paths (2^40 of them) cannot finish.

Fusion and bytes moved are in :mod:`.graphs_fusion`, CSE in :mod:`.graphs_passes`.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need

NB = "08_graphs_and_fusion"
SHAPE = (4, 8)
MAX_NODES = 2000


# ---- graphs as plain data ----------------------------------------------------------------------

def graph_data(g) -> dict:
    """A trusted ``mlc.graph.Graph`` (the grader's own) as plain data for a case: the form
    ``graph.save`` writes (:mod:`mlc.graph.serialize`), with attribute values as Python
    values (tuples) and each constant's array under its node's ``"value"``."""
    from ...graph.serialize import decode_attrs, graph_to_data

    data, arrays = graph_to_data(g)
    for d in data["nodes"]:
        d["attrs"], d["shape"] = decode_attrs(d["attrs"], d["name"]), tuple(d["shape"])
        if d["op"] == "constant":
            d["value"] = arrays[d["value"]]
    return data


def _tuples(v):
    """Lists (as they may arrive) back to the tuples the library's attributes use."""
    if isinstance(v, (list, tuple)):
        return tuple(_tuples(x) for x in v)
    return v


def build_graph(data):
    """An ``mlc.graph.Graph`` from :func:`graph_data`'s plain data (a case's graph: data
    the grader made, in the worker or in the grader), read and validated as ``graph.load``
    reads a saved graph (ops in the registry, every shape re-inferred)."""
    from ...graph.serialize import GRAPH_FORMAT, VERSION, encode_attrs, graph_from_data

    arrays, nodes = {}, []
    for i, d in enumerate(data["nodes"]):
        d = {**d, "attrs": encode_attrs(d["attrs"], d["name"]), "shape": list(d["shape"])}
        if d["op"] == "constant":
            arrays[f"c{i}"] = np.asarray(d["value"], dtype=d["dtype"])
            d["value"] = f"c{i}"
        nodes.append(d)
    return graph_from_data({"format": GRAPH_FORMAT, "version": VERSION, "nodes": nodes,
                            "inputs": list(data["inputs"]), "outputs": list(data["outputs"])},
                           arrays, "the case's graph")


def show_graph(data, limit: int = 40) -> str:
    """A case's graph, one node a line, as ``print(g)`` shows it (for failure messages)."""
    lines = []
    for d in data["nodes"][:limit]:
        if d["op"] == "input":
            rhs = "input"
        elif d["op"] == "constant":
            rhs = "constant"
        else:
            args = ["%" + x for x in d["inputs"]] + [f"{k}={v!r}" for k, v in d["attrs"].items()
                                                    if k != "shape"]
            rhs = f"{d['op']}({', '.join(args)})"
        lines.append(f"%{d['name']} = {rhs}")
    if len(data["nodes"]) > limit:
        lines.append("...")
    lines.append("return " + ", ".join("%" + x for x in data["outputs"]))
    return "; ".join(lines)


def name_of(x) -> str | None:
    """A node given as a Node (anything with a string ``name``) or a name, as a name; a
    value of any other kind as a short description that matches no node."""
    if x is None or isinstance(x, str):
        return x.lstrip("%") if isinstance(x, str) else None
    name = getattr(x, "name", None)
    if isinstance(name, str) and hasattr(x, "op"):
        return name
    try:
        return f"<{type(x).__name__} {x!r}>"[:80]
    except Exception:  # noqa: BLE001 - the student's object may fail to print
        return f"<{type(x).__name__}>"


# ---- hidden random DAGs ------------------------------------------------------------------------

UNARY = ("relu", "tanh", "sigmoid", "negate", "exp")
BINARY = ("add", "multiply", "maximum")


class _Maker:
    """Builds a random graph as a plain node list (the grader's side only)."""

    def __init__(self, rng, dtype="float32"):
        self.rng, self.dtype = rng, dtype
        self.nodes, self.inputs, self.count = [], [], {}

    def add(self, op, inputs=(), attrs=None, shape=SHAPE, value=None, name=None):
        k = self.count.get(op, 0)
        self.count[op] = k + 1
        base = name or op
        d = {"name": base if k == 0 or name else f"{base}_{k}", "op": op,
             "inputs": list(inputs), "attrs": dict(attrs or {}), "shape": tuple(shape),
             "dtype": self.dtype}
        if value is not None:
            d["value"] = np.asarray(value, dtype=self.dtype)
        self.nodes.append(d)
        if op == "input":
            self.inputs.append(d["name"])
        return d["name"]

    def const(self, shape, name):
        return self.add("constant", (), {}, shape,
                        self.rng.uniform(-1, 1, shape).astype(self.dtype), name=name)

    def data(self, extra_outputs=()):
        used = {x for d in self.nodes for x in d["inputs"]}
        outs = [d["name"] for d in self.nodes
                if d["name"] not in used and d["op"] not in ("input", "constant")]
        outs += [x for x in extra_outputs if x not in outs]
        return {"nodes": self.nodes, "inputs": list(self.inputs), "outputs": outs}


def random_graph(seed: int, n_ops: int = 10, kinds=("unary", "binary"), n_inputs: int = 2,
                 extra_output: float = 0.3, dtype: str = "float32") -> dict:
    """A random DAG of ``n_ops`` op steps (a step may add two nodes, e.g. a reduction and
    its broadcast back) as plain data. ``kinds`` mixes in "unary", "binary", "scalar",
    "bias" (a constant vector broadcast to the rows), "reduce" (a row sum, broadcast
    back), "matmul" (by a constant) and "flip" (injective). Every node that nothing reads
    is an output, plus, now and then, an inner one."""
    rng = np.random.default_rng(seed)
    m = _Maker(rng, dtype)
    pool = [m.add("input", name=f"x{i}" if n_inputs > 1 else "x") for i in range(n_inputs)]

    def pick():  # favour recent values: long chains and diamonds
        k = len(pool)
        return pool[min(k - 1, int(k * rng.uniform(0.35, 1.0) ** 0.5))] if k > 2 else \
            pool[int(rng.integers(k))]

    ops = []
    for _ in range(n_ops):
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "unary":
            v = m.add(UNARY[int(rng.integers(len(UNARY)))], [pick()])
        elif kind == "binary":  # the second operand: often a value nothing reads yet
            a = pick()
            used = {x for d in m.nodes for x in d["inputs"]}
            open_ = [v for v in pool if v not in used and v != a]
            b = open_[int(rng.integers(len(open_)))] if open_ and rng.uniform() < 0.7 \
                else pool[int(rng.integers(len(pool)))]
            v = m.add(BINARY[int(rng.integers(len(BINARY)))], [a, b])
        elif kind == "scalar":
            op = ("add_scalar", "mul_scalar")[int(rng.integers(2))]
            v = m.add(op, [pick()], {"scalar": float(rng.choice([0.5, 2.0, -1.0]))})
        elif kind == "bias":
            c = m.const((1, SHAPE[1]), f"bias{m.count.get('constant', 0)}")
            v = m.add("add", [pick(), m.add("broadcast_to", [c], {"shape": SHAPE})])
        elif kind == "reduce":
            s = m.add("summation", [pick()], {"axes": (1,), "keepdims": True}, (SHAPE[0], 1))
            v = m.add("broadcast_to", [s], {"shape": SHAPE})
        elif kind == "matmul":
            w = m.const((SHAPE[1], SHAPE[1]), f"w{m.count.get('constant', 0)}")
            v = m.add("matmul", [pick(), w])
        elif kind == "flip":
            v = m.add("flip", [pick()], {"axes": (1,)})
        else:
            raise ValueError(kind)
        pool.append(v)
        ops.append(v)
    extra = [ops[int(rng.integers(len(ops)))]] if rng.uniform() < extra_output else []
    return m.data(extra)


def hand_graph(spec, outputs) -> dict:
    """A small graph of (4, 8) float32 values from ``[(name, op, [inputs]), ...]``; names
    not defined by the spec are the graph's inputs."""
    m = _Maker(np.random.default_rng(0))
    defined = {name for name, _, _ in spec}
    for name in dict.fromkeys(x for _, _, ins in spec for x in ins if x not in defined):
        m.add("input", name=name)
    for name, op, ins in spec:
        m.add(op, ins, name=name)
    return {"nodes": m.nodes, "inputs": m.inputs, "outputs": list(outputs)}


def traced_examples() -> list[tuple[str, dict]]:
    """The course's models, traced by the grader: the digits MLP and the layer norm +
    softmax block (constants folded, as ``graph.build`` does first)."""
    from ... import graph
    from ...graph import examples
    from ...models import digits_mlp

    out = []
    for what, (model, x) in (("the digits MLP (batch 4)", digits_mlp(batch=4)),
                             ("layer norm + softmax", examples.norm_softmax())):
        out.append((what, graph_data(graph.fold_constants(graph.trace(model, x)))))
    return out


# ---- exercise 1: op patterns --------------------------------------------------------------------

_FORBIDDEN_LIBRARY = "your function must decide itself, not ask the library"


# The ops of mlc.graph.OPS when unit 08 was written, pinned: ops added to the registry
# later (the transformer's, the quantized ones) do not change this exercise's cases.
UNIT_08_OPS = (
    "add", "add_scalar", "batch_norm", "broadcast_to", "col2im", "crop", "divide",
    "divide_scalar", "exp", "flip", "im2col", "log", "matmul", "maximum", "maximum_scalar",
    "mul_scalar", "multiply", "negate", "pad", "permute", "power", "power_scalar",
    "reduce_max", "relu", "reshape", "sigmoid", "summation", "tanh")
# Ops the lecture's table does not list: the exercise describes each by what an output
# element reads, so a table copied from the lecture does not answer them.
UNLISTED_OPS = ("cast", "concat", "equal", "erf", "gelu", "greater", "layer_norm", "less",
                "reduce_mean", "slice", "softmax", "take", "where")


@exercise("graphs.op_pattern", points=1, notebook=NB, needs=("op_pattern",),
          hint="ask of each op how one output element depends on the input elements: the "
               "same index of every input, an index with some axes dropped, any index map, "
               "many elements combined into one, or a heavy loop nest whose output can "
               "take an epilogue (lecture, section 4)")
class _OpPattern(Check):
    def cases(self):
        from ... import graph

        cases = []
        for what, ops in (("of unit 08", UNIT_08_OPS),
                          ("described in the exercise, not in the lecture's table",
                           UNLISTED_OPS)):
            cases.append({"what": f"op_pattern on each of the {len(ops)} ops {what}",
                          "ops": list(ops),
                          "_expected": {op: graph.pattern(op) for op in ops}})
        return cases

    def observe(self, ns, case):
        fn = need(ns, "op_pattern")
        return {op: call(f"op_pattern({op!r})", fn, op) for op in case["ops"]}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            t.fail(f"{case['what']}: malformed observation")
        want = case["_expected"]
        wrong = [f"op_pattern({op!r}) returned {obs.get(op)!r}, expected {p!r}"
                 for op, p in want.items() if obs.get(op) != p]
        if wrong:
            more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
            t.fail(f"{case['what']}: {len(wrong)} of {len(want)} classified wrong: "
                   + "; ".join(wrong[:4]) + more)
        for p in dict.fromkeys(want.values()):
            t.passed.append(f"the {p} ops: " + ", ".join(o for o, q in want.items() if q == p))

    def inspect(self, src, t):
        d = src.definition("op_pattern")
        used = (d.calls() & {"pattern", "opdef"}) | (d.names() & {"OPS", "OpDef"}) \
            if d is not None else set()
        t.true(not used, "op_pattern does not look the answer up in mlc.graph",
               f"it uses {', '.join(sorted(used))}: {_FORBIDDEN_LIBRARY}")


# ---- exercise 2: post-dominators ----------------------------------------------------------------

RESIDUAL_BLOCKS = 40


def _pdom_cases():
    chain = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]), ("c", "relu", ["b"])],
                       ["c"])
    diamond = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]), ("c", "tanh", ["a"]),
                          ("d", "add", ["b", "c"])], ["d"])
    open_diamond = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]),
                               ("c", "tanh", ["a"])], ["b", "c"])
    inner_output = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]),
                               ("c", "tanh", ["b"])], ["b", "c"])
    nested = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]), ("c", "tanh", ["a"]),
                         ("d", "add", ["b", "c"]), ("e", "relu", ["d"]),
                         ("f", "multiply", ["d", "e"]), ("g", "add", ["a", "f"])], ["g"])
    # a residual network's shape: 2^40 paths from x to the output, so an answer that
    # walks every path never finishes (the grader's time limit gives it 0)
    spec, h = [], "x"
    for i in range(RESIDUAL_BLOCKS):
        spec += [(f"f{i}", "tanh", [h]), (f"h{i}", "add", [h, f"f{i}"])]
        h = f"h{i}"
    out = [("a chain x -> exp -> negate -> relu", chain),
           ("a diamond: exp feeds negate and tanh, which an add joins", diamond),
           ("an open diamond: negate and tanh are both outputs", open_diamond),
           ("a chain whose middle node is also an output", inner_output),
           ("nested diamonds, and an edge that skips over them", nested),
           (f"{RESIDUAL_BLOCKS} residual blocks h + tanh(h) ({RESIDUAL_BLOCKS} stacked "
            "diamonds)", hand_graph(spec, [h]))]
    for i, seed in enumerate(range(800, 830)):
        kinds = ("unary", "binary") if i % 2 else ("unary", "binary", "bias", "reduce")
        out.append((f"hidden random DAG #{i + 1}",
                    random_graph(hidden_seed(seed), 4 + i % 11, kinds)))
    return out


def _pct(name) -> str:
    return "None" if name is None else f"%{name}"


@exercise("graphs.post_dominator", points=2, notebook=NB, needs=("post_dominator",),
          hint="every path out of a node goes through one of its consumers, so its "
               "post-dominator is where the consumers' own post-dominator chains first "
               "meet: walk the nodes from the last to the first, and remember that a "
               "graph output (whose value leaves the graph) has none",
          rebuilds=("mlc.graph.dominators:post_dominators",))
class _PostDominator(Check):
    def cases(self):
        from ... import graph

        out = []
        for what, data in _pdom_cases():
            ipdom = graph.post_dominators(build_graph(data))
            out.append({"what": what, "graph": data,
                        "_expected": {n.name: (d.name if d is not None else None)
                                      for n, d in ipdom.items()}})
        return out

    def observe(self, ns, case):
        fn = need(ns, "post_dominator")
        res = call(case["what"], fn, build_graph(case["graph"]))
        if not isinstance(res, dict):
            raise CheckFailed(f"{case['what']}: post_dominator returned a "
                              f"{type(res).__name__}, expected a dict {{node: node or None}}")
        if len(res) > MAX_NODES:
            raise CheckFailed(f"{case['what']}: the dict has {len(res)} entries")
        return [[name_of(k), name_of(v)] for k, v in res.items()]

    def judge(self, case, obs, t):
        what = case["what"]
        if not isinstance(obs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                and (p[1] is None or isinstance(p[1], str)) for p in obs):
            t.fail(f"{what}: malformed observation")
        got = dict((k, v) for k, v in obs)
        want = case["_expected"]
        shown = f" (graph: {show_graph(case['graph'])})"
        missing = [k for k in want if k not in got]
        if missing:
            t.fail(f"{what}: no entry for %{missing[0]}; the dict needs every node of "
                   f"g.nodes, inputs and constants included{shown}")
        extra = [k for k in got if k not in want]
        if extra:
            t.fail(f"{what}: an entry for {extra[0]!r}, which is no node of the graph{shown}")
        for k, v in want.items():
            if got[k] != v:
                t.fail(f"{what}: the post-dominator of %{k} should be {_pct(v)}, got "
                       f"{_pct(got[k])}{shown}")
        t.passed.append(what)

    def inspect(self, src, t):
        d = src.definition("post_dominator")
        used = d.calls() & {"post_dominators", "fuse"} if d is not None else set()
        t.true(not used, "post_dominator does not call mlc.graph's own",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN_LIBRARY}")

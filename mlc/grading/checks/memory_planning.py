"""Unit 10, memory planning (1 of 2): liveness and the lower bound of a graph.

Graphs travel as plain data, as in unit 08 (:func:`.graphs.graph_data`): the grader
draws them (random DAGs whose tensors have many sizes, the course's traced models, and
two degenerate graphs: dead code next to a returned input, and no op at all),
the worker rebuilds an ``mlc.graph.Graph`` of the notebook's library from the data and
hands it to the student's function, and what comes back travels as names and numbers.
The references are ``mlc.memory``'s own, computed on the grader's copy of the graph.

* ``memory_planning.liveness``: ``liveness(g)`` -> ``{tensor: (first_step, last_step)}``
  for every op node, one step per op in ``g.nodes`` order; judged against
  ``memory.liveness``.
* ``memory_planning.lower_bound``: ``lower_bound(g, alignment)``, the most bytes live at
  one step with every tensor rounded up to ``alignment``; judged against
  ``memory.lower_bound``, with alignment 64 and 1.

The planner and the checkpointing schedule are in :mod:`.memory_planning_plan`.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need
from .graphs import build_graph, graph_data, name_of, show_graph

NB = "10_memory_planning"
MAX_ENTRIES = 5000
_FORBIDDEN = "your function must work it out itself, not ask mlc.memory"


# ---- graphs whose tensors have many sizes (the grader's side) -----------------------------

UNARY = ("relu", "exp", "tanh", "negate", "sigmoid")
WIDTHS = (3, 5, 7, 10, 12, 16, 20, 33)


def random_graph(seed: int, n_ops: int = 10) -> dict:
    """A random DAG as plain data: unary ops, adds of values of one shape, matmuls by a
    constant that change the width, and row sums; every op nobody reads is an output,
    and now and then an inner value too. Sizes are rarely multiples of 64 bytes."""
    from ... import graph

    rng = np.random.default_rng(seed)
    b = graph.GraphBuilder()
    rows = int(rng.choice([2, 3, 4, 5, 8]))
    pool = [b.input((rows, int(rng.choice(WIDTHS))), name="x")]
    count = [0]

    def name(op):
        count[0] += 1
        return f"{op}_{count[0]}"

    def pick():  # favour recent values: chains, with branches now and then
        k = len(pool)
        return pool[min(k - 1, int(k * rng.uniform(0.3, 1.0) ** 0.5))] if k > 2 else \
            pool[int(rng.integers(k))]

    for _ in range(n_ops):
        kind = int(rng.integers(5))
        a = pick()
        if kind == 0 or (kind == 4 and a.shape[1] == 1):
            v = b.op(UNARY[int(rng.integers(len(UNARY)))], a, name=name("u"))
        elif kind == 1:
            same = [p for p in pool if p.shape == a.shape and p is not a]
            other = same[int(rng.integers(len(same)))] if same else a
            v = b.op("add" if rng.uniform() < 0.6 else "multiply", a, other, name=name("b"))
        elif kind in (2, 3):
            cols = int(rng.choice(WIDTHS))
            w = b.constant(rng.uniform(-1, 1, (a.shape[1], cols)).astype("float32"),
                           name=name("w"))
            v = b.op("matmul", a, w, name=name("mm"))
        else:
            v = b.op("summation", a, axes=(1,), keepdims=True, name=name("sum"))
        pool.append(v)
    g = b.graph(pool[-1])
    users = g.users()
    outs = [n for n in g.ops if not users[n]]
    if rng.uniform() < 0.3 and len(g.ops) > 2:
        extra = g.ops[int(rng.integers(len(g.ops) - 1))]
        outs += [extra] if extra not in outs else []
    from ...graph import Graph

    return graph_data(Graph(g.nodes, g.inputs, outs))


def traced_models() -> list[tuple[str, dict]]:
    """The course's models as the grader traces them (constants folded, dead code gone)."""
    from ... import graph
    from ...graph import examples
    from ...models import digits_cnn, digits_mlp

    out = []
    for what, (model, x) in (("the digits MLP (batch 3)", digits_mlp(batch=3)),
                             ("the digits CNN (batch 2)", digits_cnn(batch=2)),
                             ("layer norm + softmax", examples.norm_softmax(batch=3))):
        g = graph.eliminate_dead_code(graph.fold_constants(graph.trace(model, x)))
        out.append((what, graph_data(g)))
    return out


def edge_graphs() -> list[tuple[str, dict]]:
    """Two degenerate graphs. Dead code: %dead, a matmul nobody reads and no output, lives
    at its own step only, and makes that step the widest; the graph also returns its input
    %x, which is no tensor of the plan. And a graph with no op at all (no tensor, a bound
    of 0, no blocks to place)."""
    from ... import graph

    b = graph.GraphBuilder()
    x = b.input((3, 5), name="x")
    a = b.op("relu", x, name="a")
    b.op("matmul", a, b.constant(np.full((5, 33), 0.5, "float32"), name="w"), name="dead")
    c = b.op("tanh", a, name="c")
    d = b.op("matmul", c, b.constant(np.full((5, 7), 0.5, "float32"), name="w2"), name="d")
    g = b.graph(d)
    empty = graph.GraphBuilder()
    return [("dead code (%dead is read by no one and no output), and the graph returns its "
             "input %x too", graph_data(graph.Graph(g.nodes, g.inputs, [d, x]))),
            ("a graph with no op (it returns its input)",
             graph_data(empty.graph(empty.input((3, 5), name="x"))))]


def graph_cases(seeds=range(1000, 1020)) -> list[tuple[str, dict]]:
    out = traced_models()
    for i, seed in enumerate(seeds):
        out.append((f"hidden random graph #{i + 1}", random_graph(hidden_seed(seed), 4 + i % 12)))
    return out + edge_graphs()


def _steps(data) -> dict:
    """``{op name: its step}`` (one step per op, in the graph's order)."""
    ops = [d["name"] for d in data["nodes"] if d["op"] not in ("input", "constant")]
    return {n: i for i, n in enumerate(ops)}


def _readers(data, name) -> list[str]:
    return [d["name"] for d in data["nodes"] if name in d["inputs"]]


def _pair(v):
    """An interval as it came back, as a pair of ints, or None."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
        return int(v[0]), int(v[1])
    return None


# ---- exercise 1: liveness --------------------------------------------------------------------

@exercise("memory_planning.liveness", points=2, notebook=NB, needs=("liveness",),
          hint="a tensor is born at the step that computes it and must stay until the last "
               "step that reads it (both ends included); a value the graph returns is "
               "needed until the program ends; inputs and constants belong to the caller",
          rebuilds=("mlc.memory.liveness:liveness",))
class _Liveness(Check):
    def cases(self):
        from ... import memory

        out = []
        for what, data in graph_cases():
            live = memory.liveness(build_graph(data))
            out.append({"what": what, "graph": data,
                        "_expected": {t.name: [a, b] for t, (a, b) in live.items()}})
        return out

    def observe(self, ns, case):
        fn = need(ns, "liveness")
        res = call(case["what"], fn, build_graph(case["graph"]))
        if not isinstance(res, dict):
            raise CheckFailed(f"{case['what']}: liveness returned a {type(res).__name__}, "
                              "expected a dict {tensor: (first_step, last_step)}")
        if len(res) > MAX_ENTRIES:
            raise CheckFailed(f"{case['what']}: the dict has {len(res)} entries")
        out = []
        for k, v in res.items():
            try:
                pair = [int(v[0]), int(v[1])] if len(v) == 2 else repr(v)[:60]
            except (TypeError, ValueError, IndexError, KeyError):
                pair = repr(v)[:60]
            out.append([name_of(k), pair])
        return out

    def judge(self, case, obs, t):
        what, data, want = case["what"], case["graph"], case["_expected"]
        if not isinstance(obs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in obs):
            t.fail(f"{what}: malformed observation")
        got = {k: v for k, v in obs}
        shown = f" (graph: {show_graph(data)})"
        kinds = {d["name"]: d["op"] for d in data["nodes"]}
        extra = [k for k in got if k not in want]
        if extra:
            k = extra[0]
            why = (f"%{k} is a graph {'input' if kinds[k] == 'input' else 'constant'}: the "
                   "caller owns it, it is no tensor of the plan") if k in kinds else \
                f"{k!r} is no node of the graph"
            t.fail(f"{what}: an entry for {k}: {why}{shown}")
        missing = [k for k in want if k not in got]
        if missing:
            t.fail(f"{what}: no interval for %{missing[0]}; every op node is a tensor{shown}")
        steps, last = _steps(data), len(_steps(data)) - 1
        for k, (a, b) in want.items():
            pair = _pair(got[k])
            if pair is None:
                t.fail(f"{what}: the interval of %{k} should be two ints (first, last), got "
                       f"{got[k]!r}")
            if pair != (a, b):
                readers = [r for r in _readers(data, k) if r in steps]
                if k in data["outputs"]:
                    why = f"%{k} is a graph output, needed until the last step, {last}"
                elif readers:
                    why = f"%{k} is made at step {a} and last read by %{readers[-1]} at step {b}"
                else:
                    why = f"%{k} is made at step {a} and read by no one"
                t.fail(f"{what}: the interval of %{k} should be ({a}, {b}), got {pair} "
                       f"({why}){shown}")
        t.passed.append(what)

    def inspect(self, src, t):
        d = src.definition("liveness")
        used = d.calls() & {"liveness", "breadths", "program"} if d is not None else set()
        t.true(not used, "liveness does not call mlc.memory's own",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN}")


# ---- exercise 2: the lower bound ------------------------------------------------------------

def _bound_variants(data, alignment) -> dict:
    """What some wrong answers come to, to say which mistake a number looks like."""
    from ... import memory

    g = build_graph(data)
    live = memory.liveness(g)
    sizes = {t: memory.align(t.nbytes, alignment) for t in live}
    return {"raw": memory.lower_bound(g, alignment=1), "all": sum(sizes.values()),
            "aligned": memory.lower_bound(g, alignment=64)}


@exercise("memory_planning.lower_bound", points=1, notebook=NB, needs=("lower_bound",),
          hint="at each step add up the (rounded-up) bytes of every tensor alive at that "
               "step, then take the widest step; your liveness says who is alive",
          rebuilds=("mlc.memory.liveness:lower_bound",))
class _LowerBound(Check):
    def cases(self):
        from ... import memory

        out = []
        for i, (what, data) in enumerate(graph_cases(range(1100, 1114))):
            for al in ((64, 1) if i % 3 == 0 else (64,)):
                out.append({"what": f"{what}, alignment={al}", "graph": data, "alignment": al,
                            "_expected": memory.lower_bound(build_graph(data), al),
                            "_variants": _bound_variants(data, al)})
        return out

    def observe(self, ns, case):
        fn = need(ns, "lower_bound")
        res = call(case["what"], fn, build_graph(case["graph"]), case["alignment"])
        if isinstance(res, (int, np.integer)) and not isinstance(res, bool):
            return int(res)
        if isinstance(res, (float, np.floating)) and float(res).is_integer():
            return int(res)
        return repr(res)[:80]

    def judge(self, case, obs, t):
        what, want, var = case["what"], case["_expected"], case["_variants"]
        if not isinstance(obs, int) or isinstance(obs, bool):
            t.fail(f"{what}: expected an int number of bytes, got {obs!r}")
        if obs != want:
            al = case["alignment"]
            why = ""
            if obs == var["raw"] and al > 1:
                why = f"; that is the bound without rounding each tensor up to {al} bytes"
            elif obs == var["aligned"] and al == 1:
                why = "; that rounds the sizes up although alignment=1"
            elif obs == var["all"]:
                why = "; that is every tensor at once, as if none ever died"
            t.fail(f"{what}: expected {want} bytes, got {obs}{why} "
                   f"(graph: {show_graph(case['graph'])})")
        t.passed.append(what)

    def inspect(self, src, t):
        d = src.definition("lower_bound")
        used = d.calls() & {"lower_bound", "breadths", "plan", "lower_bound_for_order"} \
            if d is not None else set()
        t.true(not used, "lower_bound does not call mlc.memory's own",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN}")

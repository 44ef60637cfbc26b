"""Unit 08, graphs and fusion (2 of 3): a fusion rule for elementwise chains, bytes moved.

* ``graphs.fuse_elementwise``: ``fuse_elementwise(g)`` returns groups of op nodes. The
  grader checks that they partition the op nodes, that each is *legal* (more than one
  node only if all are elemwise/broadcast; exactly one node whose value leaves the group:
  every other one is no graph output and has all its consumers inside) and that the
  partition is the *coarsest* legal one, which is what the notebook's greedy rule makes
  (every legal partition refines it: a group's sink is processed first in reverse
  topological order, and each other member then finds all its consumers in the sink's
  greedy group). The reference is :func:`greedy_groups`, in the grader.
* ``graphs.bytes_moved``: ``bytes_moved(g, groups)`` for partitions the grader makes
  (one kernel per op, the greedy rule, ``mlc.graph.fuse`` under "tvm" and "epilogue"),
  judged against :func:`bytes_moved_reference`.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need
from .graphs import (_FORBIDDEN_LIBRARY, MAX_NODES, NB, build_graph, hand_graph, name_of,
                     random_graph, show_graph, traced_examples)

FUSABLE = ("elemwise", "broadcast")
MIXED = ("unary", "binary", "scalar", "bias", "reduce", "matmul", "flip")


def _users(data) -> dict:
    out = {d["name"]: [] for d in data["nodes"]}
    for d in data["nodes"]:
        for x in dict.fromkeys(d["inputs"]):
            out[x].append(d["name"])
    return out


def _ops(data) -> list[str]:
    return [d["name"] for d in data["nodes"] if d["op"] not in ("input", "constant")]


def greedy_groups(data) -> list[list[str]]:
    """The notebook's rule, on plain data: from the last node to the first, a node joins
    its consumers' group when it is elemwise/broadcast, no graph output, and all its
    consumers are in one group made of elemwise/broadcast nodes only."""
    from ... import graph

    pat = {d["name"]: graph.pattern(d["op"]) for d in data["nodes"]}
    users, outs = _users(data), set(data["outputs"])
    group: dict = {}
    members: dict = {}
    for name in reversed(_ops(data)):
        gs = {group[u] for u in users[name]}
        if pat[name] in FUSABLE and name not in outs and len(gs) == 1:
            (g,) = gs
            if all(pat[m] in FUSABLE for m in members[g]):
                group[name] = g
                members[g].insert(0, name)
                continue
        group[name] = name
        members[name] = [name]
    order = {n: i for i, n in enumerate(_ops(data))}
    return sorted(members.values(), key=lambda gr: order[gr[0]])


def _fusion_cases():
    diamond = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]), ("c", "tanh", ["a"]),
                          ("d", "add", ["b", "c"])], ["d"])
    open_diamond = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]),
                               ("c", "tanh", ["a"])], ["b", "c"])
    inner_output = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]),
                               ("c", "tanh", ["b"])], ["b", "c"])
    out = traced_examples()
    out += [("a diamond exp -> (negate, tanh) -> add", diamond),
            ("an open diamond (negate and tanh are both outputs)", open_diamond),
            ("a chain whose middle node is also an output", inner_output)]
    for i, seed in enumerate(range(900, 924)):
        kinds = ("unary", "binary") if i % 3 == 0 else MIXED
        out.append((f"hidden random graph #{i + 1}",
                    random_graph(hidden_seed(seed), 6 + i % 9, kinds)))
    return out


def group_names(res, what) -> list[list[str]]:
    """The student's groups (lists of Nodes or names) as lists of names (in the worker)."""
    if not isinstance(res, (list, tuple)):
        raise CheckFailed(f"{what}: returned a {type(res).__name__}, expected a list of "
                          "groups (each a list of nodes)")
    out, total = [], 0
    for gr in res:
        if not isinstance(gr, (list, tuple, set, frozenset)):
            raise CheckFailed(f"{what}: a group is a {type(gr).__name__}, expected a list "
                              "of nodes")
        total += len(gr)
        if total > MAX_NODES:
            raise CheckFailed(f"{what}: the groups hold more than {MAX_NODES} nodes")
        out.append([name_of(n) for n in gr])
    return out


def _read_groups(obs, what) -> list[list[str]]:
    if not isinstance(obs, list) or not all(
            isinstance(g, list) and all(isinstance(n, str) for n in g) for g in obs):
        raise CheckFailed(f"{what}: malformed observation")
    return obs


def _fmt(groups, limit=12) -> str:
    text = ", ".join("[" + ", ".join("%" + n for n in g) + "]" for g in groups[:limit])
    return text + (", ..." if len(groups) > limit else "")


def judge_partition(data, groups, what) -> None:
    """The groups hold every op node of ``data`` exactly once, and nothing else."""
    ops = _ops(data)
    kind = {d["name"]: d["op"] for d in data["nodes"]}
    seen: dict = {}
    for g in groups:
        if not g:
            raise CheckFailed(f"{what}: an empty group")
        for n in g:
            if n not in kind:
                raise CheckFailed(f"{what}: {n!r} is no node of the graph")
            if kind[n] in ("input", "constant"):
                raise CheckFailed(f"{what}: %{n} is an {kind[n]}, which no kernel computes: "
                                  "groups hold op nodes only")
            if n in seen:
                raise CheckFailed(f"{what}: %{n} is in two groups")
            seen[n] = True
    left = [n for n in ops if n not in seen]
    if left:
        raise CheckFailed(f"{what}: %{left[0]} is in no group (every op node is in exactly "
                          "one)")


@exercise("graphs.fuse_elementwise", points=3, notebook=NB, needs=("fuse_elementwise",),
          hint="walk the nodes from the last to the first; a node may join only when all of "
               "its consumers already sit in one and the same group and that group holds "
               "elemwise/broadcast ops only; graph outputs and every other pattern start a "
               "group of their own")
class _FuseElementwise(Check):
    def cases(self):
        return [{"what": what, "graph": data, "_expected": greedy_groups(data)}
                for what, data in _fusion_cases()]

    def observe(self, ns, case):
        fn = need(ns, "fuse_elementwise")
        return group_names(call(case["what"], fn, build_graph(case["graph"])), case["what"])

    def judge(self, case, obs, t):
        from ... import graph

        data, what = case["graph"], case["what"]
        groups = _read_groups(obs, what)
        shown = f"; your groups: {_fmt(groups)}"
        judge_partition(data, groups, what + shown)
        pat = {d["name"]: graph.pattern(d["op"]) for d in data["nodes"]}
        users, outs = _users(data), set(data["outputs"])
        for g in groups:
            inside = set(g)
            if len(g) > 1:
                bad = [n for n in g if pat[n] not in FUSABLE]
                if bad:
                    t.fail(f"{what}: group [{', '.join('%' + n for n in g)}] holds %{bad[0]} "
                           f"({pat[bad[0]]}): only elemwise and broadcast ops share a group"
                           + shown)
            exits = [n for n in g if n in outs or any(u not in inside for u in users[n])]
            if len(exits) > 1:
                n = exits[0] if exits[0] not in outs or exits[1] in outs else exits[1]
                why = "a graph output" if n in outs else "read by %" + next(
                    u for u in users[n] if u not in inside) + " outside the group"
                t.fail(f"{what}: group [{', '.join('%' + m for m in g)}] is not legal: %{n} "
                       f"is {why}, so it would have to be written out and a fused group "
                       "writes one value" + shown)
        want = case["_expected"]
        sinks = {g[-1] for g in want}
        mine = {n for g in groups for n in g
                if n in outs or any(u not in set(g) for u in users[n])}
        for d in data["nodes"]:
            n = d["name"]
            if n in mine and n not in sinks:
                cons = ", ".join("%" + u for u in users[n])
                t.fail(f"{what}: not maximal: %{n} ({d['op']}, no output) could join the "
                       f"group of all its consumers ({cons}); the rule fuses it"
                       + shown)
        t.passed.append(f"{what}: {len(groups)} groups from {len(_ops(data))} ops")

    def inspect(self, src, t):
        d = src.definition("fuse_elementwise")
        used = d.calls() & {"fuse", "post_dominators", "get_policy", "run"} \
            if d is not None else set()
        t.true(not used, "fuse_elementwise does not call mlc.graph's fusion",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN_LIBRARY}")


# ---- exercise 4: bytes moved --------------------------------------------------------------------

def bytes_moved_reference(data, groups) -> int:
    """Each group reads each distinct value from outside it once and writes each of its
    values that is read outside it, or is a graph output, once."""
    size = {d["name"]: int(np.prod(d["shape"], dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
            for d in data["nodes"]}
    ins = {d["name"]: d["inputs"] for d in data["nodes"]}
    users, outs = _users(data), set(data["outputs"])
    total = 0
    for g in groups:
        inside = set(g)
        read = dict.fromkeys(x for n in g for x in ins[n] if x not in inside)
        wrote = [n for n in g if n in outs or any(u not in inside for u in users[n])]
        total += sum(size[x] for x in read) + sum(size[n] for n in wrote)
    return int(total)


def _bytes_cases():
    from ... import graph

    out = []
    graphs = traced_examples() + [
        (f"hidden random graph #{i + 1}", random_graph(hidden_seed(seed), 5 + i % 7, MIXED))
        for i, seed in enumerate(range(950, 958))]
    graphs.append(("a random float64 graph", random_graph(960, 8, MIXED, dtype="float64")))
    for what, data in graphs:
        g = build_graph(data)
        parts = [("one kernel per op", [[n] for n in _ops(data)]),
                 ("the elementwise rule's groups", greedy_groups(data))]
        for policy in ("tvm", "epilogue"):
            fg = graph.fuse(g, policy)
            parts.append((f"graph.fuse(g, {policy!r}).groups",
                          [[n.name for n in gr] for gr in fg.groups]))
        ops = _ops(data)
        rng = np.random.default_rng(hidden_seed(970) + len(out))
        cuts = sorted(rng.choice(np.arange(1, len(ops)), size=min(3, len(ops) - 1),
                                 replace=False).tolist()) if len(ops) > 1 else []
        # consecutive runs of ops: groups with several values leaving them, which no
        # legal fusion makes (a kernel's cost is defined for any cut)
        parts.append(("a cut into runs of consecutive ops",
                      [ops[a:b] for a, b in zip([0, *cuts], [*cuts, len(ops)],
                                                           strict=True)]))
        for how, groups in parts:
            out.append({"what": f"{what}, {how}", "graph": data, "groups": groups,
                        "_expected": bytes_moved_reference(data, groups)})
    exits = hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]), ("c", "tanh", ["a"]),
                        ("d", "add", ["b", "c"])], ["b", "d"])
    for how, groups in (("a group whose first and middle values are read outside it",
                         [["a", "b"], ["c", "d"]]),
                        ("one group writing a graph output that is not its last node",
                         [["a", "b", "c", "d"]])):
        out.append({"what": f"exp -> (negate, tanh) -> add, {how}", "graph": exits,
                    "groups": groups, "_expected": bytes_moved_reference(exits, groups)})
    return out


@exercise("graphs.bytes_moved", points=2, notebook=NB, needs=("bytes_moved",),
          hint="a group is one kernel: it reads each value from outside it once (inputs "
               "and constants too, however many of its nodes read it) and writes each of "
               "its values that someone outside it, or the caller, reads; a value's bytes "
               "are its elements times its dtype's item size")
class _BytesMoved(Check):
    def cases(self):
        return _bytes_cases()

    def observe(self, ns, case):
        fn = need(ns, "bytes_moved")
        g = build_graph(case["graph"])
        by_name = {n.name: n for n in g.nodes}
        groups = [[by_name[n] for n in gr] for gr in case["groups"]]
        res = call(case["what"], fn, g, groups)
        if isinstance(res, (bool, np.bool_)) or not isinstance(res, (int, np.integer)):
            if isinstance(res, (float, np.floating)) and float(res).is_integer():
                return int(res)
            raise CheckFailed(f"{case['what']}: bytes_moved returned {res!r}, expected an "
                              "int")
        return int(res)

    def judge(self, case, obs, t):
        if isinstance(obs, bool) or not isinstance(obs, int):
            t.fail(f"{case['what']}: malformed observation")
        want = case["_expected"]
        if obs != want:
            t.fail(f"{case['what']}: expected {want} bytes, got {obs} (graph: "
                   f"{show_graph(case['graph'], 12)}; groups: {_fmt(case['groups'], 8)})")
        t.passed.append(f"{case['what']}: {want} bytes")

    def inspect(self, src, t):
        d = src.definition("bytes_moved")
        # the library's steps (a Program's reads and writes) are the answer itself
        used = d.calls() & {"FusedGraph", "Program", "from_groups", "group_io"} \
            if d is not None else set()
        t.true(not used, "bytes_moved counts by itself",
               f"it calls {', '.join(sorted(used))}: {_FORBIDDEN_LIBRARY}")

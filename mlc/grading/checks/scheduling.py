"""Unit 06, scheduling (1 of 2): ``split`` on the notebook's tiny loop IR.

``scheduling.split`` runs the student's ``split(nest, var, factor)`` on hidden nests and
compares the instances the new nest computes, in order, with the original's; it also looks
at the shape of the result (two loops with the right extents, a guard exactly when the
split is imperfect), at the nest it was given (left as it was), and asks for
``ValueError`` on factors 0 and -2 and on a loop that does not exist.
``schedule_matmul`` and ``fuse_relu`` are in :mod:`.scheduling_tir`.

The hidden nests are plain nested dicts in the grader. ``observe`` builds each from the
notebook's own ``Loop`` / ``Guard`` / ``Compute`` classes, calls ``split`` and reads the
result and the given nest back into plain data with ``getattr`` (expressions as ``str``),
one flat list of nodes so that a shared or cyclic nest can travel. ``judge`` rebuilds them
and runs them with its own interpreter, whose expressions are parsed with :mod:`ast` and
evaluated on a whitelist (numbers, loop variables, ``+ - * // %``, comparisons, ``and or
not``): nothing that came from the worker is ever ``eval``-ed.
"""

from __future__ import annotations

import ast
import math
import operator

from ..registry import Check, CheckFailed, call, exercise, need, raised

NB = "06_scheduling"
MAX_NODES = 5000        # statements a returned nest may hold
MAX_DEPTH = 60          # statements nested in one another
MAX_EXPR = 2000         # characters of one expression


# ---- the hidden nests, as plain data ---------------------------------------------------------

def L(var, extent, body):  # noqa: N802 - reads like the notebook's Loop
    return {"kind": "Loop", "var": var, "extent": extent, "body": body}


def G(cond, body):  # noqa: N802
    return {"kind": "Guard", "cond": cond, "body": body}


def C(name, bindings):  # noqa: N802
    return {"kind": "Compute", "name": name, "bindings": bindings}



def _split_cases():
    """(description, nest, var, factor) of the hidden cases."""
    def one(n):
        return L("i", n, [C("S", {"vi": "i"})])

    def matmul(n, m, k):
        return L("i", n, [L("j", m, [C("C_init", {"vi": "i", "vj": "j"}),
                                     L("k", k, [C("C", {"vi": "i", "vj": "j", "vk": "k"})])])])

    def triangle(n):  # a guard already there, mentioning the loop being split
        return L("i", n, [L("j", n, [G("j <= i", [C("L", {"vi": "i", "vj": "j"})])])])

    def prefix(n):  # loop names that contain the split variable as a prefix
        return L("i", n, [L("ii", 3, [C("P", {"vi": "i", "vii": "ii", "vs": "i * 3 + ii"})])])

    sequence = [L("i", 6, [C("X", {"vi": "i"})]), L("t", 5, [C("Y", {"vt": "t"})])]
    guarded = L("i", 4, [G("i % 2 == 0", [L("j", 5, [C("E", {"vi": "i", "vj": "j"})])])])
    return [
        ("a single loop of 12 split by 4 (perfect)", one(12), "i", 4),
        ("a single loop of 10 split by 4 (imperfect: 3 x 4 = 12 > 10)", one(10), "i", 4),
        ("a loop of 5 split by 8 (factor larger than the extent)", one(5), "i", 8),
        ("a loop of 7 split by 1", one(7), "i", 1),
        ("a loop of 6 split by 6", one(6), "i", 6),
        ("the middle loop j of a 3 x 5 x 2 matmul nest, split by 2", matmul(3, 5, 2), "j", 2),
        ("the inner loop k of a 2 x 2 x 9 matmul nest, split by 4", matmul(2, 2, 9), "k", 4),
        ("loop i of a triangle (a guard `j <= i` below it), split by 3", triangle(7), "i", 3),
        ("loop i with an inner loop named ii, split by 2", prefix(5), "i", 2),
        ("the second of two loops in a list, split by 2", sequence, "t", 2),
        ("loop j inside a guard `i % 2 == 0`, split by 2", guarded, "j", 2),
    ]


# ---- in the worker: the student's objects <-> plain data -------------------------------------

def build_nest(data, Loop, Guard, Compute):  # noqa: N803 - the notebook's class names
    """A plain nest (nested dicts, or a list of them) made of the notebook's classes."""
    if isinstance(data, list):
        return [build_nest(s, Loop, Guard, Compute) for s in data]
    if data["kind"] == "Compute":
        return Compute(data["name"], dict(data["bindings"]))
    body = build_nest(data["body"], Loop, Guard, Compute)
    return Loop(data["var"], data["extent"], body) if data["kind"] == "Loop" else \
        Guard(data["cond"], body)


def _scalar(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return f"<{type(value).__name__} {value!r}>"[:200]
    except Exception:  # noqa: BLE001 - the student's object may fail to print
        return f"<{type(value).__name__}>"


def nest_to_data(nest) -> dict:
    """The nest ``split`` returned as ``{"root": [...], "nodes": [...]}``: every statement
    once (read with getattr: the kind is its class's name), bodies as node indices."""
    nodes, index = [], {}

    def ref(s):
        if id(s) not in index:
            if len(nodes) >= MAX_NODES:
                raise CheckFailed(f"the nest returned has more than {MAX_NODES} statements")
            index[id(s)] = len(nodes)
            nodes.append(None)
            todo.append(s)
        return index[id(s)]

    def refs(body):
        return ([ref(c) for c in body], True) if isinstance(body, (list, tuple)) else \
            ([ref(body)], False)

    todo, keep = [], []  # keep: every object stays alive, so that no id() is reused
    root = None if nest is None else refs(nest)[0]
    while todo:
        s = todo.pop()
        keep.append(s)
        kind = type(s).__name__
        node = {"kind": kind}
        if kind == "Loop":
            node.update(var=_scalar(getattr(s, "var", None)),
                        extent=_scalar(getattr(s, "extent", None)))
        elif kind == "Guard":
            node["cond"] = str(getattr(s, "cond", None))[:MAX_EXPR + 1]
        elif kind == "Compute":
            node["name"] = _scalar(getattr(s, "name", None))
            b = getattr(s, "bindings", None)
            node["bindings"] = ({str(k): str(e)[:MAX_EXPR + 1] for k, e in b.items()}
                                if isinstance(b, dict) else None)
            node["bindings_type"] = type(b).__name__
        if hasattr(s, "body"):
            node["body"], node["body_is_list"] = refs(s.body)
        nodes[index[id(s)]] = node
    return {"root": root, "nodes": nodes}


# ---- in the grader: plain data -> a nest of dicts, and its interpreter ----------------------

def data_to_nest(obs):
    """The nest of an observation as dicts (shared statements stay shared, so ``is``
    works as on the student's objects): a list of statements, or None."""
    if not isinstance(obs, dict) or not isinstance(obs.get("nodes"), list):
        raise CheckFailed("malformed observation of the nest")
    raw = obs["nodes"]
    if obs.get("root") is None:
        return None
    if len(raw) > MAX_NODES or not all(isinstance(n, dict) and isinstance(n.get("kind"), str)
                                       for n in raw):
        raise CheckFailed("malformed observation of the nest")
    objs = [dict(n, body=[]) if "body" in n else dict(n) for n in raw]

    def get(i):
        if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(objs)):
            raise CheckFailed("malformed observation of the nest")
        return objs[i]

    for n, o in zip(raw, objs, strict=True):
        if "body" in n:
            if not isinstance(n["body"], list):
                raise CheckFailed("malformed observation of the nest")
            o["body"] = [get(i) for i in n["body"]]
    if not isinstance(obs["root"], list):
        raise CheckFailed("malformed observation of the nest")
    root = [get(i) for i in obs["root"]]
    # no statement inside itself; at most MAX_NODES statements (shared ones counted at each
    # place) and MAX_DEPTH levels, so that every walk of the nest in the grader is short
    state, size, height, stack = {}, {}, {}, [(s, False) for s in root]
    while stack:
        s, done = stack.pop()
        if done:
            state[id(s)] = "done"
            kids = s.get("body", [])
            size[id(s)] = 1 + sum(size[id(c)] for c in kids)
            height[id(s)] = 1 + max((height[id(c)] for c in kids), default=0)
            if size[id(s)] > MAX_NODES:
                raise CheckFailed(f"the nest returned has more than {MAX_NODES} statements")
            if height[id(s)] > MAX_DEPTH:
                raise CheckFailed(f"the nest is more than {MAX_DEPTH} statements deep")
            continue
        if state.get(id(s)) == "open":
            raise CheckFailed(f"the nest contains a {s['kind']} inside itself (a cycle)")
        if state.get(id(s)) == "done":
            continue
        state[id(s)] = "open"
        stack.append((s, True))
        stack += [(c, False) for c in s.get("body", [])]
    if sum(size[id(s)] for s in root) > MAX_NODES:
        raise CheckFailed(f"the nest returned has more than {MAX_NODES} statements")
    return root


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
           ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_PARSED: dict = {}


class UnsupportedExpression(Exception):
    pass


def _value(node, env):
    """A whitelisted expression node's value: never ``eval``."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise NameError(f"name {node.id!r} is not a loop variable here")
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_value(node.left, env), _value(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        v = _value(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else +v if isinstance(
            node.op, ast.UAdd) else not v
    if isinstance(node, ast.BoolOp):
        v = None
        for part in node.values:
            v = _value(part, env)
            if bool(v) == isinstance(node.op, ast.Or):
                return v
        return v
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        left = _value(node.left, env)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _value(right_node, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    raise UnsupportedExpression(f"{type(node).__name__} is not allowed (only numbers, loop "
                                "variables, + - * // %, comparisons, and/or/not)")


def evaluate(expr, env):
    """The value of a tiny-IR expression (text) with loop variables ``env``."""
    try:
        if not isinstance(expr, str) or len(expr) > MAX_EXPR:
            raise ValueError("not an expression of at most 2000 characters")
        if expr not in _PARSED:
            _PARSED[expr] = ast.parse(expr.strip(), mode="eval").body
        return _value(_PARSED[expr], env)
    except Exception as err:  # noqa: BLE001 - any text may arrive
        raise CheckFailed(f"cannot evaluate the expression {expr!r} with loop variables "
                          f"{sorted(env)}: {type(err).__name__}: {err}") from None


def run_tiny(stmts, limit: int = 10**6) -> list:
    """The instances a nest of dicts computes, in order: (name, sorted (iterator, value)
    pairs). At most ``limit`` statements run, in all."""
    out, steps = [], [0]

    def run(stmts, env):
        for s in stmts:
            kind = s["kind"]
            steps[0] += 1
            if steps[0] > limit:
                raise CheckFailed(f"the nest runs more than {limit} statements")
            if kind == "Loop":
                extent = s.get("extent")
                if not isinstance(extent, int) or isinstance(extent, bool):
                    raise CheckFailed(f"loop {s.get('var')} has extent {extent!r}; extents "
                                      "must be ints")
                steps[0] += max(extent, 0)
                if steps[0] > limit:
                    raise CheckFailed(f"the nest runs more than {limit} statements")
                for v in range(extent):
                    run(s["body"], {**env, s.get("var"): v})
            elif kind == "Guard":
                if evaluate(s.get("cond"), env):
                    run(s["body"], env)
            elif kind == "Compute":
                b = s.get("bindings")
                if not isinstance(b, dict):
                    raise CheckFailed(f"Compute {s.get('name')} has bindings of type "
                                      f"{s.get('bindings_type')}, expected a dict")
                out.append((s.get("name"), tuple(sorted((k, evaluate(e, env))
                                                        for k, e in b.items()))))
            else:
                raise CheckFailed(f"the nest contains a {kind}; only Loop, Guard and Compute "
                                  "may appear in it")

    run(stmts if isinstance(stmts, list) else [stmts], {})
    return out


def _walk(stmts):
    for s in stmts if isinstance(stmts, list) else [stmts]:
        yield s
        yield from _walk(s.get("body", []))


def _find_loop(stmts, var):
    return next((s for s in _walk(stmts) if s["kind"] == "Loop" and s.get("var") == var), None)


def _count(stmts, kind) -> int:
    return sum(s["kind"] == kind for s in _walk(stmts))


def show(stmts, ind="") -> str:
    """A nest of dicts as the notebook's ``show`` prints it."""
    lines = []
    for s in stmts if isinstance(stmts, list) else [stmts]:
        if s["kind"] == "Loop":
            lines += [f"{ind}for {s.get('var')} in range({s.get('extent')}):",
                      show(s["body"], ind + "    ")]
        elif s["kind"] == "Guard":
            lines += [f"{ind}if {s.get('cond')}:", show(s["body"], ind + "    ")]
        else:
            b = s.get("bindings")
            args = ", ".join(f"{k}={e}" for k, e in b.items()) if isinstance(b, dict) else "?"
            lines.append(f"{ind}{s.get('name')}({args})")
    return "\n".join(x for x in lines if x)


@exercise("scheduling.split", points=3, notebook=NB, needs=("split", "Loop", "Guard", "Compute"),
          hint="a split must compute exactly the instances of the original loop, in the same "
               "order: think about what the old loop variable is in terms of the two new "
               "ones, which expressions below the loop mention it (guards too; whole words "
               "only), and what happens to the last tile when the factor does not divide the "
               "extent (lecture 06, section 2.2)")
class _Split(Check):
    def cases(self):
        out = [{"what": what, "nest": nest, "var": var, "factor": factor}
               for what, nest, var, factor in _split_cases()]
        small = L("i", 4, [C("S", {"vi": "i"})])
        return out + [{"what": what, "nest": small, "var": var, "factor": f, "raises": True}
                      for what, var, f in (("a factor of 0 raises ValueError", "i", 0),
                                           ("a factor of -2 raises ValueError", "i", -2),
                                           ("splitting a loop that does not exist raises "
                                            "ValueError", "q", 2))]

    def observe(self, ns, case):
        split = need(ns, "split")
        classes = [need(ns, name) for name in ("Loop", "Guard", "Compute")]
        nest = build_nest(case["nest"], *classes)
        if case.get("raises"):
            return raised(split, nest, case["var"], case["factor"])
        new = call(f"split({case['what']})", split, nest, case["var"], case["factor"])
        return {**nest_to_data(new), "given": nest_to_data(nest)}

    def judge(self, case, obs, t):
        what, var, factor = case["what"], case["var"], case["factor"]
        if case.get("raises"):
            t.raised(obs, ValueError, what)
            return
        try:
            new = data_to_nest(obs)
        except CheckFailed as err:
            t.fail(f"{what}: {err}")
        if new is None:
            t.fail(f"split({what}) returned None; return the new nest")
        before = run_tiny(case["nest"])
        try:
            after = run_tiny(new, limit=20 * len(before) + 1000)
        except CheckFailed as err:
            t.fail(f"{what}: {err}. Your nest:\n{show(new)}")
        if after != before:
            n_b, n_a = len(before), len(after)
            diff = next((i for i, (x, y) in enumerate(zip(before, after, strict=False))
                         if x != y), min(n_b, n_a))
            got = after[diff] if diff < n_a else "nothing"
            want = before[diff] if diff < n_b else "nothing more"
            t.fail(f"{what}: the split nest computes {n_a} instances, the original {n_b}; "
                   f"the first difference is instance #{diff}: expected {want}, got {got}. "
                   f"Your nest:\n{show(new)}")
        t.passed.append(f"{what}: the same instances in the same order")
        outer, inner = _find_loop(new, f"{var}_0"), _find_loop(new, f"{var}_1")
        extent = _find_loop(case["nest"], var)["extent"]
        if outer is None or inner is None:
            t.fail(f"{what}: expected loops named {var}_0 and {var}_1, got:\n{show(new)}")
        t.true(_find_loop(new, var) is None, f"{what}: loop {var} is gone",
               f"loop {var} is still in the nest")
        t.equal((outer.get("extent"), inner.get("extent")), (math.ceil(extent / factor), factor),
                f"{what}: extents of ({var}_0, {var}_1)")
        t.true(outer.get("body_is_list", True) and len(outer["body"]) == 1
               and outer["body"][0] is inner, f"{what}: {var}_1 is the whole body of {var}_0",
               f"got:\n{show(new)}")
        given = show(data_to_nest(obs.get("given")) or [])  # every field, in order
        t.true(given == show(case["nest"]), f"{what}: the nest given to split is left as it was",
               f"split changed it into:\n{given}\nBuild the result from new statements: "
               "otherwise `run(new) == run(nest)` compares a nest with itself")
        guards = _count(new, "Guard") - _count(case["nest"], "Guard")
        want = 0 if extent % factor == 0 else 1
        t.equal(guards, want, f"{what}: number of guards added "
                f"({'none for a perfect split' if not want else 'one for the overhang'})")

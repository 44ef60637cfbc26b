"""What the converter rewrites, written as data, and the matcher that reads it.

A :class:`Rule` is an *anchor* op whose operands pass a test, followed by optional ops
that each read the previous one (and nothing else reads it), in order::

    RULES = (
        Rule("qlinear", "matmul", ("value", "weight"),
             tail=(("reshape", "keeps_last_axis"), ("add", "bias"), ("relu", None))),
        Rule("qadd", "add", ("quantized", "quantized"), tail=(("relu", None),),
             equal_shapes=True),
    )

reads: ``matmul(x, W) [reshape] [+ bias] [relu]`` becomes one ``qlinear`` (a Linear, or a
Conv after ``im2col``), and ``add`` of two *quantized* values (each made by an integer op,
perhaps moved on codes since: a residual connection) becomes ``qadd``; an add inside a
float island (softmax's ``x - max``) stays float. A ReLU after either is fused (a clamp at
the output zero point). To quantize another pattern, add a rule and the op it makes
(:mod:`.graph_ops`); the matcher and the passes do not change.

Around the matches, ops are of three kinds (:data:`ON_CODES`, :data:`SAME_GRID`, and the
rest): data movement runs on the int8 codes as they are (a reshape of codes is the codes
of the reshape); ``relu`` and ``pad`` keep their input's grid (``max(q, z)``, padding
with ``z``: exact); everything else (softmax, layer norm, GELU, exp, an op the
converter does not know) is a *float island*, run in float32 between ``dequantize``
and ``quantize``. Nothing is refused: the worst case is a float op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ON_CODES = ("reshape", "permute", "im2col", "flip", "crop", "broadcast_to", "slice")
SAME_GRID = ("relu", "pad")


@dataclass(frozen=True)
class Rule:
    """``anchor`` with operands passing ``operands`` (one test name each), then ``tail``:
    ``(op, test or None)`` pairs, each optional, taken in order."""
    makes: str
    anchor: str
    operands: tuple
    tail: tuple = ()
    equal_shapes: bool = False     # operands of one shape (no implicit broadcasting)


RULES = (
    Rule("qlinear", "matmul", ("value", "weight"),
         tail=(("reshape", "keeps_last_axis"), ("add", "bias"), ("relu", None))),
    Rule("qadd", "add", ("quantized", "quantized"), tail=(("relu", None),), equal_shapes=True),
)


@dataclass
class Match:
    """One rule applied: ``nodes`` (anchor first, then the tail taken), ``operands`` (the
    values it quantizes), ``output`` (the last node) and what the tail added."""
    rule: Rule
    nodes: list
    operands: list
    params: dict = field(default_factory=dict)

    @property
    def output(self):
        return self.nodes[-1]


def constant_value(node):
    """The value of a constant, or of ``broadcast_to(constant)``; else None."""
    if node.op == "constant":
        return node.value
    if node.op == "broadcast_to" and node.inputs[0].op == "constant":
        return node.inputs[0].value
    return None


def _operand_ok(test: str, node, quantized) -> bool:
    if test == "value":
        return node.op != "constant" and node.dtype == "float32"
    if test == "quantized":
        return node in quantized
    if test == "weight":
        return node.op == "constant" and len(node.shape) == 2
    raise ValueError(f"unknown operand test {test!r}")


def _tail_ok(test, node, cur, match: Match) -> bool:
    others = [x for x in node.inputs if x is not cur]
    if test is None:
        return not others
    if test == "keeps_last_axis":
        return node.shape[-1] == cur.shape[-1]
    if test == "bias":
        if len(others) != 1 or constant_value(others[0]) is None:
            return False
        return constant_value(others[0]).size == match.nodes[0].inputs[1].shape[1]
    raise ValueError(f"unknown tail test {test!r}")


def match_rules(g, rules=RULES) -> dict:
    """``{anchor node: Match}`` for every rule match in ``g``; a node belongs to at most
    one match (the first rule, in graph order, that takes it)."""
    users = g.users()
    outs = set(g.outputs)
    taken: set = set()
    found: dict = {}
    quantized: set = set()       # values an integer op makes (or moves on codes)
    for n in g.nodes:
        if n.is_leaf:
            continue
        if n in taken:
            continue
        if n.inputs and n.inputs[0] in quantized and n.op in ON_CODES + SAME_GRID and \
                all(x.op == "constant" for x in n.inputs[1:]):
            quantized.add(n)
            continue
        for rule in rules:
            if n.op != rule.anchor or len(n.inputs) != len(rule.operands):
                continue
            if not all(_operand_ok(t, x, quantized)
                       for t, x in zip(rule.operands, n.inputs, strict=True)):
                continue
            if rule.equal_shapes and len({x.shape for x in n.inputs}) != 1:
                continue
            m = Match(rule, [n], [x for x, t in zip(n.inputs, rule.operands, strict=True)
                                  if t in ("value", "quantized")])
            for op, test in rule.tail:
                cur = m.nodes[-1]
                nxt = users[cur]
                if cur in outs or len(nxt) != 1 or nxt[0].op != op or nxt[0] in taken:
                    continue
                if _tail_ok(test, nxt[0], cur, m):
                    m.nodes.append(nxt[0])
                    m.params[op] = nxt[0]
            found[n] = m
            taken.update(m.nodes)
            quantized.add(m.output)     # its readers come later, in graph order
            break
    return found


def bias_input(m: Match):
    """The bias operand of a ``qlinear`` match's ``add`` (the input the chain did not make)."""
    add = m.params["add"]
    prev = m.nodes[m.nodes.index(add) - 1]
    return next(x for x in add.inputs if x is not prev)

"""The batch axis: a symbol ``N`` in a graph's shapes, so one graph serves every batch.

A graph is traced at one batch size, but a model does not depend on it: the digits MLP
maps ``float32[N, 64]`` to ``float32[N, 10]`` for any ``N``. As TVM Relax's symbolic
shapes and ONNX's dynamic axes do, the graph keeps that fact: the leading axis of each
traced input is the batch axis, and every shape and shape attribute that follows from it
is an affine function of ``N``::

    %x       = input                              float32[N, 64]
    %matmul  = matmul(%x, %fc1.weight)            float32[N, 32]
    %reshape = reshape(%h, shape=(N, 256))        float32[N, 256]
    %flat    = reshape(%y, shape=(64*N,))         float32[64*N]

How the symbol is found: :func:`~mlc.graph.trace` runs the model a second time at batch
``N + 1`` and compares the two graphs node by node (*differential tracing*). An integer
that changes by ``a`` between them is ``a*N + c``; one that stays is a constant. The
graph is batch-polymorphic only if both traces have the same ops, inputs and constants;
otherwise (a constant made from the batch, Python control flow on the batch size) it
keeps its concrete shapes and ``g.batch_reason`` says why. A trace at batch 1 usually
gets none: broadcasting a bias of shape ``(1, c)`` to ``(1, c)`` records no op, so the
graph at batch 1 is not the graph at batch 2; trace at batch 2 or more.

``node.shape`` stays the concrete shape at the traced batch (what passes, fusion and
printing use); ``node.sym`` holds the symbolic shape and attributes.
:func:`at_batch` gives the graph at another batch: shapes are *re-inferred* op by op from
the inputs (the op registry's shape rules) and checked against the symbolic ones, so a
node whose shape cannot follow the batch is named in the error.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node


class Dim:
    """``a*N + c``: an extent that follows the batch size ``N``."""

    __slots__ = ("a", "c")

    def __init__(self, a: int, c: int = 0):
        self.a, self.c = int(a), int(c)

    def at(self, n: int) -> int:
        return self.a * int(n) + self.c

    def to_json(self) -> list:
        return [self.a, self.c]

    def __eq__(self, other) -> bool:
        return isinstance(other, Dim) and (self.a, self.c) == (other.a, other.c)

    def __hash__(self) -> int:
        return hash((Dim, self.a, self.c))

    def __repr__(self) -> str:
        s = "N" if self.a == 1 else f"{self.a}*N"
        return s if self.c == 0 else f"{s}{self.c:+d}"


def evaluate(template, n: int):
    """``template`` (a value with :class:`Dim` leaves in tuples/lists/dicts) at batch n."""
    if isinstance(template, Dim):
        return template.at(n)
    if isinstance(template, (tuple, list)):
        return type(template)(evaluate(v, n) for v in template)
    if isinstance(template, dict):
        return {k: evaluate(v, n) for k, v in template.items()}
    return template


def _diff(v1, v2, b1: int, b2: int):
    """The template of a value seen as ``v1`` at batch b1 and ``v2`` at b2, or raise
    ValueError when the two differ other than by an affine integer."""
    if isinstance(v1, (bool, np.bool_)) or isinstance(v2, (bool, np.bool_)):
        if v1 != v2:
            raise ValueError(f"{v1!r} vs {v2!r}")
        return v1
    if isinstance(v1, (int, np.integer)) and isinstance(v2, (int, np.integer)):
        if v1 == v2:
            return int(v1)
        a, r = divmod(int(v2) - int(v1), b2 - b1)
        if r:
            raise ValueError(f"{v1} -> {v2} is not affine in the batch")
        return Dim(a, int(v1) - a * b1)
    if isinstance(v1, (tuple, list)) and isinstance(v2, (tuple, list)) and len(v1) == len(v2):
        return type(v1)(_diff(x, y, b1, b2) for x, y in zip(v1, v2, strict=True))
    if isinstance(v1, dict) and isinstance(v2, dict) and set(v1) == set(v2):
        return {k: _diff(v1[k], v2[k], b1, b2) for k in v1}
    if type(v1) is type(v2) and v1 == v2:
        return v1
    raise ValueError(f"{v1!r} vs {v2!r}")


def symbolic(t) -> bool:
    """Whether ``t`` (a value, tuple, list or dict) holds a :class:`Dim`."""
    if isinstance(t, Dim):
        return True
    if isinstance(t, (tuple, list)):
        return any(symbolic(v) for v in t)
    if isinstance(t, dict):
        return any(symbolic(v) for v in t.values())
    return False


def with_batch_axis(g1: Graph, g2: Graph) -> Graph:
    """``g1`` (traced at batch b1) with the batch axis found by comparing it with ``g2``
    (the same model traced at batch b2); see the module docstring. Sets ``node.sym`` on
    every node that depends on the batch, or ``g1.batch_reason`` when none is possible."""
    b1, b2 = g1.inputs[0].shape[0], g2.inputs[0].shape[0]
    try:
        if len(g1.nodes) != len(g2.nodes):
            raise ValueError(f"{len(g1.nodes)} nodes at batch {b1}, {len(g2.nodes)} at {b2}")
        pos = {n: i for i, n in enumerate(g2.nodes)}
        pos1 = {n: i for i, n in enumerate(g1.nodes)}
        syms = []
        for n1, n2 in zip(g1.nodes, g2.nodes, strict=True):
            where = f"%{n1.name} ({n1.op})"
            if n1.op != n2.op or n1.dtype != n2.dtype or len(n1.inputs) != len(n2.inputs) or \
                    [pos1[x] for x in n1.inputs] != [pos[x] for x in n2.inputs]:
                raise ValueError(f"{where} is not the same op at batch {b2}")
            if n1.op == "constant" and not (n1.shape == n2.shape and
                                            np.array_equal(n1.value, n2.value)):
                raise ValueError(f"constant %{n1.name} differs between the traces at batch "
                                 f"{b1} and {b2}: it depends on the batch size, or forward "
                                 "makes it afresh each call")
            try:
                shape = _diff(n1.shape, n2.shape, b1, b2)
                attrs = _diff(n1.attrs, n2.attrs, b1, b2)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            syms.append((shape, {k: v for k, v in attrs.items() if symbolic(v)})
                        if symbolic(shape) or symbolic(attrs) else None)
        if [pos1[x] for x in g1.outputs] != [pos[x] for x in g2.outputs]:
            raise ValueError("the outputs differ")
    except ValueError as e:
        # at batch 1 a broadcast of a bias to (1, c) is no op, so the tape records none
        hint = "; trace at batch 2 or more to get one" if b1 == 1 else ""
        g1.batch_reason = f"no batch axis: {e}{hint}"
        return g1
    for n, s in zip(g1.nodes, syms, strict=True):
        n.sym = s
    return g1


def sym_shape(node) -> tuple:
    """The node's shape with the batch symbol (``(Dim N, 64)``), or its concrete shape."""
    return node.sym[0] if node.sym is not None else node.shape


def batch_size(g) -> int | None:
    """The batch the graph's concrete shapes are at, or None when it has no batch axis."""
    for n in g.inputs:
        if n.sym is not None and isinstance(n.sym[0][0], Dim):
            return n.shape[0]
    return None


def batch_of(g, arrays) -> int | None:
    """The batch size of ``arrays`` for graph ``g``'s inputs (checked against every
    symbolic input's batch axis); None when the graph has no batch axis."""
    if batch_size(g) is None:
        return None
    sizes = {}
    for n, a in zip(g.inputs, arrays, strict=True):
        if n.sym is not None and np.ndim(a) >= 1:
            sizes[n.name] = int(np.shape(a)[0])
    if len(set(sizes.values())) > 1:
        raise ValueError("the inputs disagree on the batch size (axis 0): " +
                         ", ".join(f"%{k}: {v}" for k, v in sizes.items()))
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"batch size (axis 0 of the inputs) must be at least 1, got {n}")
    return n


def check_shape(node, shape) -> None:
    """Raise a ``ValueError`` naming the axis when ``shape`` is not a shape of input
    ``node`` (any size on the batch axis)."""
    want, shape = sym_shape(node), tuple(int(s) for s in shape)
    if len(shape) != len(want):
        raise ValueError(f"input %{node.name}: expected shape {_fmt(want)} ({len(want)} "
                         f"axes), got {shape} ({len(shape)} axes)")
    for k, (w, got) in enumerate(zip(want, shape, strict=True)):
        if not isinstance(w, Dim) and w != got:
            raise ValueError(f"input %{node.name}: expected shape {_fmt(want)}, got {shape}: "
                             f"axis {k} is {got}, expected {w}" +
                             (" (axis 0 is the batch axis N, any size)"
                              if isinstance(want[0], Dim) else ""))


def infer(op, shapes, dtypes, attrs) -> tuple[tuple, str]:
    """``(shape, dtype)`` of ``op`` on inputs of ``shapes``/``dtypes``: the op registry's
    rule (the one place this module and :mod:`.serialize` ask it)."""
    from .ops import infer as registry_infer

    return registry_infer(op, shapes, dtypes, attrs)


def at_batch(g: Graph, n: int) -> Graph:
    """Graph ``g`` with batch ``n``: a new graph (the same when n is its batch), every
    shape re-inferred from the inputs and checked against its symbolic shape."""
    b = batch_size(g)
    if b is None:
        raise ValueError(getattr(g, "batch_reason", None) or "the graph has no batch axis")
    if n == b:
        return g
    new: dict = {}
    for x in g.nodes:
        ins = [new[i] for i in x.inputs]
        attrs = dict(x.attrs)
        if x.sym is not None:
            attrs.update(evaluate(x.sym[1], n))
        if x.is_leaf:
            shape = evaluate(sym_shape(x), n)
        else:
            shape, _ = infer(x.op, [i.shape for i in ins], [i.dtype for i in ins], attrs)
            want = evaluate(sym_shape(x), n) if x.sym is not None else None
            if want is not None and tuple(want) != tuple(shape):
                raise ValueError(f"%{x.name} ({x.op}) at batch {n}: inferred shape {shape}, "
                                 f"expected {tuple(want)} ({_fmt(sym_shape(x))})")
        m = Node(x.op, ins, attrs, shape, x.dtype, x.name, x.value)
        m.sym = x.sym
        new[x] = m
    out = Graph([new[x] for x in g.nodes], [new[x] for x in g.inputs],
                [new[x] for x in g.outputs])
    return out


def _fmt(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def signature(node) -> str:
    """``float32[N, 64]``: the node's type with the batch symbol."""
    return f"{node.dtype}{_fmt(sym_shape(node))}"

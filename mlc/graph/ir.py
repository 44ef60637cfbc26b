"""The graph IR: a model as a dataflow graph of tensor operators.

A :class:`Graph` is a list of :class:`Node` s in *topological order* (every node comes
after the nodes it reads), plus which nodes are the graph's inputs and outputs. Each
node is one operator application::

    %x           = input                                  float32[8, 64]
    %fc.weight   = constant                               float32[64, 10]
    %matmul_0    = matmul(%x, %fc.weight)                 float32[8, 10]
    %relu_1      = relu(%matmul_0)                        float32[8, 10]

``node.op`` is the operator's name (the lowercase ``mlc.ops`` name: ``"add"``,
``"summation"``, ``"matmul"``, ...), ``node.attrs`` its attributes (``axes``, ``shape``,
``scalar``, ...), ``node.inputs`` the nodes it reads, ``node.shape`` and ``node.dtype``
what it produces. Two kinds of node read nothing: ``"input"`` (supplied at each call)
and ``"constant"`` (a value fixed when the graph was made: a model's parameters and
buffers; ``node.value`` holds it as a numpy array).

Unlike the autodiff tape a graph records *no values* for op nodes and no gradients: it
is a program, which is what a compiler wants to rewrite (``passes``), cut into kernels
(``fuse``) and generate code for (``lower``). A graph is treated as a value: passes
build new graphs and never change the one they are given.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

LEAF_OPS = ("input", "constant")


class Node:
    """One operator application (or an input / constant) in a :class:`Graph`."""

    # ``sym``: None, or (shape, attrs) with the batch symbol (see :mod:`mlc.graph.symbolic`)
    __slots__ = ("name", "op", "inputs", "attrs", "shape", "dtype", "value", "sym")

    def __init__(self, op: str, inputs: Sequence["Node"] = (), attrs: dict | None = None,
                 shape: Sequence[int] = (), dtype: str = "float32", name: str | None = None,
                 value: np.ndarray | None = None, sym=None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs or {})
        self.shape = tuple(int(s) for s in shape)
        self.dtype = str(dtype)
        self.name = name or op
        self.value = value
        self.sym = sym

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def signature(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    def __repr__(self) -> str:
        return f"Node(%{self.name} = {self.op}, {self.signature()})"


def format_attr(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v)


class Graph:
    """A dataflow graph: ``nodes`` in topological order, ``inputs`` and ``outputs``.

    ``Graph(nodes, inputs, outputs)`` checks the order (each node's inputs come earlier)
    and makes node names unique. ``g.params`` lists the constant nodes, ``g.users()``
    maps each node to the nodes that read it.
    """

    def __init__(self, nodes: Iterable[Node], inputs: Sequence[Node], outputs: Sequence[Node]):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        seen = set()
        for n in self.nodes:
            for x in n.inputs:
                if id(x) not in seen:
                    raise ValueError(f"graph is not in topological order: %{n.name} reads "
                                     f"%{x.name}, which does not come before it")
            seen.add(id(n))
        for n in list(self.inputs) + list(self.outputs):
            if id(n) not in seen:
                raise ValueError(f"%{n.name} is an input or output but not a node of the graph")
        for n in self.inputs:
            if n.op != "input":
                raise ValueError(f"graph input %{n.name} must be an 'input' node, not {n.op}")
        _unique_names(self.nodes)

    # -- queries -------------------------------------------------------------------------
    @property
    def params(self) -> list[Node]:
        """The constant nodes (parameters, buffers and other fixed values)."""
        return [n for n in self.nodes if n.op == "constant"]

    @property
    def ops(self) -> list[Node]:
        """The operator nodes (everything but inputs and constants)."""
        return [n for n in self.nodes if not n.is_leaf]

    def users(self) -> dict[Node, list[Node]]:
        """``{node: [nodes that read it, in order]}`` (a node read twice is listed once)."""
        out: dict = {n: [] for n in self.nodes}
        for n in self.nodes:
            for x in dict.fromkeys(n.inputs):
                out[x].append(n)
        return out

    def node(self, name: str) -> Node:
        """The node called ``name`` (with or without the leading ``%``)."""
        name = name.lstrip("%")
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named %{name}; nodes are "
                       f"{', '.join('%' + n.name for n in self.nodes)}")

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    # -- printing ------------------------------------------------------------------------
    def __str__(self) -> str:
        args = ", ".join(f"%{n.name}: {n.signature()}" for n in self.inputs)
        lines = [f"graph({args}) {{"]
        rows = []
        for n in self.nodes:
            if n.op == "input":
                continue
            if n.op == "constant":
                rhs = "constant"
            else:
                parts = [f"%{x.name}" for x in n.inputs]
                parts += [f"{k}={format_attr(v)}" for k, v in n.attrs.items()]
                rhs = f"{n.op}({', '.join(parts)})"
            rows.append((f"%{n.name} = {rhs}", n.signature()))
        width = min(max((len(a) for a, _ in rows), default=0), 60)
        lines += [f"  {a.ljust(width)}  # {b}" for a, b in rows]
        outs = ", ".join(f"%{n.name}" for n in self.outputs)
        lines += [f"  return {outs}" if len(self.outputs) == 1 else f"  return ({outs})", "}"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Graph: {len(self.inputs)} inputs, {len(self.params)} constants, "
                f"{len(self.ops)} ops, {len(self.outputs)} outputs>")

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows the text form
        p.text(str(self))

    def draw(self, ax=None, fused=None):
        """Draw the graph with matplotlib (see :func:`mlc.graph.draw.draw`)."""
        from .draw import draw

        return draw(self, ax=ax, fused=fused)

    # -- rewriting -----------------------------------------------------------------------
    def copy(self) -> "Graph":
        return rewrite(self)


def _unique_names(nodes: Sequence[Node]) -> None:
    used: set = set()
    for n in nodes:
        base = n.name or n.op
        name, k = base, 1
        while name in used:
            name = f"{base}_{k}"
            k += 1
        n.name = name
        used.add(name)


def identifier(name: str) -> str:
    """``name`` as a Python identifier (for buffer and kernel names)."""
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else f"t_{s}"


def rewrite(g: Graph, fn=None, outputs: Sequence[Node] | None = None) -> Graph:
    """A new graph with fresh nodes, made by walking ``g`` in order.

    For each node, ``fn(node, new_inputs)`` may return a node to use instead (built from
    ``new_inputs``, the already-rewritten inputs) or ``None`` to copy the node as it is.
    Only what the outputs still need is kept (plus every input, which stays part of the
    calling convention). ``outputs`` (old nodes) replaces the graph's outputs.
    """
    new: dict = {}
    for n in g.nodes:
        ins = [new[x] for x in n.inputs]
        out = fn(n, ins) if fn is not None else None
        if out is None:
            out = Node(n.op, ins, n.attrs, n.shape, n.dtype, n.name, n.value, n.sym)
        new[n] = out
    outs = [new[n] for n in (outputs if outputs is not None else g.outputs)]
    ins = [new[n] for n in g.inputs]
    return Graph(topo_sort(outs, ins), ins, outs)


def topo_sort(outputs: Sequence[Node], inputs: Sequence[Node] = ()) -> list[Node]:
    """Every node the outputs depend on (and the inputs), each after what it reads."""
    order, state = [], {}
    for root in list(inputs) + list(outputs):
        stack = [(root, 0)]
        while stack:
            n, i = stack.pop()
            if state.get(n) == 2:
                continue
            if i == 0:
                state[n] = 1
            if i < len(n.inputs):
                stack.append((n, i + 1))
                x = n.inputs[i]
                if state.get(x) != 2:
                    if state.get(x) == 1:
                        raise ValueError(f"graph has a cycle through %{x.name}")
                    stack.append((x, 0))
            else:
                state[n] = 2
                order.append(n)
    return order


class GraphBuilder:
    """Write a graph by hand, one op per call (shapes are inferred)::

        b = GraphBuilder()
        x = b.input((4, 8), name="x")
        w = b.constant(np.ones((8, 2), "float32"), name="w")
        y = b.op("relu", b.op("matmul", x, w))
        g = b.graph(y)
    """

    def __init__(self):
        self.nodes: list[Node] = []
        self.inputs: list[Node] = []

    def input(self, shape, dtype: str = "float32", name: str = "x") -> Node:
        n = Node("input", (), {}, shape, dtype, name)
        self.nodes.append(n)
        self.inputs.append(n)
        return n

    def constant(self, value, name: str = "const", dtype: str | None = None) -> Node:
        arr = np.asarray(value, dtype=dtype or getattr(value, "dtype", "float32"))
        n = Node("constant", (), {}, arr.shape, str(arr.dtype), name, arr)
        self.nodes.append(n)
        return n

    def op(self, op: str, *inputs: Node, name: str | None = None, **attrs) -> Node:
        from .ops import infer

        shape, dtype = infer(op, [x.shape for x in inputs], [x.dtype for x in inputs], attrs)
        n = Node(op, inputs, attrs, shape, dtype, name or op)
        self.nodes.append(n)
        return n

    def graph(self, *outputs: Node) -> Graph:
        return Graph(self.nodes, self.inputs, outputs)

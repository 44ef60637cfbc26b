"""``graph.Program``: the one representation of a model after fusion.

Fusion says which ops share a kernel; everything after it (lowering, memory planning,
running, saving) needs the same facts about each kernel: which tensors it reads and
which it writes. A :class:`Program` computes them once::

    prog = graph.lower(graph.fuse(g), target="cpu")
    for s in prog.steps:                      # in execution order
        s.name, s.nodes, s.reads, s.writes, s.kernel
    prog.tensors                              # what the steps write (each a graph Node)
    prog.offsets                              # None, or {tensor: byte offset} after planning

    graph(%x: float32[8, 64]) ...             # the steps of a small MLP:
    step 0  k0_matmul_add_relu   reads %x, %fc1.weight, %fc1.bias    writes %relu
    step 1  k1_matmul_add        reads %relu, %fc2.weight, %fc2.bias writes %add_1

A tensor is a graph :class:`~mlc.graph.ir.Node` (it has ``name``, ``shape``, ``dtype``,
``nbytes``): the values inside a step live in registers and are no tensors of the
program. A step that only reshapes a tensor is a **view**: it runs no kernel, its output
is the same bytes seen with another shape (``step.view_of``), and a memory plan gives it
its source's offset instead of bytes of its own.

``Program.of(x)`` turns a Graph (one step per op), a FusedGraph (one step per group) or
an Executable into a Program without compiling; :func:`lower` compiles each step's
kernel. A program is a value: planning (``memory.assign``) returns a new one.
"""

from __future__ import annotations

from .. import ndarray as nd
from .ir import identifier
from .ops import reference
from .pattern import pattern


class Kernel:
    """One compiled group: ``name``, its ``nodes``, the nodes it reads (``inputs``) and
    writes (``outputs``), the built ``module`` (None for an opaque op) and ``source``."""

    def __init__(self, name, nodes, inputs, outputs, module, entry, source, lowered=None):
        self.name, self.nodes, self.inputs, self.outputs = name, nodes, inputs, outputs
        self.module, self.entry, self.source, self.lowered = module, entry, source, lowered

    @property
    def func(self):
        """The scheduled PrimFunc (None for an opaque op)."""
        return self.lowered.func if self.lowered is not None else None

    def __repr__(self):
        return f"Kernel({self.name}: {', '.join('%' + n.name for n in self.nodes)})"


class Step:
    """One step of a :class:`Program`: the graph ``nodes`` it computes, the tensors it
    ``reads`` (from outside the step, leaves included) and ``writes``, its compiled
    ``kernel`` (None before :func:`lower`, and for a view) and ``view_of`` (the tensor a
    view step re-shapes, else None)."""

    __slots__ = ("name", "nodes", "reads", "writes", "kernel", "view_of")

    def __init__(self, name, nodes, reads, writes, kernel=None, view_of=None):
        self.name, self.nodes = name, tuple(nodes)
        self.reads, self.writes = tuple(reads), tuple(writes)
        self.kernel, self.view_of = kernel, view_of

    def signature(self) -> tuple:
        """What a memory plan depends on: the tensors read and written, with their types."""
        return (tuple(t.name for t in self.reads),
                tuple((t.name, t.shape, t.dtype) for t in self.writes))

    def __repr__(self):
        r = ", ".join("%" + t.name for t in self.reads)
        w = ", ".join("%" + t.name for t in self.writes)
        kind = " (view)" if self.view_of is not None else ""
        return f"Step({self.name}{kind}: reads {r}; writes {w})"


def group_io(nodes, graph_outputs, users) -> tuple[list, list]:
    """``(reads, writes)`` of a group of nodes: the values it reads from outside (in
    order of first use) and its values read outside it, returned by the graph, or read
    by nobody (a dead value is still computed, so it needs its bytes)."""
    inside = set(nodes)
    reads: dict = {}
    for n in nodes:
        for x in n.inputs:
            if x not in inside:
                reads[x] = None
    outs = {id(n) for n in graph_outputs}
    writes = [n for n in nodes if id(n) in outs or not users[n]
              or any(u not in inside for u in users[n])]
    return list(reads), writes


def step_name(nodes, i) -> str:
    ops = list(dict.fromkeys(n.op for n in nodes))
    return f"k{i}_" + "_".join(ops[:4]) + ("_etc" if len(ops) > 4 else "")


def _is_view(nodes, writes) -> bool:
    """A lone reshape: its output is its (compact) input's bytes under another shape."""
    return len(nodes) == 1 and nodes[0].op == "reshape" and list(writes) == [nodes[0]] and \
        nodes[0].inputs[0].dtype == nodes[0].dtype


class Program:
    """Ordered steps over typed tensors; see the module docstring.

    ``graph`` is the graph the nodes belong to, ``target`` the target the kernels were
    built for (None before lowering), ``fused`` the FusedGraph it came from (if any),
    ``offsets``/``arena_bytes``/``plan`` set by planning (``memory.assign``).
    """

    def __init__(self, graph, steps, target=None, fused=None, offsets=None, arena_bytes=0,
                 plan=None):
        self.graph, self.steps, self.target, self.fused = graph, list(steps), target, fused
        self.offsets = dict(offsets) if offsets is not None else None
        self.arena_bytes, self.plan = int(arena_bytes), plan
        self.tensors = list(dict.fromkeys(t for s in self.steps for t in s.writes))
        self.inputs, self.outputs = list(graph.inputs), list(graph.outputs)

    # -- making one ----------------------------------------------------------------------
    @classmethod
    def of(cls, x) -> "Program":
        """A Program of ``x`` (Graph: one step per op; FusedGraph: one per group;
        Executable or Program: its own), without compiling anything."""
        from .executor import Executable
        from .fuse import FusedGraph
        from .ir import Graph

        if isinstance(x, Program):
            return x
        if isinstance(x, Executable):
            return x.program
        if isinstance(x, FusedGraph):
            return cls.from_groups(x.graph, x.groups, fused=x)
        if isinstance(x, Graph):
            return cls.from_groups(x, [[n] for n in x.ops])
        raise TypeError(f"expected a Graph, FusedGraph, Program or Executable, got "
                        f"{type(x).__name__}")

    @classmethod
    def from_groups(cls, graph, groups, fused=None, kernel_names: bool = False) -> "Program":
        """One step per group of nodes (kernel names ``k{i}_ops`` when ``fused`` or
        ``kernel_names``, else a lone node's name)."""
        users = graph.users()
        steps = []
        for i, nodes in enumerate(groups):
            reads, writes = group_io(nodes, graph.outputs, users)
            view = nodes[0].inputs[0] if _is_view(nodes, writes) else None
            name = step_name(nodes, i) if len(nodes) > 1 or fused is not None or \
                kernel_names else nodes[0].name
            steps.append(Step(name, nodes, reads, writes, view_of=view))
        return cls(graph, steps, fused=fused)

    def replace(self, **changes) -> "Program":
        """A copy with some fields changed (``steps``, ``target``, ``offsets``, ...)."""
        fields = dict(graph=self.graph, steps=self.steps, target=self.target,
                      fused=self.fused, offsets=self.offsets, arena_bytes=self.arena_bytes,
                      plan=self.plan)
        fields.update(changes)
        return Program(**fields)

    def at_batch(self, n: int) -> "Program":
        """The same steps at batch size ``n`` (see :mod:`mlc.graph.symbolic`): the graph
        specialised, each step's kernel lowered again when this program was lowered (a
        kernel's loop extents are compile-time constants), no memory plan."""
        from .symbolic import at_batch, batch_size

        if batch_size(self.graph) == n:
            return self
        g = at_batch(self.graph, n)
        new = dict(zip(self.graph.nodes, g.nodes, strict=True))
        steps = [Step(s.name, [new[x] for x in s.nodes], [new[x] for x in s.reads],
                      [new[x] for x in s.writes],
                      view_of=new[s.view_of] if s.view_of is not None else None)
                 for s in self.steps]
        prog = Program(g, steps, fused=self.fused)
        return lower(prog, self.target) if self.target is not None else prog

    # -- queries -------------------------------------------------------------------------
    @property
    def batch(self) -> int | None:
        """The batch size of this program's shapes (None: the graph has no batch axis)."""
        from .symbolic import batch_size

        return batch_size(self.graph)

    @property
    def planned(self) -> bool:
        return self.offsets is not None

    @property
    def kernels(self) -> list:
        """The compiled kernels, in order (views run none)."""
        return [s.kernel for s in self.steps if s.kernel is not None]

    def difference(self, other, other_name: str = "the other",
                   fits: bool = False) -> str | None:
        """``None`` when ``other`` has the same steps (reads, writes, shapes, dtypes;
        with ``fits``, each tensor here at most as big as there: a plan made at a larger
        batch); otherwise a sentence saying the first thing that differs."""
        a, b = self.steps, other.steps
        if len(a) != len(b):
            return f"this program has {len(a)} steps, {other_name} {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            (xr, xw), (yr, yw) = x.signature(), y.signature()
            if fits and xr == yr and [(n, d) for n, _, d in xw] == [(n, d) for n, _, d in yw] \
                    and all(t.nbytes <= u.nbytes for t, u in zip(x.writes, y.writes, strict=True)):
                continue
            if x.signature() == y.signature():
                continue
            if xr != yr:
                return (f"step {i} ({x.name}) reads {', '.join('%' + n for n in xr)}; "
                        f"in {other_name} it reads {', '.join('%' + n for n in yr)}")
            return (f"step {i} ({x.name}) writes {_types(xw)}; in {other_name} it writes "
                    f"{_types(yw)}")
        return None

    def __len__(self) -> int:
        return len(self.steps)

    def __str__(self) -> str:
        head = f"Program: {len(self.steps)} steps, {len(self.tensors)} tensors"
        if self.target:
            head += f", target {self.target!r}"
        if self.planned:
            head += f", arena {self.arena_bytes} B"
        lines = [head]
        for i, s in enumerate(self.steps):
            w = ", ".join(f"%{t.name}: {t.signature()}" + (
                f" @{self.offsets[t]}" if self.planned and t in self.offsets else "")
                for t in s.writes)
            r = ", ".join("%" + t.name for t in s.reads)
            kind = "view " if s.view_of is not None else ""
            lines.append(f"  {i:>3} {kind}{s.name}({r}) -> {w}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Program: {len(self.steps)} steps, {len(self.tensors)} tensors"
                + (f", arena {self.arena_bytes} B" if self.planned else "") + ">")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def _types(ws) -> str:
    return ", ".join(f"%{n}: {d}{list(s)}" for n, s, d in ws)


def _opaque_entry(node):
    from .ops import opdef

    extern = opdef(node.op).extern
    if getattr(extern, "bind", None) is not None:    # bound once: (*inputs, out) per call
        return extern.bind(node)
    if extern is not None:         # a library kernel: numpy in, numpy out
        def call(*arrays):
            args = [a.reshape(x.shape) for a, x in zip(arrays[:-1], node.inputs, strict=True)]
            arrays[-1][...] = extern(node, *args).reshape(arrays[-1].shape)
        return call

    def run(*arrays):
        dev = nd.cpu_numpy()
        args = [nd.array(a.reshape(x.shape), dtype=x.dtype, device=dev)
                for a, x in zip(arrays[:-1], node.inputs, strict=True)]
        arrays[-1][...] = reference(node.op, node.attrs, *args).numpy().reshape(arrays[-1].shape)
    return run


def compile_step(step, target, schedules=None) -> Kernel | None:
    """The kernel of ``step`` for ``target`` (None for a view): an opaque op calls its
    extern kernel, or else its reference (as a compiler calls a library); any other group
    is lowered through ``te`` to one PrimFunc and built."""
    from ..codegen import build as tir_build
    from .lower import lower_group

    if step.view_of is not None:
        return None
    nodes, ins, outs = list(step.nodes), list(step.reads), list(step.writes)
    if len(nodes) == 1 and pattern(nodes[0]) == "opaque":
        return Kernel(step.name, nodes, ins, outs, None, _opaque_entry(nodes[0]), None)
    low = lower_group(nodes, ins, outs, name=identifier(step.name), target=target,
                      tuned=schedules)
    mod = tir_build(low.func, target=target)
    entry = mod if target == "cuda" else mod.entry
    return Kernel(step.name, nodes, ins, outs, mod, entry, mod.source, low)


def lower(fg, target: str = "cpu", schedules=None) -> Program:
    """The :class:`Program` of fused graph ``fg`` (or of a Graph: a kernel per op, or of
    an unlowered Program) with every step's kernel compiled for ``target``."""
    from ..codegen import TARGETS

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    prog = Program.of(fg)
    steps = [Step(s.name, s.nodes, s.reads, s.writes, compile_step(s, target, schedules),
                  s.view_of) for s in prog.steps]
    return prog.replace(steps=steps, target=target)

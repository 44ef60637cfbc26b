"""Arena execution: every intermediate tensor of a built graph is a view into one buffer.

The plain executor gives each tensor its own buffer (the naive plan). Here one arena of
``plan.arena_bytes`` is allocated once, when the executable is made, and each tensor is
a numpy view of its bytes ``arena[offset : offset + nbytes]``, shaped and typed; the
kernels never know::

    arena (bytes):  0          1024        2048        3072
                    [ %matmul  ][ %relu    ]                 step 0..1
                    [ %matmul_1 ]                            step 2: reuses %matmul's bytes

    exe = graph.build(g, memory_plan=memory.plan(g))   # or memory.plan(...).bind(exe)
    exe(x)                                             # numpy in, numpy out
    exe.memory_plan.arena_bytes; exe.footprint         # what it holds

What the executable holds, all as counted NDArray buffers on ``nd.cpu()`` (so
``memory.track`` measures it): the weights, one buffer per graph input (each call copies
its arguments in), and the arena. A call allocates nothing more: the outputs live in
the arena and are copied out to fresh numpy arrays. So the measured peak of building
and running it is ``weights + inputs + arena`` exactly (plus what an opaque op, run by
its reference implementation as a library call, allocates for itself).

A plan made for another view of the graph (the unfused graph, before ``build`` folded
constants and fused) does not describe the kernels this executable runs: such a plan is
*re-made* with the same strategy for the executable's own steps, and
``exe.replanned`` says so. Every call overwrites every tensor before reading it, so one
call cannot leak into the next.
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from ..graph import Executable
from ..graph.interpret import check_inputs
from ..graph.lower_ops import te_shape
from .liveness import program
from .plan import PlanError, plan as make_plan, verify


def _same_steps(a, b) -> bool:
    """Whether programs ``a`` and ``b`` run the same steps on tensors of the same names."""
    if len(a.steps) != len(b.steps):
        return False
    for x, y in zip(a.steps, b.steps, strict=True):
        if [t.name for t in x.writes] != [t.name for t in y.writes] or \
                [t.name for t in x.reads] != [t.name for t in y.reads]:
            return False
    return True


def plan_for(exe, plan):
    """``plan`` moved onto the tensors of executable ``exe`` (matched by name), or a new
    plan with the same strategy when ``plan`` was made for other steps.

    Returns ``(plan, replanned)``.
    """
    from .plan import Plan

    prog = program(exe)
    if _same_steps(plan.program, prog):
        by_name = {t.name: t for t in plan.offsets}
        mine = {t: by_name[t.name] for t in prog.tensors}
        if all(mine[t].nbytes == t.nbytes for t in mine):
            moved = Plan(prog, {t: plan.offsets[mine[t]] for t in mine},
                         {t: t.nbytes for t in mine},
                         {t: plan.intervals[mine[t]] for t in mine}, plan.arena_bytes,
                         plan.strategy,
                         {t: next(s for s in mine if mine[s] is plan.inplace[mine[t]])
                          for t in mine if mine[t] in plan.inplace},
                         plan.alignment, {t: plan.storage[mine[t]] for t in mine})
            try:
                verify(moved)
                return moved, False
            except PlanError:
                pass
    return make_plan(exe, plan.strategy, inplace=bool(plan.inplace),
                     alignment=plan.alignment), True


class ArenaExecutable(Executable):
    """A built graph whose intermediates live in one preallocated arena (see above)."""

    def __init__(self, exe, plan, device=None):
        self.graph, self.fused, self.kernel_list, self.target = (
            exe.graph, exe.fused, exe.kernel_list, exe.target)
        self.memory_plan, self.replanned = plan_for(exe, plan)
        self.device = device or nd.cpu()
        p = self.memory_plan
        g = self.graph
        self._slot = {n: i for i, n in enumerate(g.nodes)}
        env: list = [None] * len(g.nodes)
        self._buffers = []            # the counted NDArrays that own all the memory

        def owned(shape, dtype):
            buf = nd.empty(tuple(te_shape(shape)), dtype=dtype, device=self.device)
            self._buffers.append(buf)
            return buf.handle.array.reshape(te_shape(shape))

        for n in g.params:
            env[self._slot[n]] = owned(n.shape, n.dtype)
            env[self._slot[n]][...] = np.asarray(n.value, dtype=n.dtype).reshape(te_shape(n.shape))
        self._inputs = []
        for n in g.inputs:
            env[self._slot[n]] = owned(n.shape, n.dtype)
            self._inputs.append(env[self._slot[n]])
        self.arena = nd.empty((max(p.arena_bytes, 1),), dtype="int8", device=self.device)
        raw = self.arena.handle.array.view(np.uint8)
        for t, off in p.offsets.items():
            view = raw[off:off + t.nbytes].view(t.dtype)
            env[self._slot[t]] = view.reshape(te_shape(t.shape))
        missing = [n.name for k in self.kernel_list for n in k.inputs + k.outputs
                   if env[self._slot[n]] is None]
        if missing:
            raise PlanError(f"arena: no memory for %{missing[0]}")
        self._env = env
        self._steps = [(k.entry, [self._slot[x] for x in k.inputs + k.outputs])
                       for k in self.kernel_list]

    @property
    def footprint(self) -> dict:
        """Bytes held: ``weights``, ``inputs``, ``arena`` and their ``total``."""
        w = sum(n.nbytes for n in self.graph.params)
        i = sum(n.nbytes for n in self.graph.inputs)
        a = self.arena.size
        return {"weights": w, "inputs": i, "arena": a, "total": w + i + a}

    @property
    def bytes_in_place(self) -> int:
        """Bytes of outputs written over a dying input (in-place reuse) per call."""
        return sum(t.nbytes for t in self.memory_plan.inplace)

    def _run(self, inputs):
        for buf, a in zip(self._inputs, inputs, strict=True):
            buf[...] = a.reshape(buf.shape)
        env = self._env
        for entry, slots in self._steps:
            entry(*[env[s] for s in slots])
        return env

    def __call__(self, *inputs):
        arrays = check_inputs(self.graph, inputs, "the executable")
        env = self._run(arrays)
        outs = tuple(np.array(env[self._slot[n]], copy=True).reshape(n.shape)
                     for n in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def __repr__(self):
        p = self.memory_plan
        return (f"<ArenaExecutable: {self.kernels} kernels, target {self.target!r}, arena "
                f"{p.arena_bytes} B ({p.strategy}), lower bound {p.lower_bound} B>")


def build(g, target: str = "cpu", memory_plan="greedy_by_size", inplace: bool = False,
          **build_kwargs) -> ArenaExecutable:
    """``graph.build(g, target, **build_kwargs)`` run inside one arena.

    ``memory_plan`` is a :class:`~mlc.memory.plan.Plan` or a strategy name; a name is
    planned on the executable's own steps (with ``inplace`` reuse when asked).
    """
    from ..graph import build as graph_build

    exe = graph_build(g, target=target, **build_kwargs)
    if isinstance(memory_plan, str):
        memory_plan = make_plan(exe, memory_plan, inplace=inplace)
    return ArenaExecutable(exe, memory_plan)

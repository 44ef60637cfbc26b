"""``graph.build``: compile every fused group and run the kernels in order.

::

    exe = graph.build(g, target="cpu")        # "python" | "cpu" | "cuda"
    y = exe(x)                                 # numpy arrays (or NDArrays) in, numpy out
    exe.kernels                                # how many kernels run per call
    print(exe.source)                          # the generated Python of all of them
    print(exe.profile(x))                      # time per kernel

The executor is the simplest possible runtime, a *graph executor*: a list of steps, each
one compiled kernel and the slots of the arrays it reads and writes. Intermediate arrays
are allocated once, when the executable is built, and reused by every call (each
tensor gets its own buffer: the naive memory plan; ``mlc.memory`` does better); the
outputs are fresh arrays each call. An opaque op runs its reference implementation, as a
compiler would call a library.
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from ..codegen import TARGETS
from ..perf import format_table, timeit
from .fuse import fuse as fuse_graph
from .interpret import check_inputs
from .lower import group_io, lower_group
from .lower_ops import te_shape
from .opdefs import reference
from .passes import eliminate_dead_code, fold_constants
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


def _kernel_name(nodes, i) -> str:
    ops = []
    for n in nodes:
        if n.op not in ops:
            ops.append(n.op)
    return f"k{i}_" + "_".join(ops[:4]) + ("_etc" if len(ops) > 4 else "")


def _opaque_entry(node):
    def run(*arrays):
        dev = nd.cpu_numpy()
        args = [nd.array(a.reshape(x.shape), dtype=x.dtype, device=dev)
                for a, x in zip(arrays[:-1], node.inputs, strict=True)]
        arrays[-1][...] = reference(node.op, node.attrs, *args).numpy().reshape(arrays[-1].shape)
    return run


class Executable:
    """What :func:`build` returns: call it like the model."""

    def __init__(self, graph, fused, kernels, target):
        self.graph, self.fused, self.kernel_list, self.target = graph, fused, kernels, target
        self._slot = {n: i for i, n in enumerate(graph.nodes)}
        env = [None] * len(graph.nodes)
        for n in graph.params:
            env[self._slot[n]] = np.ascontiguousarray(n.value, dtype=n.dtype).reshape(
                te_shape(n.shape))
        outs = {id(n) for n in graph.outputs}
        for k in kernels:
            for n in k.outputs:
                if id(n) not in outs:
                    env[self._slot[n]] = np.empty(te_shape(n.shape), dtype=n.dtype)
        self._env = env
        self._steps = [(k.entry, [self._slot[x] for x in k.inputs + k.outputs]) for k in kernels]
        self._fresh = [(self._slot[n], te_shape(n.shape), n.dtype) for n in
                       dict.fromkeys(graph.outputs) if not n.is_leaf]

    @property
    def kernels(self) -> int:
        """The number of kernels one call runs."""
        return len(self.kernel_list)

    @property
    def source(self) -> str:
        """The generated source of every kernel, in execution order."""
        parts = []
        for k in self.kernel_list:
            head = f"# ---- {k.name}: {', '.join('%' + n.name for n in k.nodes)}"
            parts.append(head + "\n" + (k.source or "# opaque: calls the reference op\n"))
        return "\n".join(parts)

    def _run(self, inputs):
        env = list(self._env)
        for n, a in zip(self.graph.inputs, inputs, strict=True):
            env[self._slot[n]] = np.ascontiguousarray(a).reshape(te_shape(n.shape))
        for slot, shape, dtype in self._fresh:
            env[slot] = np.empty(shape, dtype=dtype)
        for entry, slots in self._steps:
            entry(*[env[s] for s in slots])
        return env

    def __call__(self, *inputs):
        arrays = check_inputs(self.graph, inputs, "the executable")
        env = self._run(arrays)
        outs = tuple(np.array(env[self._slot[n]], copy=n.is_leaf).reshape(n.shape)
                     for n in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def profile(self, *inputs, repeat: int = 5, min_time: float = 0.05) -> "ProfileReport":
        """Time each kernel on ``inputs`` (median of ``repeat`` rounds, ``mlc.perf.timeit``)."""
        arrays = check_inputs(self.graph, inputs, "profile")
        env = self._run(arrays)
        rows = []
        for k, (entry, slots) in zip(self.kernel_list, self._steps, strict=True):
            args = [env[s] for s in slots]
            t = timeit(lambda entry=entry, args=args: entry(*args), repeat=repeat,
                       min_time=min_time)
            rows.append((k, float(t)))
        return ProfileReport(rows)

    def __repr__(self):
        return (f"<Executable: {self.kernels} kernels, target {self.target!r}, "
                f"policy {self.fused.policy.name!r}>")


class ProfileReport(list):
    """``[(kernel, seconds), ...]`` that prints as a table (kernel, ops, pattern, time, %)."""

    @property
    def total(self) -> float:
        return sum(t for _, t in self)

    def __str__(self) -> str:
        tot = self.total or 1.0
        rows = [[k.name, len(k.nodes), max((pattern(n) for n in k.nodes), key=_rank),
                 f"{t * 1e6:.1f}", f"{100 * t / tot:.1f}"] for k, t in self]
        rows.append(["total", sum(len(k.nodes) for k, _ in self), "", f"{self.total * 1e6:.1f}",
                     "100.0"])
        return format_table(rows, ["kernel", "ops", "pattern", "us", "%"])

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def _rank(p):
    from .opdefs import RANK

    return RANK[p]


def build(g, target: str = "cpu", fuse: bool = True, policy="tvm", max_group_size=None,
          memory_plan=None, optimize: bool = True, schedules=None) -> Executable:
    """Compile graph ``g`` for ``target`` into an :class:`Executable`.

    ``fuse=False`` makes one kernel per op; otherwise ``policy`` ("tvm", "epilogue" or a
    :class:`~mlc.graph.fuse.FusionPolicy`) groups them. ``optimize`` first folds constants
    (a weight's reshape is done once, not per call) and drops dead code. ``schedules``
    may map a matmul's ``(n, k, m)`` to a function ``f(sch, block_name)`` (a tuned
    schedule) used instead of the hand schedule. ``memory_plan`` (a plan from
    ``mlc.memory.plan``) runs every intermediate inside one preallocated arena laid out
    by that plan (``plan.bind(exe)``, see :mod:`mlc.memory.arena`); ``None`` gives each
    tensor its own buffer.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if memory_plan is not None and not callable(getattr(memory_plan, "bind", None)):
        raise ValueError(f"graph.build: memory_plan must be a plan made by "
                         f"mlc.memory.plan(...) (or None), got {type(memory_plan).__name__}")
    from .fuse import get_policy

    pol = get_policy(policy if fuse else "none", max_group_size)
    if optimize:
        g = eliminate_dead_code(fold_constants(g))
    fg = fuse_graph(g, pol)
    users = g.users()
    kernels = []
    from ..codegen import build as tir_build

    for i, nodes in enumerate(fg.groups):
        ins, outs = group_io(nodes, g.outputs, users)
        name = _kernel_name(nodes, i)
        if len(nodes) == 1 and pattern(nodes[0]) == "opaque":
            kernels.append(Kernel(name, nodes, ins, outs, None, _opaque_entry(nodes[0]), None))
            continue
        low = lower_group(nodes, ins, outs, name=name, target=target, tuned=schedules)
        mod = tir_build(low.func, target=target)
        entry = mod if target == "cuda" else mod.entry
        kernels.append(Kernel(name, nodes, ins, outs, mod, entry, mod.source, low))
    exe = Executable(g, fg, kernels, target)
    return exe if memory_plan is None else memory_plan.bind(exe)

"""``graph.build``: passes, fusion, lowering, planning, and the one runtime.

::

    exe = graph.build(g, target="cpu")        # "python" | "cpu" | "cuda"
    y = exe(x)                                 # numpy arrays (or NDArrays) in, numpy out
    exe.program                                # the graph.Program it runs
    exe.plan                                   # its memory plan (None: own buffers)
    exe.kernels; print(exe.source)             # kernels per call, their generated Python
    print(exe.profile(x))                      # time per kernel

The pipeline is four pure steps: ``passes`` (graph -> graph), ``fuse`` (graph -> groups),
:func:`~mlc.graph.program.lower` (groups -> a :class:`~mlc.graph.program.Program` of
compiled steps) and, with ``memory_plan``, ``mlc.memory.assign`` (Program -> Program
with every tensor's byte offset).

The :class:`Executable` is the simplest possible runtime, a *graph executor*: a list of
steps, each one compiled kernel and the slots of the arrays it reads and writes. An
unplanned program gives each tensor its own buffer, allocated once and reused by every
call (the outputs are fresh arrays each call). A planned program runs inside one arena:
every tensor is a numpy view of its bytes ``arena[offset : offset + nbytes]``, shaped
and typed; the kernels never know. Then the weights, one buffer per input and the arena
are counted NDArrays (``memory.track`` sees them) and a call allocates nothing more than
the copies of its outputs. A view step (a lone reshape) runs no kernel: its output is its
source re-shaped. Every call overwrites every tensor before reading it, so one call
cannot leak into the next.

The one exception is **state**: an input that an op updates in place (its registry entry
says ``inplace``, as ``cache_write`` does for a KV cache) is a buffer the executable owns
(``exe.state[name]``, zeros at build or the arrays given as ``state=``, shared with another
executable). The caller does not pass it, the op's output is that same buffer, and what
one call writes there the next call reads: a decoder's cache grows by one slot per call
and is never copied.
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from ..perf import format_table, timeit
from .fuse import fuse as fuse_graph, get_policy
from .interpret import check_input, check_inputs
from .ir import Graph
from .lower_ops import te_shape
from .passes import eliminate_dead_code, fold_constants, run_passes
from .pattern import pattern
from .program import Program, lower

__all__ = ["Executable", "ProfileReport", "build"]


class Executable:
    """Runs a :class:`~mlc.graph.program.Program` (see the module docstring).

    ``max_batch``: the batch a planned program's arena is sized for (smaller batches run
    in it; None: each batch gets a plan of its own). ``parent``: the executable of the same
    graph at another batch, whose weights this one uses (and its arena with
    ``share_arena``); :meth:`at_batch` makes these. ``state``: arrays to keep as the state
    inputs (by input name; see the module docstring), e.g. another executable's ``state``.
    """

    def __init__(self, program: Program, device=None, max_batch: int | None = None,
                 parent: "Executable | None" = None, share_arena: bool = False,
                 state: dict | None = None):
        if program.target is None:
            raise ValueError("Executable needs a lowered Program (graph.lower(fg, target))")
        self.program, self.max_batch = program, max_batch
        self.device = device or nd.cpu()
        self._by_batch: dict = {}
        self._seen: dict = {}   # input shapes already checked -> the executable for them
        g = self.graph
        self._slot = {n: i for i, n in enumerate(g.nodes)}
        env: list = [None] * len(g.nodes)
        self._buffers: list = []          # the counted NDArrays that own a planned run's memory
        planned = program.planned
        for n in g.params:
            value = np.ascontiguousarray(n.value, dtype=n.dtype).reshape(te_shape(n.shape))
            if parent is not None:                  # the same weights at another batch
                env[self._slot[n]] = parent._env[self._slot[n]]
            elif planned:
                env[self._slot[n]] = self._owned(n.shape, n.dtype)
                env[self._slot[n]][...] = value
            else:
                env[self._slot[n]] = value
        self._inputs = [self._owned(n.shape, n.dtype) for n in g.inputs] if planned else None
        outs = {id(n) for n in g.outputs}
        self.arena = None
        if planned:
            self.arena = parent.arena if share_arena else nd.empty(
                (max(program.arena_bytes, 1),), dtype="int8", device=self.device)
            raw = self.arena.handle.array.view(np.uint8)
            for t, off in program.offsets.items():
                env[self._slot[t]] = raw[off:off + t.nbytes].view(t.dtype).reshape(
                    te_shape(t.shape))
        aliases = _inplace(g)
        self.state = self._bind_state(aliases, env, state or {})
        self._fresh = []
        for s in program.steps:
            for t in s.writes:
                if planned or s.view_of is not None or t in aliases:
                    continue
                if id(t) in outs:
                    self._fresh.append((self._slot[t], te_shape(t.shape), t.dtype))
                else:
                    env[self._slot[t]] = np.empty(te_shape(t.shape), dtype=t.dtype)
        self._env = env
        self._steps = [(s.kernel.entry if s.kernel else None,
                        [self._slot[x] for x in s.reads + s.writes], te_shape(s.writes[0].shape))
                       for s in program.steps]

    def _bind_state(self, aliases, env, given) -> dict:
        """``{input name: buffer}`` for the inputs updated in place; each op's output is
        its input's buffer (``env`` slots)."""
        state = {}
        for out, src in aliases.items():
            shape = tuple(te_shape(src.shape))
            buf = given.get(src.name)
            if buf is None:
                buf = self._owned(src.shape, src.dtype)
                buf[...] = 0
            elif (not isinstance(buf, np.ndarray) or buf.shape != shape
                  or str(buf.dtype) != src.dtype or not buf.flags.c_contiguous):
                raise ValueError(f"state %{src.name}: expected a C-contiguous {src.dtype} "
                                 f"array of shape {shape}, got {getattr(buf, 'dtype', '')}"
                                 f"{getattr(buf, 'shape', type(buf).__name__)}")
            env[self._slot[src]] = env[self._slot[out]] = state[src.name] = buf
        unknown = set(given) - set(state)
        if unknown:
            raise ValueError(f"state given for {', '.join(sorted(unknown))}, which no op of "
                             f"this graph updates in place (state: {sorted(state) or 'none'})")
        return state

    def _owned(self, shape, dtype):
        buf = nd.empty(tuple(te_shape(shape)), dtype=dtype, device=self.device)
        self._buffers.append(buf)
        return buf.handle.array.reshape(te_shape(shape))

    # -- what it is ----------------------------------------------------------------------
    @property
    def graph(self):
        return self.program.graph

    @property
    def fused(self):
        return self.program.fused

    @property
    def target(self) -> str:
        return self.program.target

    @property
    def plan(self):
        """The memory plan the program was assigned (None: each tensor its own buffer)."""
        return self.program.plan

    @property
    def kernel_list(self) -> list:
        return self.program.kernels

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

    @property
    def footprint(self) -> dict:
        """Bytes held: ``weights``, ``inputs``, ``arena`` (0 when unplanned), ``total``."""
        w = sum(n.nbytes for n in self.graph.params)
        i = sum(n.nbytes for n in self.graph.inputs)
        a = self.arena.size if self.arena is not None else 0
        return {"weights": w, "inputs": i, "arena": a, "total": w + i + a}

    @property
    def bytes_in_place(self) -> int:
        """Bytes of outputs written over a dying input (in-place reuse) per call."""
        return sum(t.nbytes for t in self.plan.inplace) if self.plan is not None else 0

    # -- running -------------------------------------------------------------------------
    def at_batch(self, n: int | None) -> "Executable":
        """This executable at batch size ``n`` (itself at its own batch): the program's
        kernels lowered for ``n`` once and kept. A planned program gets a plan of its own
        with the same strategy (plans sized per batch), or, with ``max_batch`` (a plan
        sized for the largest batch), the same offsets in the same arena."""
        if n is None or n == self.program.batch:
            return self
        if self.state:
            raise ValueError(f"this executable keeps state ({', '.join(self.state)}) sized "
                             f"for batch {self.program.batch}; build another for batch {n}")
        if n not in self._by_batch:
            from .. import memory      # planning is mlc.memory's job

            prog, share, plan = self.program.at_batch(n), False, self.plan
            if plan is not None and self.max_batch is not None:
                if n > self.max_batch:
                    raise ValueError(f"batch {n} is larger than {self.max_batch}, the batch "
                                     "the memory plan was sized for (build with a larger "
                                     "max_batch, or memory_plan as a strategy name)")
                prog, share = memory.assign(prog, plan, fits=True), True
            elif plan is not None:
                prog = memory.assign(prog, memory.plan(prog, plan.strategy,
                                                       inplace=bool(plan.inplace),
                                                       alignment=plan.alignment))
            self._by_batch[n] = Executable(prog, self.device, parent=self, share_arena=share)
        return self._by_batch[n]

    def _checked(self, inputs, what):
        """The inputs as arrays and the executable for their batch size. Shapes already
        seen skip the full check (at batch 1 it cost a third of a small model's call)."""
        if self.state:                  # the caller's inputs checked; the state is ours
            return self._with_state(inputs, what), self
        if all(type(a) is np.ndarray for a in inputs):
            exe = self._seen.get(tuple(a.shape for a in inputs))
            if exe is not None and all(a.dtype == n.dtype
                                       for a, n in zip(inputs, self.graph.inputs, strict=True)):
                return inputs, exe
        from .symbolic import batch_of

        arrays = check_inputs(self.graph, inputs, what)
        exe = self.at_batch(batch_of(self.graph, arrays))
        self._seen[tuple(a.shape for a in arrays)] = exe
        return arrays, exe

    def _with_state(self, inputs, what):
        """The caller's inputs, checked (at the batch the state is sized for), with the
        state buffers put in their places."""
        free = [n for n in self.graph.inputs if n.name not in self.state]
        if len(inputs) != len(free):
            names = ", ".join(f"%{n.name}: {n.signature()}" for n in free)
            raise TypeError(f"{what} takes {len(free)} input(s) ({names}; the state "
                            f"{', '.join(self.state)} is kept inside), got {len(inputs)}")
        it = iter(inputs)
        out = [self.state[n.name] if n.name in self.state else check_input(n, next(it))
               for n in self.graph.inputs]
        for n, a in zip(self.graph.inputs, out, strict=True):
            if n.sym is not None and a.ndim and a.shape[0] != self.program.batch:
                raise ValueError(f"input %{n.name}: batch {a.shape[0]}, but the state "
                                 f"({', '.join(self.state)}) is sized for batch "
                                 f"{self.program.batch}")
        return out

    def _run(self, inputs):
        env = self._env if self.program.planned else list(self._env)
        for k, (n, a) in enumerate(zip(self.graph.inputs, inputs, strict=True)):
            if n.name in self.state:
                continue                            # bound once, updated in place
            if self._inputs is not None:
                self._inputs[k][...] = a.reshape(self._inputs[k].shape)
                env[self._slot[n]] = self._inputs[k]
            else:
                env[self._slot[n]] = np.ascontiguousarray(a).reshape(te_shape(n.shape))
        for slot, shape, dtype in self._fresh:
            env[slot] = np.empty(shape, dtype=dtype)
        for entry, slots, shape in self._steps:
            if entry is None:                       # a view: the source, re-shaped
                env[slots[1]] = env[slots[0]].reshape(shape)
            else:
                entry(*[env[s] for s in slots])
        return env

    def __call__(self, *inputs):
        arrays, exe = self._checked(inputs, "the executable")
        env = exe._run(arrays)
        outs = tuple(np.array(env[exe._slot[n]], copy=True).reshape(n.shape)
                     for n in exe.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def profile(self, *inputs, repeat: int = 5, min_time: float = 0.05) -> "ProfileReport":
        """Time each kernel on ``inputs`` (median of ``repeat`` rounds, ``mlc.perf.timeit``)."""
        arrays, exe = self._checked(inputs, "profile")
        env = exe._run(arrays)
        rows = []
        for s, (entry, slots, _) in zip(exe.program.steps, exe._steps, strict=True):
            if entry is None:
                continue
            args = [env[i] for i in slots]
            t = timeit(lambda entry=entry, args=args: entry(*args), repeat=repeat,
                       min_time=min_time)
            rows.append((s.kernel, float(t)))
        return ProfileReport(rows)

    def save(self, path) -> str:
        """Save into folder ``path`` (see :mod:`mlc.graph.serialize`): the program, the
        target and the plan as JSON, the constants as ``.npz``; no pickle, and
        ``graph.load_executable`` regenerates the kernels instead of running stored code."""
        from .serialize import save_executable

        return save_executable(self, path)

    def __repr__(self):
        p = self.plan
        mem = "" if p is None else (f", arena {p.arena_bytes} B ({p.strategy}), lower bound "
                                    f"{p.lower_bound} B")
        policy = f", policy {self.fused.policy.name!r}" if self.fused is not None else ""
        return f"<Executable: {self.kernels} kernels, target {self.target!r}{policy}{mem}>"


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


def _inplace(g) -> dict:
    """``{op node: the input it updates in place}``; such an input must be a graph input
    read by nothing else (another reader could run after the write and see the new
    value)."""
    from .ops import opdef

    users, out = g.users(), {}
    for n in g.ops:
        k = opdef(n.op).inplace
        if k is None:
            continue
        src = n.inputs[k]
        if src.op != "input" or users[src] != [n] or src in out.values():
            raise ValueError(f"%{n.name} = {n.op} updates %{src.name} in place, so %{src.name} "
                             "must be a graph input that nothing else reads (read the "
                             f"op's output instead)")
        out[n] = src
    return out


def _rank(p):
    from .ops import RANK

    return RANK[p]


def build(g, target: str = "cpu", fuse: bool = True, policy="tvm", max_group_size=None,
          memory_plan=None, optimize: bool = True, schedules=None, passes=None,
          inplace: bool = False, max_batch: int | None = None,
          state: dict | None = None) -> Executable:
    """Compile graph ``g`` for ``target`` into an :class:`Executable`.

    ``passes`` is the pipeline of graph passes to run first (functions Graph -> Graph);
    by default (``optimize=True``) constants are folded (a weight's reshape is done once,
    not per call) and dead code is dropped. ``fuse=False`` makes one kernel per op;
    otherwise ``policy`` ("tvm", "epilogue" or a
    :class:`~mlc.graph.fuse.FusionPolicy`) groups them. ``schedules`` may map a matmul's
    ``(n, k, m)`` to a function ``f(sch, block_name)`` (a tuned schedule) used instead of
    the hand schedule. ``memory_plan`` is None (each tensor its own buffer), a strategy
    name of ``mlc.memory.plan`` ("greedy_by_size", ...; ``inplace`` lets elementwise steps
    write over a dying input) planned on the program this build runs, or a ``Plan`` made
    for exactly these steps (``memory.plan(exe.program)``); a plan made for other steps is
    refused with an error that says what differs.

    A graph with a batch axis (:mod:`mlc.graph.symbolic`) builds once and runs at any
    batch: a call at another batch lowers the same steps for it (kept for the next call)
    and plans them with the same strategy. With ``max_batch`` the program is built and
    planned at that batch and every smaller one runs in the same arena at the same offsets
    (a given ``Plan`` is a plan for its own batch and smaller ones).

    An input that an op updates in place (``cache_write``) is the executable's ``state``:
    zeros, or the arrays of ``state`` (by input name), kept and updated across calls.
    """
    from ..codegen import TARGETS

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if not isinstance(g, Graph):
        raise TypeError(f"graph.build compiles a Graph, not a {type(g).__name__}: trace a "
                        f"model first, g = graph.trace(model, example), then graph.build(g)")
    memory = None
    if memory_plan is not None:
        from .. import memory      # planning is mlc.memory's job (it reads graph.Program)

        if not isinstance(memory_plan, (str, memory.Plan)):
            raise ValueError(f"graph.build: memory_plan must be None, a strategy name or a "
                             f"plan made by mlc.memory.plan(...), got "
                             f"{type(memory_plan).__name__}")
    pol = get_policy(policy if fuse else "none", max_group_size)
    if passes is not None:
        g = run_passes(g, passes, verbose=False)
    elif optimize:
        g = eliminate_dead_code(fold_constants(g))
    if max_batch is not None:
        from .symbolic import at_batch

        g = at_batch(g, int(max_batch))
    prog = lower(fuse_graph(g, pol), target, schedules)
    if memory is None:
        return Executable(prog, state=state)
    if isinstance(memory_plan, str):
        p = memory.plan(prog, memory_plan, inplace=inplace)
    else:
        p, max_batch = memory_plan, memory_plan.program.batch
    return Executable(memory.assign(prog, p), max_batch=max_batch, state=state)

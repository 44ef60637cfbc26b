"""PrimFunc -> Numba-CUDA source for the "cuda" target.

Each top-level loop nest becomes one kernel; its outer loops must be bound to
``blockIdx.*`` (``sch.bind``). Inside a kernel:

* a loop bound to ``blockIdx.x`` becomes ``i = cuda.blockIdx.x`` (the grid has that many
  blocks), a loop bound to ``threadIdx.x`` becomes ``i = cuda.threadIdx.x``; the launch
  uses the largest extent seen per axis, and a loop with a smaller extent is guarded
  (``if i < extent:``);
* code outside every threadIdx loop is *block-level*: each thread-bound loop there starts
  a phase that all threads run together; the threadIdx loops nested directly in it are
  the phase's axes (deeper threadIdx loops are refused). When the kernel has more than
  one block, a ``cuda.syncthreads()`` follows each phase and each block-level block, so
  a phase that fills a shared tile finishes before the next one reads it (and, in a
  loop, before the next iteration refills it);
* a block that writes shared or global memory runs on thread 0 of every thread axis its
  phase does not use (no redundant, racing updates); a block that writes only "local"
  buffers runs on every thread, since each thread owns its copy;
* "shared" buffers become ``cuda.shared.array`` at the kernel's top, "local" ones
  ``cuda.local.array`` (per thread), "global" intermediates are allocated by the host.
"""

from __future__ import annotations

import numpy as np

from ..tir import expr as E
from ..tir.functor import blocks_in, post_order_visit
from ..tir.region import block_accesses, block_writes
from ..tir.stmt import Allocate, Block, For, PrimFunc, children, split_root
from .module import Module
from .pysrc import Emitter

_AXES = ("x", "y", "z")


def _thread_dims(nest) -> dict:
    dims = {}

    def f(n):
        if isinstance(n, For) and n.kind == "thread_binding":
            dims[n.thread_tag] = max(dims.get(n.thread_tag, 1), n.extent)
    post_order_visit(nest, f)
    return dims


def _shared_allocs(nest) -> list:
    out = []
    post_order_visit(nest, lambda n: out.append(n.buffer)
                     if isinstance(n, Allocate) and n.buffer.scope == "shared" else None)
    return out[::-1]  # post-order meets nested allocations inner first


def _bound_loops(stmt) -> list:
    out = []
    post_order_visit(stmt, lambda n: out.append(n)
                     if isinstance(n, For) and n.kind == "thread_binding" else None)
    return out


def block_buffers(blk) -> list:
    return [b for b, _, _ in block_accesses(blk)]


def _phase_tags(loop: For) -> set:
    """The thread axes of a phase: its loop and the thread loops nested directly in it.
    Any other thread loop deeper inside would split the phase in two without a
    synchronisation point between them, so it is refused."""
    tags, s = set(), loop
    while isinstance(s, For) and s.kind == "thread_binding":
        tags.add(s.thread_tag)
        s = s.body
    for lp in _bound_loops(s):
        if lp.thread_tag.startswith("threadIdx"):
            raise ValueError(
                f"cuda target: loop {lp.loop_var.name} is bound to {lp.thread_tag} inside the "
                f"threadIdx loop {loop.loop_var.name} without being its whole body; bind "
                "directly nested loops, or move the loop out into its own phase")
    return tags


class KernelEmitter(Emitter):
    def __init__(self, dims: dict, sync: bool):
        super().__init__("cuda", dtype_fn=lambda d: d)
        self.namer.used |= {f"_{k}{a}" for k in "bt" for a in _AXES}
        self.dims, self.sync = dims, sync
        self.thread_tags = [t for t in dims if t.startswith("threadIdx") and dims[t] > 1]
        self.in_threads = 0  # how many threadIdx loops enclose the current statement
        self.unbound: list = []   # thread axes the current phase does not use
        self.once: set = set()    # buffers written by one thread per unbound axis

    def _sync(self, ind: str) -> None:
        if self.sync:
            self.line(ind, "cuda.syncthreads()")

    def loop(self, s: For, ind: str) -> None:
        if s.kind != "thread_binding":
            return super().loop(s, ind)
        is_thread = s.thread_tag.startswith("threadIdx")
        phase = is_thread and self.in_threads == 0
        if phase:
            tags = _phase_tags(s)
            self.unbound = [t for t in self.thread_tags if t not in tags]
            self.once = set()
        self.namer.push()
        v = self.namer.bind(s.loop_var)
        kind, axis = s.thread_tag.split(".")
        inner = ind
        self.line(inner, f"{v} = _{'b' if kind == 'blockIdx' else 't'}{axis}")
        if s.extent < self.dims[s.thread_tag]:
            self.line(inner, f"if {v} < {s.extent}:")
            inner += "    "
        self.ranges[s.loop_var] = (0, s.extent - 1)
        self.in_threads += is_thread
        self.body(s.body, inner)
        self.in_threads -= is_thread
        del self.ranges[s.loop_var]
        self.namer.pop()
        if phase:
            self.unbound = []
            self._sync(ind)

    def block(self, b: Block, ind: str) -> None:
        """A block runs on every thread when it writes only "local" buffers (each thread
        owns its copy); otherwise on one thread per thread axis it does not use."""
        unbound = self.thread_tags if self.in_threads == 0 else self.unbound
        writes = block_writes(b)
        guard = bool(unbound) and not all(w.scope == "local" for w in writes)
        if self.in_threads and unbound and not guard:
            for x in block_buffers(b):
                if any(x is y for y in self.once):
                    raise ValueError(
                        f"cuda target: block {b.name} runs on every thread but reads "
                        f"{x.name}, which only one thread per {', '.join(unbound)} writes in "
                        "this phase; bind a loop of each block to those axes")
        if not guard:
            super().block(b, ind)
        else:
            if self.in_threads:
                self.once.update(writes)
            n = len(self.lines)
            self.line(ind, "if " + " and ".join(f"_t{t[-1]} == 0" for t in unbound) + ":")
            super().block(b, ind + "    ")
            if all(x.lstrip().startswith("#") for x in self.lines[n + 1:]):
                self.line(ind + "    ", "pass")
        if self.in_threads == 0 and self.thread_tags:
            self._sync(ind)

    def allocate(self, s: Allocate, ind: str) -> None:
        b = s.buffer
        kinds = ("threadIdx", "blockIdx") if b.scope == "local" else ("blockIdx",)
        for lp in _bound_loops(s.body):
            if lp.thread_tag.startswith(kinds) and any(
                    any(x is b for x in block_buffers(blk)) for blk in blocks_in(lp)):
                users = sorted({blk.name for blk in blocks_in(s.body)
                                if any(x is b for x in block_buffers(blk))})
                owner = "thread" if b.scope == "local" else "thread block"
                raise ValueError(
                    f"cuda target: {b.scope} buffer {b.name} is shared between "
                    f"{lp.thread_tag} values (used by blocks {', '.join(users)}), but each "
                    f"{owner} has its own copy; place its producer and consumers under the "
                    f"same {lp.thread_tag} loop (compute_at / reverse_compute_at)"
                    + (" or use scope 'shared'" if b.scope == "local" else ""))
        if b.scope == "local":
            self.line(ind, f"{self.namer(b)} = cuda.local.array({b.shape}, {b.dtype})")
        elif b.scope != "shared":  # shared arrays are declared at the kernel's top
            raise ValueError(f"cuda target: global buffer {b.name} allocated inside a kernel")
        self.stmt(s.body, ind)


def source_dtypes(func: PrimFunc) -> set:
    out = {b.dtype for b in func.params}
    post_order_visit(func.body, lambda n: out.add(n.dtype) if isinstance(n, E.PrimExpr)
                     else None)
    return out


def cuda_source(func: PrimFunc) -> tuple[str, list]:
    """``(source, [(kernel name, grid, block)])`` for a lowered PrimFunc."""
    bufs, inner = split_root(func.body)
    for b in bufs:
        if b.scope != "global":
            users = sorted({blk.name for blk in blocks_in(inner)
                            if any(x is b for x in block_buffers(blk))})
            raise ValueError(
                f"cuda target: {b.scope} buffer {b.name} is used by blocks {', '.join(users)} "
                "in different kernels (or outside any kernel); a " + b.scope + " buffer lives "
                "inside one kernel: move its users under one blockIdx loop (compute_at / "
                "reverse_compute_at) or use scope 'global'")
    kernels, lines = [], []
    host = Emitter("cuda")
    for p in func.params:
        host.namer(p)
    for b in bufs:
        host.namer(b)
    arg_names = [host.namer(b) for b in list(func.params) + bufs]
    for k, nest in enumerate(children(inner)):
        if not (isinstance(nest, For) and nest.kind == "thread_binding"
                and nest.thread_tag.startswith("blockIdx")):
            blks = [b.name for b in blocks_in(nest)]
            what = f"loop {nest.loop_var.name}" if isinstance(nest, For) else "a statement"
            raise ValueError(f"cuda target: {what} (around block(s) {', '.join(blks)}) is not "
                             "bound to blockIdx; bind the outer loops of every nest with "
                             "sch.bind(loop, \"blockIdx.x\") (and inner ones to threadIdx)")
        dims = _thread_dims(nest)
        shared = _shared_allocs(nest)
        # phases talk through shared or global memory: synchronise between them
        em = KernelEmitter(dims, len(blocks_in(nest)) > 1)
        for p in list(func.params) + bufs:
            em.namer(p)
        name = f"{func.name}_kernel{k}"
        em.line("", "@cuda.jit(fastmath=True)")
        em.line("", f"def {name}({', '.join(arg_names)}):")
        for kind in ("blockIdx", "threadIdx"):
            for a in _AXES:
                if f"{kind}.{a}" in dims:
                    em.line("    ", f"_{'b' if kind == 'blockIdx' else 't'}{a} = cuda.{kind}.{a}")
        for b in shared:
            em.line("    ", f"{em.namer(b)} = cuda.shared.array({b.shape}, {b.dtype})")
        em.stmt(nest, "    ")
        grid = tuple(dims.get(f"blockIdx.{a}", 1) for a in _AXES)
        block = tuple(dims.get(f"threadIdx.{a}", 1) for a in _AXES)
        kernels.append((name, grid, block))
        lines += em.lines + ["", ""]
    lines.append(f"def {func.name}({', '.join(host.namer(p) for p in func.params)}):")
    for b in bufs:
        lines.append(f"    {host.namer(b)} = cuda.device_array({b.shape}, dtype=np.{b.dtype})")
    for name, grid, block in kernels:
        lines.append(f"    {name}[{grid}, {block}]({', '.join(arg_names)})")
    lines.append("    cuda.synchronize()")
    dtypes = ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
              "uint32", "uint64"]
    if "float16" in source_dtypes(func):
        dtypes.append("float16")
    header = [f"# generated by mlc.codegen for target \"cuda\" from PrimFunc {func.name}",
              "import math", "import numpy as np", "from numba import cuda",
              f"from numba import {', '.join(dtypes)}", "", ""]
    return "\n".join(header + lines) + "\n", kernels


class CudaModule(Module):
    """A built "cuda" program: arrays are copied to the device, kernels launched, and the
    parameters the program writes copied back."""

    def __init__(self, func, target, source, entry, kernels):
        super().__init__(func, target, source, entry)
        self.kernels = kernels

    def _to_device(self, arrays):
        from numba import cuda

        return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]

    def __call__(self, *args) -> None:
        arrays, write_back = self._prepare(args)
        dev = self._to_device(arrays)
        self.entry(*dev)
        out_ids = {id(p) for p in self.outputs}
        for p, a, d in zip(self.func.params, arrays, dev, strict=True):
            if id(p) in out_ids:
                a[...] = d.copy_to_host()
        for dst, arr in write_back:
            dst[...] = arr

    def time_evaluator(self, number: int | None = None, repeat: int = 5,
                       min_time: float = 0.2):
        """Seconds per run of the kernels (a :class:`mlc.perf.Timing`, the median), on
        arrays copied to the device once, before the clock starts."""
        from ..perf import timeit

        def f(*args):
            arrays, _ = self._prepare(args)
            dev = self._to_device(arrays)
            return timeit(lambda: self.entry(*dev), repeat=repeat, number=number,
                          min_time=min_time)

        return f

"""Lowering: one fused group -> one ``te`` program -> one scheduled ``tir.PrimFunc``.

For a group (a list of nodes, see :mod:`mlc.graph.fuse`) :func:`lower_group`

1. makes a ``te.placeholder`` for every value the group reads from outside (graph
   inputs, constants, other kernels' outputs);
2. writes every node as a ``te.compute`` (:mod:`mlc.graph.lower_ops`) and makes one
   PrimFunc whose parameters are those placeholders and the group's outputs;
3. schedules it: every intermediate that is computed elementwise or by an index map is
   **inlined** (``sch.compute_inline``), so it never exists in memory — the fused kernel's
   loop computes ``relu(x * w + b)`` in registers; then a default schedule per kind of
   group (:func:`default_schedule`).

Reductions inside a group (the "epilogue" policy's softmax) cannot be inlined: they keep a
small buffer of one value per row, computed in the same kernel. Nor is an intrinsic read
twice inside the group (softmax's ``exp(x - max)``, read by the row sum and the division):
inlined, each reader would evaluate it again, so it is kept, one row per thread.
"""

from __future__ import annotations

import math

from .. import te, tir
from ..schedule import ScheduleError
from ..schedule.examples import matmul_hand_schedule
from .ir import identifier
from .lower_matmul import (as_dot, batched_matmul_schedule, divisor_at_most,
                           dot_matmul_te, schedule_dot)
from .lower_ops import te_shape
from .ops import compute_of
from .pattern import pattern

PARALLEL_MIN_WORK = 1 << 21  # below this many loop iterations, waking threads costs more
# Parallelism by kind of work. A memory-bound nest (elementwise, an index map) gains little
# from a second core (one core nearly saturates a laptop's memory bandwidth) and loses 2x
# when the machine is busy (the OpenMP threads wait at the barrier for a descheduled
# one; measured: relu(x*w+b) on 4096x4096, 10.6 ms serial vs 20.7 ms on threads): it runs
# serial unless it is very large. A matmul does k multiply-adds per output from cache:
# threads from 2**24 multiply-adds (about 2 ms on one core). Row reductions (softmax,
# layer norm, with exp and sqrt per element) use PARALLEL_MIN_WORK.
MEMORY_BOUND_PARALLEL_MIN_WORK = 1 << 26
MATMUL_PARALLEL_MIN_WORK = 1 << 24


class LoweredGroup:
    """A group's PrimFunc (``func``, scheduled), the nodes it reads (``inputs``) and
    writes (``outputs``), in the order of the PrimFunc's parameters."""

    def __init__(self, func, schedule, inputs, outputs, nodes, name):
        self.func, self.schedule, self.inputs, self.outputs = func, schedule, inputs, outputs
        self.nodes, self.name = nodes, name

    def __repr__(self):
        return f"LoweredGroup({self.name}: {len(self.nodes)} ops)"


def lower_group(nodes, inputs, outputs, name: str = "kernel", target: str = "cpu",
                tuned: dict | None = None) -> LoweredGroup:
    """Lower the group ``nodes`` reading ``inputs`` and writing ``outputs`` (see above).

    ``tuned`` may map a matmul's shape ``(n, k, m)`` to a ``tir.Schedule`` trace (from
    ``mlc.tune``) to replay instead of the hand schedule.
    """
    tensors: dict = {}
    params = []
    for x in inputs:
        t = te.placeholder(te_shape(x.shape), x.dtype, name=identifier(x.name))
        tensors[x] = t
        params.append(t)
    out_set = set(outputs)
    for n in nodes:
        args = [tensors[x] for x in n.inputs]
        tensors[n] = (dot_matmul_te(*args, identifier(n.name)) if as_dot(n, target)
                      else compute_of(n, args, identifier(n.name)))
    func = te.create_prim_func(params + [tensors[n] for n in outputs], name=identifier(name))
    sch = tir.Schedule(func)
    block_of = {n: func_block_name(sch, tensors[n]) for n in nodes}
    readers = {n: sum(n in m.inputs for m in nodes) for n in nodes}
    for n in nodes:
        if readers[n] > 1 and _calls_intrinsic(tensors[n]):
            continue  # computed once: inlined, every reader would evaluate its exp again
        if n not in out_set and pattern(n) in ("elemwise", "broadcast", "injective"):
            try:
                sch.compute_inline(sch.get_block(block_of[n]))
            except ScheduleError:
                pass
    if target != "cuda":
        for n in outputs:
            if n.op == "reshape" and _has_block(sch, block_of[n]):
                _split_reshape(sch, block_of[n], n.inputs[0].shape, n.shape)
    default_schedule(sch, nodes, outputs, block_of, target, tuned)
    return LoweredGroup(sch.func, sch, inputs, outputs, nodes, name)


def _merge_factors(in_shape, out_shape):
    """For a reshape that only merges runs of adjacent axes, the input extents each output
    axis is made of (``(N, H, W, kh, kw, C) -> (N*H*W, kh*kw*C)`` gives
    ``[[N, H, W], [kh, kw, C]]``); None for any other reshape."""
    ins = [d for d in in_shape if d != 1]
    out, k = [], 0
    for d in out_shape:
        run, prod = [], 1
        while prod < d and k < len(ins):
            run.append(ins[k])
            prod *= ins[k]
            k += 1
        if prod != d:
            return None
        out.append(run)
    return out if k == len(ins) else None


def _split_reshape(sch, name, in_shape, out_shape) -> None:
    """Loop over a reshape's *input* axes: a block writing ``reshape(im2col(x))`` indexes
    its source with ``flat // 576``, ``flat // 72 % 8`` ... per element when its loops run
    over the merged output axes. Splitting each merged output loop into the input axes it
    is made of (``i0 -> n, h, w``) lets the simplifier cancel every ``//`` and ``%``: the
    source index becomes ``x[n, h * s + kh - 1, w * s + kw - 1, c]``. The innermost split
    loop keeps the vectorization and the outermost the parallelism (see ``_cpu_nest``)."""
    runs = _merge_factors(in_shape, out_shape)
    if runs is None or all(len(r) <= 1 for r in runs):
        return
    blk = sch.get_block(name)
    loops = sch.get_loops(blk)
    if len(loops) != len(out_shape):
        return
    before = sch.copy()
    try:
        for lp, run in zip(loops, runs, strict=True):
            if len(run) > 1:
                sch.split(lp, factors=list(run))
    except ScheduleError:
        _restore(sch, before)


def _calls_intrinsic(t) -> bool:
    """Whether the te tensor ``t`` evaluates an intrinsic (``exp``, ``log``, ``erf``, ...)."""
    from ..tir.expr import Call
    from ..tir.functor import post_order_visit

    found = []
    post_order_visit(t.op.body, lambda e: found.append(e) if isinstance(e, Call) else None)
    return bool(found)


def intrinsic_calls(func, name: str = "exp") -> int:
    """How many times one run of the PrimFunc ``func`` evaluates the intrinsic ``name``:
    each store's count times the extents of the loops around it (an ``if`` counts its
    larger branch). ``intrinsic_calls(f, "exp") / n`` is the exps per element of a softmax
    over ``n`` elements: 1 when the kernel keeps ``exp(x - max)``, 2 when it recomputes."""
    from ..tir import stmt as S
    from ..tir.expr import Call
    from ..tir.functor import post_order_visit

    def in_expr(e) -> int:
        found = []
        post_order_visit(e, lambda x: found.append(x) if isinstance(x, Call) and
                         x.op == name else None)
        return len(found)

    def walk(st) -> int:
        if st is None:
            return 0
        if isinstance(st, S.For):
            return st.extent * walk(st.body)
        if isinstance(st, S.SeqStmt):
            return sum(walk(x) for x in st.seq)
        if isinstance(st, S.Block):
            return walk(st.body) + walk(st.init)
        if isinstance(st, S.Allocate):
            return walk(st.body)
        if isinstance(st, S.IfThenElse):
            return max(walk(st.then_case), walk(st.else_case))
        if isinstance(st, S.BufferStore):
            return in_expr(st.value) + sum(in_expr(i) for i in st.indices)
        raise TypeError(f"intrinsic_calls: unexpected statement {type(st).__name__}")
    return walk(func.body)


def func_block_name(sch, t) -> str:
    return t.buffer.name if _has_block(sch, t.buffer.name) else t.name


def _has_block(sch, name) -> bool:
    from ..tir.functor import blocks_in

    return any(b.name == name for b in blocks_in(sch.func.body))


def _blocks(sch):
    from ..tir.functor import blocks_in

    return [b for b in blocks_in(sch.func.body)]


def default_schedule(sch, nodes, outputs, block_of, target, tuned=None) -> None:
    """A schedule per kind of group: matmul groups get the unit 06 hand schedule (or a
    tuned trace) with the epilogue folded into its copy-back; every other loop nest gets
    a parallel outer loop and a vectorized inner loop ("cpu"), or its spatial loops fused
    and bound to GPU blocks and threads ("cuda")."""
    done = set()
    if target != "cuda":
        for n in nodes:
            if n.op == "matmul" and _has_block(sch, block_of[n]):
                done |= _schedule_matmul(sch, n, nodes, outputs, block_of, tuned)
        if not done and any(b.is_reduction for b in _blocks(sch)):
            done |= _fuse_rows(sch)
    for blk in _blocks(sch):
        if blk.name in done:
            continue
        try:
            if target == "cuda":
                _gpu_nest(sch, blk)
            else:
                _cpu_nest(sch, blk)
        except ScheduleError:
            pass


def _cpu_nest(sch, blk) -> None:
    rv = sch.get_block(blk.name)
    loops = sch.get_loops(rv)
    spatial = [iv for iv in blk.iter_vars if iv.kind == "spatial"]
    work = 1
    for lp in loops:
        work *= sch.get(lp).extent
    ns = len(spatial)
    if ns >= 2 and not blk.is_reduction:
        # the innermost loop (after _split_reshape, more loops than iterators)
        sch.vectorize(loops[ns - 1] if len(loops) <= ns else loops[-1])
    limit = PARALLEL_MIN_WORK if blk.is_reduction else MEMORY_BOUND_PARALLEL_MIN_WORK
    if ns >= 1 and work >= limit and sch.get(loops[0]).extent > 1:
        sch.parallel(loops[0])


def _nest_work(sch, name) -> int:
    work = 1
    for lp in sch.get_loops(sch.get_block(name)):
        work *= sch.get(lp).extent
    return work


def _fuse_rows(sch) -> set:
    """A group with row reductions (softmax, layer norm) as one loop over rows.

    Every block before the last one (the group's output) is computed at the output's
    outermost loop that covers what it needs (``compute_at``), accepted only if that
    recomputes nothing (each block still runs as many iterations as before). The per-row
    results (max, sum, mean, the row of ``exp``) then shrink to one row each, allocated
    once per thread, and a row of the input is read from memory once and reused from
    cache by every pass. Each reduction's init is hoisted out of its reduce loop
    (``decompose_reduction``), so the accumulation loop is one straight line that LLVM
    vectorizes (fastmath lets it reassociate the sum); spatial rows are vectorized; the
    row loop is parallel when the whole nest does enough work. Returns the names of the
    blocks scheduled here (none: the nest is left to the per-block default).
    """
    blocks = _blocks(sch)
    last = blocks[-1]
    if last.is_reduction or len(blocks) < 2:
        return set()
    before = sch.copy()
    work = {b.name: _nest_work(sch, b.name) for b in blocks}
    anchor = sch.get_loops(sch.get_block(last.name))
    ns = len([iv for iv in last.iter_vars if iv.kind == "spatial"])
    for depth in range(ns - 2, -1, -1):  # the innermost loop that still covers a row
        try:
            for b in reversed(blocks[:-1]):
                sch.compute_at(sch.get_block(b.name), anchor[depth])
                if _nest_work(sch, b.name) != work[b.name]:
                    raise ScheduleError(f"{b.name} would be recomputed")
            break
        except ScheduleError:
            _restore(sch, before)
            before = sch.copy()
    else:
        return set()
    outer = anchor[:depth + 1]
    for b in _blocks(sch):
        rv = sch.get_block(b.name)
        loops = sch.get_loops(rv)[len(outer):]
        try:
            if b.is_reduction and b.init is not None and loops:
                sch.decompose_reduction(rv, loops[0])
            elif not b.is_reduction and loops and not b.name.endswith("_init"):
                sch.vectorize(loops[-1])
        except ScheduleError:
            pass
    total = sum(work.values())
    rows = 1
    for lp in outer:
        rows *= sch.get(lp).extent
    if total >= PARALLEL_MIN_WORK and rows > 1:
        try:
            sch.parallel(outer[0] if sch.get(outer[0]).extent > 1 else outer[-1])
        except ScheduleError:
            pass
    return {b.name for b in _blocks(sch)}


def _gpu_nest(sch, blk, threads: int = 64) -> None:
    rv = sch.get_block(blk.name)
    loops = sch.get_loops(rv)
    ns = len([iv for iv in blk.iter_vars if iv.kind == "spatial"])
    fused = sch.fuse(*loops[:ns]) if ns > 1 else loops[0]
    ext = sch.get(fused).extent
    # at least two thread blocks: a loop of extent 1 binds nothing a reduction depends on
    t = divisor_at_most(ext, min(threads, max(1, ext // 2)))
    bx, tx = sch.split(fused, factors=[None, t])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def _schedule_matmul(sch, mm, nodes, outputs, block_of, tuned) -> set:
    """The hand-scheduled matmul, its epilogue folded into the tile's copy-back.

    ``matmul_hand_schedule`` accumulates a tile in a "local" buffer and copies it back
    under the tile loop; ``reverse_compute_inline`` then folds the (already inlined)
    epilogue block into that copy, so bias and ReLU are applied while the tile is hot in
    cache and the matmul's own result is never written to memory.
    """
    *batch, n, m = mm.shape
    k = mm.inputs[0].shape[-1]
    name = block_of[mm]
    others = {b.name for b in _blocks(sch)} - {name}
    before = sch.copy()
    try:
        if as_dot(mm, "cpu"):
            schedule_dot(sch, name, n)
        elif batch:
            batched_matmul_schedule(sch, name, n, m, parallel=math.prod(mm.shape) * k >=
                                     MATMUL_PARALLEL_MIN_WORK and math.prod(batch) >= 2)
        elif tuned and (n, k, m) in tuned:
            tuned[(n, k, m)](sch, name)
        else:
            # four rows of the tile unrolled innermost: each load of B[k, j] feeds four
            # multiply-adds (4096x72 @ 72x16, the CNN's second conv at batch 256: 6.2 ms
            # without, 0.74 ms with, on one core)
            ti = divisor_at_most(n, 32)
            matmul_hand_schedule(sch, block=name, tile_i=ti, tile_j=divisor_at_most(m, 64),
                                 unroll=4 if ti % 4 == 0 else 1,
                                 parallel=n * m * k >= MATMUL_PARALLEL_MIN_WORK and n >= 2)
    except ScheduleError:
        _restore(sch, before)
        return set()
    for b in [b for b in _blocks(sch) if b.name in others]:
        try:
            sch.reverse_compute_inline(sch.get_block(b.name))
        except ScheduleError:
            pass
    for b in _blocks(sch):
        if b.name not in others and b.name not in (name, name + "_init"):
            try:  # the copy-back (with the epilogue): vectorize its row
                sch.vectorize(sch.get_loops(sch.get_block(b.name))[-1])
            except ScheduleError:
                pass
    return {b.name for b in _blocks(sch)} - others


def _restore(sch, saved) -> None:
    sch.func, sch.trace = saved.func, saved.trace

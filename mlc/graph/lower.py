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
small buffer of one value per row, computed in the same kernel.
"""

from __future__ import annotations

from .. import te, tir
from ..schedule import ScheduleError
from ..schedule.examples import matmul_hand_schedule
from .ir import identifier
from .lower_ops import compute_of, te_shape
from .pattern import pattern

PARALLEL_MIN_WORK = 1 << 21  # below this many loop iterations, waking threads costs more


class LoweredGroup:
    """A group's PrimFunc (``func``, scheduled), the nodes it reads (``inputs``) and
    writes (``outputs``), in the order of the PrimFunc's parameters."""

    def __init__(self, func, schedule, inputs, outputs, nodes, name):
        self.func, self.schedule, self.inputs, self.outputs = func, schedule, inputs, outputs
        self.nodes, self.name = nodes, name

    def __repr__(self):
        return f"LoweredGroup({self.name}: {len(self.nodes)} ops)"


def group_io(nodes, graph_outputs, users):
    inside = set(nodes)
    ins: dict = {}
    for n in nodes:
        for x in n.inputs:
            if x not in inside:
                ins[x] = None
    outs = {id(n) for n in graph_outputs}
    out = [n for n in nodes if id(n) in outs or any(u not in inside for u in users[n])]
    return list(ins), out


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
    for n in nodes:
        tensors[n] = compute_of(n, [tensors[x] for x in n.inputs], identifier(n.name))
    func = te.create_prim_func(params + [tensors[n] for n in outputs], name=identifier(name))
    sch = tir.Schedule(func)
    out_set = set(outputs)
    block_of = {n: func_block_name(sch, tensors[n]) for n in nodes}
    for n in nodes:
        if n not in out_set and pattern(n) in ("elemwise", "broadcast", "injective"):
            try:
                sch.compute_inline(sch.get_block(block_of[n]))
            except ScheduleError:
                pass
    default_schedule(sch, nodes, outputs, block_of, target, tuned)
    return LoweredGroup(sch.func, sch, inputs, outputs, nodes, name)


def func_block_name(sch, t) -> str:
    return t.buffer.name if _has_block(sch, t.buffer.name) else t.name


def _has_block(sch, name) -> bool:
    from ..tir.functor import blocks_in

    return any(b.name == name for b in blocks_in(sch.func.body))


def _blocks(sch):
    from ..tir.functor import blocks_in

    return [b for b in blocks_in(sch.func.body)]


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def default_schedule(sch, nodes, outputs, block_of, target, tuned=None) -> None:
    """A schedule per kind of group: matmul groups get the unit 06 hand schedule (or a
    tuned trace) with the epilogue folded into its copy-back; every other loop nest gets
    a parallel outer loop and a vectorized inner loop ("cpu"), or its spatial loops fused
    and bound to GPU blocks and threads ("cuda")."""
    done = set()
    if target != "cuda":
        for n in nodes:
            if n.op == "matmul" and len(n.shape) == 2 and _has_block(sch, block_of[n]):
                done |= _schedule_matmul(sch, n, nodes, outputs, block_of, tuned)
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
        sch.vectorize(loops[ns - 1])
    if ns >= 1 and work >= PARALLEL_MIN_WORK and sch.get(loops[0]).extent > 1:
        sch.parallel(loops[0])


def _gpu_nest(sch, blk, threads: int = 64) -> None:
    rv = sch.get_block(blk.name)
    loops = sch.get_loops(rv)
    ns = len([iv for iv in blk.iter_vars if iv.kind == "spatial"])
    fused = sch.fuse(*loops[:ns]) if ns > 1 else loops[0]
    ext = sch.get(fused).extent
    # at least two thread blocks: a loop of extent 1 binds nothing a reduction depends on
    t = _divisor_at_most(ext, min(threads, max(1, ext // 2)))
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
    n, m = mm.shape
    k = mm.inputs[0].shape[-1]
    name = block_of[mm]
    others = {b.name for b in _blocks(sch)} - {name}
    before = sch.copy()
    try:
        if tuned and (n, k, m) in tuned:
            tuned[(n, k, m)](sch, name)
        else:
            matmul_hand_schedule(sch, block=name, tile_i=_divisor_at_most(n, 32),
                                 tile_j=_divisor_at_most(m, 64),
                                 parallel=n * m * k >= PARALLEL_MIN_WORK and n >= 2)
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

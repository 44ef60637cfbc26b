"""The Schedule: transform a PrimFunc's loops without changing what it computes.

::

    sch = tir.Schedule(func)
    C = sch.get_block("C")
    i, j, k = sch.get_loops(C)
    i0, i1 = sch.split(i, factors=[None, 32])
    sch.reorder(i0, j, k, i1)
    sch.parallel(i0)
    sch.func            # the transformed PrimFunc
    print(sch.trace)    # the Python that made it

Each primitive states its preconditions; when one fails it raises :class:`ScheduleError`
naming it and leaves the schedule unchanged. Every successful call is appended to
``sch.trace``.
"""

from __future__ import annotations

import random

from ..tir.stmt import Block, For, PrimFunc
from ..tir.verify import verify
from . import cache, compute_location, inline, loops, reduction, sampling
from .state import BlockRV, LoopRV, fail, find_path, loops_of
from .trace import Instruction, Trace


class Schedule:
    """A PrimFunc being scheduled (``sch.func``) and the trace of how (``sch.trace``).

    ``seed`` makes the sampling primitives reproducible.
    """

    def __init__(self, func: PrimFunc, seed: int | None = None):
        if isinstance(func, Schedule):
            func = func.func
        if not isinstance(func, PrimFunc):
            raise TypeError(f"Schedule takes a PrimFunc, got {type(func).__name__}")
        verify(func)
        self.func, self.trace, self.seed = func, Trace(), seed
        self.rng = random.Random(seed)

    @property
    def mod(self) -> PrimFunc:
        """Alias of ``func`` (TVM calls it ``mod``)."""
        return self.func

    def copy(self) -> "Schedule":
        """An independent schedule at the same point (same handles stay valid in it)."""
        new = Schedule.__new__(Schedule)
        new.func, new.trace, new.seed = self.func, self.trace.copy(), self.seed
        new.rng = random.Random(self.rng.random())
        return new

    def show(self) -> None:
        print(self.func.script())

    # ------------------------------------------------------------------ plumbing
    def _set_body(self, body) -> None:
        self.func = self.func.with_body(body)

    def _block(self, rv):
        if not isinstance(rv, BlockRV):
            raise TypeError(f"expected a block handle (BlockRV), got {rv!r}")
        blk, anc = find_path(self.func.body, lambda s: isinstance(s, Block) and s.name == rv.name)
        if blk is None:
            fail(f"block {rv.name} does not exist (any more)")
        return blk, anc

    def _loop(self, rv):
        if not isinstance(rv, LoopRV):
            raise TypeError(f"expected a loop handle (LoopRV), got {rv!r}")
        lp, anc = find_path(self.func.body, lambda s: isinstance(s, For) and s.loop_var is rv.var)
        if lp is None:
            fail(f"loop {rv.var.name} does not exist any more (an earlier split, fuse or "
                 "compute_at replaced it)")
        return lp, anc

    def _record(self, kind, args, kwargs, outputs, decision=None):
        self.trace.append(Instruction(kind, args, kwargs, outputs, decision))
        return outputs

    def get(self, rv):
        """The current IR node (For or Block) a handle refers to; an IntRV as an int."""
        if isinstance(rv, BlockRV):
            return self._block(rv)[0]
        if isinstance(rv, LoopRV):
            return self._loop(rv)[0]
        return int(rv)

    # ------------------------------------------------------------------ getters
    def get_block(self, name: str) -> BlockRV:
        """The block called ``name``. Raises ScheduleError if there is none."""
        blk = find_path(self.func.body, lambda s: isinstance(s, Block) and s.name == name)[0]
        if blk is None:
            from ..tir.functor import blocks_in

            fail(f"get_block: no block named {name!r}; blocks are "
                 f"{[b.name for b in blocks_in(self.func.body)]}")
        return self._record("get_block", [name], {}, BlockRV(name))

    def get_loops(self, block: BlockRV) -> list:
        """The loops around ``block``, outermost first."""
        _, anc = self._block(block)
        return self._record("get_loops", [block], {}, [LoopRV(lp.loop_var) for lp in loops_of(anc)])

    # ------------------------------------------------------------------ loops
    def split(self, loop: LoopRV, factors) -> list:
        """Split ``loop`` into ``len(factors)`` nested loops, outermost first.

        Preconditions: factors are positive ints, at most one is None (then it is inferred
        as ``ceil(extent / product of the others)``); their product is at least the
        extent (when larger, the blocks below get a predicate guarding the overhang); the
        loop is still serial.
        """
        out = loops.split(self, loop, factors)
        return self._record("split", [loop], {"factors": list(factors)}, out)

    def fuse(self, *loops_) -> LoopRV:
        """Fuse perfectly nested loops (given outer to inner) into one.

        Preconditions: each loop's body is exactly the next loop; all are serial.
        """
        out = loops.fuse(self, list(loops_))
        return self._record("fuse", list(loops_), {}, out)

    def reorder(self, *loops_) -> None:
        """Reorder loops of one nest into the given order (outermost first).

        Preconditions: the loops lie on one path of the loop tree, and between the
        outermost and innermost of them each loop's body is exactly the next loop (no
        block or other statement sits between them). Loops not named keep their places.
        """
        loops.reorder(self, list(loops_))
        return self._record("reorder", list(loops_), {}, None)

    def parallel(self, loop: LoopRV) -> None:
        """Run ``loop``'s iterations on several CPU threads.

        Preconditions: the loop is serial; it binds no reduce iterator of a block below it
        (iterations would race on the same output); a reduction block below it depends on
        it, or writes only an intermediate used only inside the loop; it is not inside a
        GPU-bound loop.
        """
        loops.annotate(self, loop, "parallel")
        return self._record("parallel", [loop], {}, None)

    def vectorize(self, loop: LoopRV) -> None:
        """Mark ``loop`` for SIMD execution (best as the innermost loop).

        Preconditions: the loop is serial and binds no reduce iterator of a block below it.
        """
        loops.annotate(self, loop, "vectorized")
        return self._record("vectorize", [loop], {}, None)

    def unroll(self, loop: LoopRV) -> None:
        """Unroll ``loop`` in the generated code. Precondition: the loop is serial."""
        loops.annotate(self, loop, "unrolled")
        return self._record("unroll", [loop], {}, None)

    def bind(self, loop: LoopRV, thread_axis: str) -> None:
        """Map ``loop`` onto a GPU axis: "blockIdx.x/y/z" or "threadIdx.x/y/z".

        Preconditions: as for ``parallel`` (a reduction block may run unbound only if it
        writes a "local" buffer used only inside the loop); the loop is not inside another
        loop bound to the same axis, and blockIdx loops enclose threadIdx loops.
        """
        loops.annotate(self, loop, "thread_binding", thread_axis)
        return self._record("bind", [loop, thread_axis], {}, None)

    # ------------------------------------------------------------------ compute location
    def compute_at(self, block: BlockRV, loop: LoopRV) -> None:
        """Move producer ``block`` into ``loop``, computing only what one iteration needs.

        Preconditions: the block writes one buffer, which is not a function parameter, at
        its spatial iterators (``B[vi, vj]``), and is its only producer; every consumer of
        that buffer is inside ``loop`` (the loop covers the consumers' region); the block
        is not already inside ``loop``; the producers of its inputs precede the
        insertion point (just before the first consumer in ``loop``'s body).
        """
        compute_location.compute_at(self, block, loop)
        return self._record("compute_at", [block, loop], {}, None)

    def reverse_compute_at(self, block: BlockRV, loop: LoopRV) -> None:
        """Move consumer ``block`` into ``loop``, right after its producers there,
        computing the region they produce in one iteration.

        Preconditions: the block has spatial iterators only and reads each produced buffer
        at its iterators; every producer of those buffers is inside ``loop``, and no loop
        from the root down to ``loop`` binds a reduce iterator of a producer (the values
        must be final); the block is not already inside ``loop``.
        """
        compute_location.reverse_compute_at(self, block, loop)
        return self._record("reverse_compute_at", [block, loop], {}, None)

    def compute_inline(self, block: BlockRV) -> None:
        """Substitute ``block``'s value into every read of its buffer and remove it.

        Preconditions: the block has spatial iterators only and no init, is a single store
        ``B[vi, vj, ...] = value`` at its iterators, is B's only producer, and B is an
        intermediate (not a function parameter).
        """
        inline.compute_inline(self, block)
        return self._record("compute_inline", [block], {}, None)

    def reverse_compute_inline(self, block: BlockRV) -> None:
        """Fold consumer ``block`` into the store of its single producer.

        Preconditions: the block is a single store with spatial iterators only; it reads
        exactly one produced buffer, once per instance, at its iterators; that buffer is an
        intermediate read by no other block; its producer is a single-store block without
        reduction; the block's other inputs are produced before the producer.
        """
        inline.reverse_compute_inline(self, block)
        return self._record("reverse_compute_inline", [block], {}, None)

    # ------------------------------------------------------------------ caches, reduction
    def cache_read(self, block: BlockRV, read_buffer_index, storage_scope: str) -> BlockRV:
        """Make ``block`` read one input (an index into its read buffers, or a name) from a
        new buffer in ``storage_scope``, filled by a new copy block placed before it.

        Preconditions: the index names a buffer the block reads; the scope is "global",
        "shared" or "local". Returns the copy block.
        """
        out = cache.cache_read(self, block, read_buffer_index, storage_scope)
        return self._record("cache_read", [block, read_buffer_index, storage_scope], {}, out)

    def cache_write(self, block: BlockRV, write_buffer_index, storage_scope: str) -> BlockRV:
        """Make ``block`` write into a new buffer in ``storage_scope`` and add a block after
        it that copies the result to the original buffer.

        Preconditions: the index names a buffer the block writes, and the block is that
        buffer's only producer. Returns the copy-back block.
        """
        out = cache.cache_write(self, block, write_buffer_index, storage_scope)
        return self._record("cache_write", [block, write_buffer_index, storage_scope], {}, out)

    def decompose_reduction(self, block: BlockRV, loop: LoopRV) -> BlockRV:
        """Move reduction ``block``'s init into a new block placed before ``loop``.

        Preconditions: the block is a reduction with an init; ``loop`` is one of its loops;
        no loop above ``loop`` binds a reduce iterator (the init would repeat); no loop
        from ``loop`` inward binds both spatial and reduce iterators. Returns the init block.
        """
        out = reduction.decompose_reduction(self, block, loop)
        return self._record("decompose_reduction", [block, loop], {}, out)

    # ------------------------------------------------------------------ sampling
    def sample_perfect_tile(self, loop: LoopRV, n: int, max_innermost_factor: int | None = None,
                            decision=None) -> list:
        """Choose ``n`` factors whose product is ``loop``'s extent (uniformly among all
        such tilings whose innermost factor is at most ``max_innermost_factor``).
        ``decision`` forces the factors (replay)."""
        out, dec = sampling.sample_perfect_tile(self, loop, n, max_innermost_factor, decision,
                                                self.rng)
        return self._record("sample_perfect_tile", [loop],
                            {"n": n, "max_innermost_factor": max_innermost_factor}, out, dec)

    def sample_categorical(self, candidates, probs, decision: int | None = None):
        """Choose one of ``candidates`` (ints) with probabilities ``probs``. ``decision`` is
        the index to force (replay)."""
        out, dec = sampling.sample_categorical(candidates, probs, decision, self.rng)
        return self._record("sample_categorical", [],
                            {"candidates": list(candidates), "probs": list(probs)}, out, dec)

"""The search space: a schedule *template* whose random choices are the knobs.

A template is a plain function ``template(sch)`` that schedules ``sch`` with the usual
primitives but asks the *sampling* primitives for its numbers::

    i0, i1, i2 = sch.split(i, factors=sch.sample_perfect_tile(i, n=3, max_innermost_factor=8))
    order = sch.sample_categorical([0, 1, 2], [1, 1, 1])

Run once, a template draws one candidate program. The list of what each sampling call
decided (a tiling ``[4, 8, 2]`` or a categorical index ``1``) is the candidate's
*decisions*: a small JSON-friendly value that a search can mutate, cross over, store in a
log and replay. :class:`SearchSpace` runs the template with decisions forced
(:meth:`SearchSpace.apply`) or drawn at random (:meth:`SearchSpace.sample`).

:func:`multi_level_tiling` is the default template for a block with spatial loops and
optional reduction loops (a matmul, a conv, a row sum): the CPU recipe of
``mlc.schedule.examples.matmul_hand_schedule`` with every number left open.
"""

from __future__ import annotations

import json
import math
import random

from ..schedule import Schedule, ScheduleError
from ..schedule.sampling import perfect_tiles
from ..tir.functor import blocks_in, reduce_loop_vars
from ..tir.stmt import PrimFunc


class _DecidingSchedule(Schedule):
    """A Schedule whose sampling primitives take their decisions from a list, in call
    order, when the template does not pass one itself (``None`` entries are drawn)."""

    def __init__(self, func, seed, forced):
        super().__init__(func, seed=seed)
        self._forced, self._calls = list(forced or []), 0

    def _next(self, decision):
        i, self._calls = self._calls, self._calls + 1
        if decision is None and i < len(self._forced):
            return self._forced[i]
        return decision

    def sample_perfect_tile(self, loop, n, max_innermost_factor=None, decision=None):
        return super().sample_perfect_tile(loop, n, max_innermost_factor, self._next(decision))

    def sample_categorical(self, candidates, probs, decision=None):
        return super().sample_categorical(candidates, probs, self._next(decision))


def _decided(trace) -> list:
    return [inst.decision for inst in trace
            if inst.kind in ("sample_perfect_tile", "sample_categorical")]


def decisions_key(decisions) -> str:
    """A canonical string for a decision list (for de-duplication and logs)."""
    return json.dumps(decisions, separators=(",", ":"))


def slot_domains(trace) -> list:
    """What each sampling call in ``trace`` could have decided, in call order.

    A perfect-tile slot is ``("tile", extent, n, max_innermost_factor)``, a categorical slot
    ``("categorical", n_candidates, probs)``.
    """
    out = []
    for inst in trace:
        if inst.kind == "sample_perfect_tile":
            out.append(("tile", math.prod(inst.decision), inst.kwargs["n"],
                        inst.kwargs["max_innermost_factor"]))
        elif inst.kind == "sample_categorical":
            out.append(("categorical", len(inst.kwargs["candidates"]),
                        list(inst.kwargs["probs"])))
    return out


def sample_slot(domain, rng: random.Random, avoid=None):
    """A random decision for one slot, different from ``avoid`` when another exists."""
    if domain[0] == "tile":
        _, extent, n, max_inner = domain
        choices = [list(c) for c in perfect_tiles(extent, n, max_inner)]
    else:
        _, count, probs = domain
        choices = [i for i in range(count) if probs[i] > 0]
    others = [c for c in choices if c != avoid]
    return rng.choice(others or choices)


def move_factor(tile, rng: random.Random, max_innermost_factor=None):
    """A neighbouring tiling: one prime factor moved from one level to another
    (``[1, 8, 64] -> [2, 4, 64]``), the product unchanged; None if no move is legal."""
    moves = []
    for a, x in enumerate(tile):
        for p in {q for q in range(2, x + 1) if x % q == 0 and all(q % r for r in range(2, q))}:
            for b in range(len(tile)):
                if b != a:
                    new = list(tile)
                    new[a], new[b] = x // p, new[b] * p
                    if max_innermost_factor is None or new[-1] <= max_innermost_factor:
                        moves.append(new)
    return rng.choice(moves) if moves else None


class SearchSpace:
    """The programs a template can make from ``func``.

    ``space.sample(rng)`` draws a random candidate and returns ``(schedule, decisions)``;
    ``space.apply(decisions)`` rebuilds one (raising :class:`ScheduleError` when the
    decisions are illegal for the template); ``space.domains`` describes each decision
    slot, which is what mutation and crossover need.
    """

    def __init__(self, func: PrimFunc, template=None, target: str = "cpu"):
        if not isinstance(func, PrimFunc):
            raise TypeError(f"SearchSpace takes a PrimFunc, got {type(func).__name__}")
        self.func, self.target = func, target
        self.template = template if template is not None else multi_level_tiling
        # Candidates built by ``apply`` and their features, by decisions: a search (or
        # several, sharing this space) that meets a candidate again does not rebuild it.
        self._built, self.feature_cache = {}, {}
        # The decision slots (what each sampling call may decide) come from one working
        # draw; a template may fail for some draws, so try a few.
        rng, last = random.Random(0), None
        for _ in range(64):
            try:
                sch, _ = self.sample(rng)
                break
            except ScheduleError as e:
                last = e
        else:
            raise ScheduleError(f"template {self.name} failed on 64 random draws; the last "
                                f"error: {last}")
        self.domains = slot_domains(sch.trace)

    @property
    def name(self) -> str:
        return getattr(self.template, "__name__", type(self.template).__name__)

    def _run(self, decisions, seed):
        sch = _DecidingSchedule(self.func, seed, decisions)
        try:
            self.template(sch)
        except ScheduleError as e:
            e.decisions = decisions if decisions is not None else _decided(sch.trace)
            raise
        # Hand back an ordinary Schedule at the same point (``copy``), not a replay of the
        # trace: replaying would run every primitive a second time for each candidate.
        return sch.copy(), _decided(sch.trace)

    def sample(self, rng: random.Random):
        """A random candidate: ``(schedule, decisions)``."""
        return self._run(None, rng.getrandbits(32))

    def apply(self, decisions):
        """The candidate made by ``decisions`` (a list as ``sample`` returns)."""
        key = decisions_key(decisions)
        if key in self._built:
            return self._built[key].copy()
        sch, decided = self._run(decisions, 0)
        if len(decided) != len(decisions):
            raise ScheduleError(f"the template made {len(decided)} decisions, "
                                f"{len(decisions)} were given")
        if len(self._built) >= 4096:  # bounded: a big space is searched once, not replayed
            self._built.clear()
        self._built[key] = sch
        return sch.copy()

    def mutate(self, decisions, rng: random.Random) -> list:
        """``decisions`` with one slot changed: half the time a tiling takes a small step
        (:func:`move_factor`, refining a good tile), otherwise the slot is re-drawn
        (to a different value where possible; a jump to another region)."""
        out = [d for d in decisions]
        slot = rng.randrange(len(out))
        step = None
        if self.domains[slot][0] == "tile" and rng.random() < 0.5:
            step = move_factor(out[slot], rng, self.domains[slot][3])
        out[slot] = step if step is not None else sample_slot(self.domains[slot], rng,
                                                              avoid=out[slot])
        return out

    def crossover(self, a, b, rng: random.Random) -> list:
        """Each slot from parent ``a`` or ``b`` at random."""
        return [x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]


# ------------------------------------------------------------------------- templates

def main_block(func: PrimFunc):
    """The block worth tuning: the first reduction block, else the last block."""
    blocks = blocks_in(func.body)
    if not blocks:
        raise ValueError(f"PrimFunc {func.name} has no blocks to schedule")
    for b in blocks:
        if b.is_reduction:
            return b
    return blocks[-1]


def multi_level_tiling(sch: Schedule, block: str | None = None, max_unroll: int = 8,
                       max_vector: int = 64) -> Schedule:
    """The default CPU template: multi-level tiling with the choices left to the tuner.

    For the block's spatial loops ``s`` (``i, j`` for a matmul) and reduce loops ``r``:

    * every spatial loop is tiled in three, ``s -> [s0, s1, s2]``
      (``sample_perfect_tile``), every reduce loop in two, ``r -> [r0, r1]``;
    * a loop order, by ``sample_categorical``: ``s0 s1 r0 r1 s2``, ``s0 r0 s1 r1 s2`` (the
      order of the hand schedule: a rank-1 update of a tile per ``k``) or
      ``s0 s1 r0 s2 r1`` (dot products innermost). Inside ``s2`` the last (contiguous)
      spatial loop comes first and is vectorized; the other ``s2`` loops, at most
      ``max_unroll`` long, are optionally unrolled inside it, so one load of ``B[k, j]``
      feeds several multiply-adds;
    * optionally accumulate in a "local" tile (``cache_write`` + ``reverse_compute_at``
      under the outer tile loops) and take the init out of the loop
      (``decompose_reduction``);
    * parallelize the outermost tile loop, or all ``s0`` loops fused into one.
    """
    fn = sch.func
    name = block if block is not None else main_block(fn).name
    blk = sch.get_block(name)
    loops = sch.get_loops(blk)
    reduce_vars = reduce_loop_vars(sch.get(blk))
    spatial = [lp for lp in loops if id(sch.get(lp).loop_var) not in reduce_vars]
    reduce = [lp for lp in loops if id(sch.get(lp).loop_var) in reduce_vars]
    if not spatial:
        raise ScheduleError(f"multi_level_tiling: block {name} has no spatial loop to tile")

    s_tiles = []
    for n, lp in enumerate(spatial):
        last = n == len(spatial) - 1
        f = sch.sample_perfect_tile(lp, n=3, max_innermost_factor=max_vector if last
                                    else max_unroll)
        s_tiles.append(sch.split(lp, factors=f))
    r_tiles = [sch.split(lp, factors=sch.sample_perfect_tile(lp, n=2)) for lp in reduce]
    order = sch.sample_categorical([0, 1, 2], [1.0, 1.0, 1.0]) if reduce else 0
    unroll = sch.sample_categorical([0, 1], [1.0, 1.0]) if len(spatial) > 1 else 0
    local = sch.sample_categorical([0, 1], [1.0, 1.0]) if reduce else 0
    fuse = sch.sample_categorical([0, 1], [1.0, 1.0]) if len(spatial) > 1 else 0

    s0, s1 = [t[0] for t in s_tiles], [t[1] for t in s_tiles]
    s2 = [s_tiles[-1][2]] + [t[2] for t in s_tiles[:-1]]  # vector loop, then unrolled ones
    r0, r1 = [t[0] for t in r_tiles], [t[1] for t in r_tiles]
    nest = {0: s0 + s1 + r0 + r1 + s2, 1: s0 + r0 + s1 + r1 + s2,
            2: s0 + s1 + r0 + s2 + r1}[int(order)]
    sch.reorder(*nest)
    if local:
        # The copy-back goes under the last outer tile loop *before* any fuse: its indices
        # must be plain counts of the loops it runs in for reverse_compute_at to place it.
        copy = sch.cache_write(blk, 0, "local")
        sch.reverse_compute_at(copy, s0[-1])
    if reduce:
        sch.decompose_reduction(blk, r0[0])
    outer = sch.fuse(*s0) if fuse and len(s0) > 1 else s0[0]
    sch.vectorize(s2[0])
    if unroll:
        for lp in s2[1:]:
            sch.unroll(lp)
    # A loop of extent 1 has nothing to share out (and the reduction no longer depends on
    # it, so parallel would refuse it): parallelize the first s0 loop with work in it.
    if outer is s0[0]:
        outer = next((lp for lp in s0 if sch.get(lp).extent > 1), None)
    elif sch.get(outer).extent == 1:
        outer = None
    if outer is not None:
        sch.parallel(outer)
    return sch

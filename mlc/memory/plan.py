"""A memory plan: every tensor's byte offset in one arena, checked before anyone uses it.

::

    plan = memory.plan(g, strategy="greedy_by_size")
    plan.offsets[t]       # where tensor t starts in the arena (a multiple of 64)
    plan.sizes[t]         # its bytes
    plan.arena_bytes      # how big the arena is
    plan.lower_bound      # the widest step: no plan can do better
    plan.draw()           # time x address rectangles, one per tensor
    print(plan)           # the same as a table

How a plan is made: :func:`~mlc.memory.liveness.liveness` gives each tensor its steps;
with ``inplace=True`` an elementwise step's output joins the buffer of the input that
dies there (:mod:`mlc.memory.inplace`) and a view (a lone reshape, run as no kernel) joins
its source's buffer; each buffer becomes a
:class:`~mlc.memory.planners.Block` (size rounded up to 64 bytes); the planner places
the blocks; and :func:`verify` checks the result. Every plan passes through
:func:`verify`, so a planner with a bug raises :class:`PlanError` instead of letting two
tensors overwrite each other at run time.

A plan is made for one program's steps. :func:`assign` puts it on a
:class:`~mlc.graph.Program` (a new Program whose tensors carry their offsets, what the
executor runs in one arena) and refuses a plan made for other steps, saying what differs.
"""

from __future__ import annotations

from .liveness import ALIGNMENT, align, liveness, program
from .planners import Block, get_planner


class PlanError(AssertionError):
    """A plan that would let two live tensors share bytes (or is otherwise wrong)."""


class Plan:
    """Offsets of tensors in one arena; see the module docstring."""

    def __init__(self, prog, offsets, sizes, intervals, arena_bytes, strategy,
                 inplace=None, alignment=ALIGNMENT, storage=None, views=None):
        self.program = prog
        self.offsets, self.sizes, self.intervals = offsets, sizes, intervals
        self.arena_bytes, self.strategy, self.alignment = arena_bytes, strategy, alignment
        self.inplace = dict(inplace or {})     # {output: the input whose bytes it takes}
        self.views = dict(views or {})         # {view: the tensor whose bytes it re-shapes}
        self.storage = storage or {t: i for i, t in enumerate(offsets)}
        self.lower_bound = storage_lower_bound(self.storage, sizes, intervals, alignment)

    @property
    def tensors(self) -> list:
        return list(self.offsets)

    @property
    def naive_bytes(self) -> int:
        """The arena if every tensor had its own buffer (aligned)."""
        return sum(align(s, self.alignment) for s in self.sizes.values())

    @property
    def ratio(self) -> float:
        """``arena_bytes / lower_bound`` (1.0 is perfect)."""
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0

    def key(self) -> tuple:
        """The plan by step position: what two plans of equal programs share."""
        pos = {t: (i, j) for i, s in enumerate(self.program.steps)
               for j, t in enumerate(s.writes)}
        return (self.strategy, self.arena_bytes, self.alignment,
                tuple(sorted((pos[t], off) for t, off in self.offsets.items())),
                tuple(sorted((pos[o], pos[i]) for o, i in self.inplace.items())))

    def __eq__(self, other) -> bool:
        """Two plans are equal when they place the same steps' tensors at the same offsets
        (the programs may be different objects with the same steps)."""
        if not isinstance(other, Plan):
            return NotImplemented
        return self.program.difference(other.program) is None and self.key() == other.key()

    __hash__ = None

    def verify(self) -> "Plan":
        verify(self)
        return self

    def rows(self) -> list[list]:
        return [[t.name, self.sizes[t], self.offsets[t], *self.intervals[t],
                 self.inplace[t].name if t in self.inplace else ""]
                for t in sorted(self.offsets, key=lambda t: (self.intervals[t], t.name))]

    def __str__(self) -> str:
        from ..perf import format_table

        head = (f"Plan {self.strategy!r}: arena {self.arena_bytes} B, lower bound "
                f"{self.lower_bound} B ({self.ratio:.3f}x), naive {self.naive_bytes} B")
        return head + "\n" + format_table(
            self.rows(), ["tensor", "bytes", "offset", "first", "last", "in place of"])

    def __repr__(self) -> str:
        return (f"<Plan {self.strategy!r}: {len(self.offsets)} tensors, arena "
                f"{self.arena_bytes} B, lower bound {self.lower_bound} B>")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def draw(self, ax=None, labels: bool = True):
        """Each tensor a rectangle: steps ``first..last`` across, its bytes up.

        The dashed line is the lower bound, the solid one the arena. Tensors sharing a
        buffer in place have the same colour. Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        cmap = plt.get_cmap("tab20")
        steps = max((b for _, b in self.intervals.values()), default=0) + 1
        for t, off in self.offsets.items():
            a, b = self.intervals[t]
            colour = cmap(self.storage[t] % 20)
            ax.add_patch(Rectangle((a - 0.45, off), b - a + 0.9, self.sizes[t],
                                   facecolor=colour, edgecolor="black", linewidth=0.6))
            if labels and self.sizes[t] > 0.04 * max(self.arena_bytes, 1):
                ax.text((a + b) / 2, off + self.sizes[t] / 2, t.name, ha="center",
                        va="center", fontsize=7, clip_on=True)
        ax.axhline(self.arena_bytes, color="black", linewidth=1)
        ax.axhline(self.lower_bound, color="red", linestyle="--", linewidth=1)
        ax.set_xlim(-0.6, steps - 0.4)
        ax.set_ylim(0, max(self.arena_bytes, 1) * 1.05)
        ax.set_xlabel("step")
        ax.set_ylabel("arena offset (bytes)")
        ax.set_title(f"{self.strategy}: {self.arena_bytes} B (bound {self.lower_bound} B)")
        return ax

    def moved_to(self, prog, fits: bool = False) -> "Plan":
        """This plan on the tensors of ``prog``, a program with the same steps (matched by
        position: step ``i``'s ``j``-th output here is step ``i``'s ``j``-th there).
        ``fits=True`` also takes the same steps at a smaller batch (each tensor at its
        offset, in no more bytes than planned: a plan sized for a maximum batch).
        A program with other steps is refused with an error that says what differs."""
        diff = prog.difference(self.program, "the plan's program", fits=fits)
        if diff is not None:
            raise ValueError(f"this memory plan was made for other steps: {diff}; plan the "
                             "program that runs (memory.plan(exe.program) or "
                             "graph.build(g, memory_plan=\"greedy_by_size\"))")
        if prog is self.program:
            return self
        mine = {a: b for s, t in zip(self.program.steps, prog.steps, strict=True)
                for a, b in zip(s.writes, t.writes, strict=True)}
        moved = Plan(prog, {mine[t]: o for t, o in self.offsets.items()},
                     {mine[t]: mine[t].nbytes for t in self.sizes},
                     {mine[t]: v for t, v in self.intervals.items()}, self.arena_bytes,
                     self.strategy, {mine[o]: mine[i] for o, i in self.inplace.items()},
                     self.alignment, {mine[t]: k for t, k in self.storage.items()},
                     {mine[v]: mine[s] for v, s in self.views.items()})
        verify(moved)
        return moved


def assign(prog, plan: Plan, fits: bool = False):
    """The :class:`~mlc.graph.Program` ``prog`` with every tensor at its offset in
    ``plan`` (a new Program; ``prog`` is unchanged). The plan must be made for the same
    steps (with ``fits``: or for the same steps at a larger batch), else a ``ValueError``
    says which step differs::

        prog = graph.lower(graph.fuse(g), "cpu")
        planned = memory.assign(prog, memory.plan(prog, "greedy_by_size"))
        planned.offsets[t], planned.arena_bytes
    """
    from ..graph.program import Program

    if not isinstance(prog, Program):
        raise TypeError(f"memory.assign takes a graph.Program, got {type(prog).__name__}")
    if not isinstance(plan, Plan):
        raise TypeError(f"memory.assign takes a memory.Plan, got {type(plan).__name__}")
    plan = plan.moved_to(prog, fits)
    return prog.replace(offsets=plan.offsets, arena_bytes=plan.arena_bytes, plan=plan)


def storage_lower_bound(storage, sizes, intervals, alignment=ALIGNMENT) -> int:
    """The widest step when tensors that share a buffer (in place) count once."""
    merged: dict = {}
    for t, k in storage.items():
        a, b = intervals[t]
        s, lo, hi = merged.get(k, (0, a, b))
        merged[k] = (max(s, align(sizes[t], alignment)), min(lo, a), max(hi, b))
    n = max((hi for _, _, hi in merged.values()), default=-1) + 1
    width = [0] * n
    for s, lo, hi in merged.values():
        for i in range(lo, hi + 1):
            width[i] += s
    return max(width, default=0)


def verify(plan: Plan) -> None:
    """Raise :class:`PlanError` unless ``plan`` is safe.

    Checked: every tensor has an offset, a multiple of the alignment, inside the arena;
    no two tensors live at the same step share a byte, except an in-place pair (same
    offset, the input dying at the step the output is born); the arena is at least the
    lower bound.
    """
    al = plan.alignment
    for t, off in plan.offsets.items():
        if off < 0 or off % al:
            raise PlanError(f"%{t.name}: offset {off} is not a non-negative multiple of {al}")
        if off + plan.sizes[t] > plan.arena_bytes:
            raise PlanError(f"%{t.name}: bytes {off}..{off + plan.sizes[t]} run past the "
                            f"arena of {plan.arena_bytes}")
    for t in plan.intervals:
        if t not in plan.offsets:
            raise PlanError(f"%{t.name} has no offset")
    for v, src in plan.views.items():
        if plan.offsets[v] != plan.offsets[src] or plan.sizes[v] != plan.sizes[src]:
            raise PlanError(f"view %{v.name} of %{src.name}: not the same bytes")
    for out, src in plan.inplace.items():
        if plan.offsets[out] != plan.offsets[src] or plan.intervals[src][1] != \
                plan.intervals[out][0]:
            raise PlanError(f"in-place %{out.name} over %{src.name}: not the same bytes, or "
                            "the input does not die where the output is born")
    steps = max((b for _, b in plan.intervals.values()), default=-1) + 1
    at = [[] for _ in range(steps)]
    for t, (a, b) in plan.intervals.items():
        for s in range(a, b + 1):
            at[s].append(t)
    for s, ts in enumerate(at):
        ts = sorted((t for t in ts if plan.sizes[t]), key=lambda t: plan.offsets[t])
        # in address order: each tensor against those that start before it ends
        for i, x in enumerate(ts):
            for y in ts[i + 1:]:
                if plan.offsets[y] >= plan.offsets[x] + plan.sizes[x]:
                    break
                if not (plan.inplace.get(y) is x or plan.inplace.get(x) is y or
                        plan.storage[x] == plan.storage[y] and _aliases(plan, x, y)):
                    raise PlanError(f"step {s}: %{x.name} and %{y.name} are both live and "
                                    "overlap")
    if plan.arena_bytes < plan.lower_bound:
        raise PlanError(f"arena {plan.arena_bytes} B is below the lower bound "
                        f"{plan.lower_bound} B: the liveness or the sizes are wrong")


def _aliases(plan, x, y) -> bool:
    """Whether ``x`` and ``y`` are the same bytes by design (a view chain)."""
    def root(t):
        while t in plan.views:
            t = plan.views[t]
        return t
    return root(x) is root(y)


def views_of(prog, live) -> dict:
    """``{view: source}`` for every view step whose source is a tensor of the plan (a
    view of an input or a constant needs no bytes of the arena)."""
    return {s.writes[0]: s.view_of for s in prog.steps
            if s.view_of is not None and s.view_of in live}


def storages(live, views, inplace) -> dict:
    """``{tensor: buffer number}``: a view or an in-place output joins the buffer of its
    source (written earlier, so its buffer exists already); every other tensor gets one."""
    storage: dict = {}
    for t in live:
        src = views.get(t, inplace.get(t))
        storage[t] = storage[src] if src in storage else len(set(storage.values()))
    return storage


def plan(g, strategy="greedy_by_size", inplace: bool = False,
         alignment: int = ALIGNMENT) -> Plan:
    """Plan the tensors of ``g`` (a Program, Graph, FusedGraph or Executable) into one
    arena.

    ``strategy`` is a name ("naive", "shared_objects", "greedy_by_size",
    "greedy_by_breadth", "optimal") or a :class:`~mlc.memory.planners.Planner`;
    ``inplace=True`` lets alias-safe elementwise steps write over a dying input. A view
    (a lone reshape) shares its source's bytes. The result has passed :func:`verify`.
    """
    from .inplace import inplace_pairs

    planner = get_planner(strategy)
    prog = program(g)
    live = liveness(prog)
    views = views_of(prog, live)
    pairs = inplace_pairs(prog) if inplace else {}
    storage = storages(live, views, pairs)
    buffers: dict = {}
    for t, k in storage.items():
        a, b = live[t]
        size, lo, hi = buffers.get(k, (0, a, b))
        buffers[k] = (max(size, align(t.nbytes, alignment)), min(lo, a), max(hi, b))
    keys = sorted(buffers)
    blocks = [Block(i, *buffers[k]) for i, k in enumerate(keys)]
    placed = planner.place(blocks)
    where = {k: placed[i] for i, k in enumerate(keys)}
    offsets = {t: where[storage[t]] for t in live}
    sizes = {t: t.nbytes for t in live}
    arena = align(max((offsets[t] + sizes[t] for t in live), default=0), alignment)
    result = Plan(prog, offsets, sizes, dict(live), arena, planner.name, pairs, alignment,
                  storage, views)
    verify(result)
    return result


def compare(g, strategies=("naive", "shared_objects", "greedy_by_size", "greedy_by_breadth",
                           "optimal"), inplace: bool = False) -> list[dict]:
    """One row per strategy: arena bytes and its ratio to the lower bound and to naive.

    A strategy that cannot finish (the optimal planner on a big graph) gets ``None``.
    """
    from .optimal import PlanTooLarge

    rows, naive = [], None
    for s in strategies:
        try:
            p = plan(g, s, inplace=inplace)
        except PlanTooLarge:
            rows.append({"strategy": s, "arena_bytes": None, "vs_bound": None,
                         "vs_naive": None})
            continue
        naive = naive or p.naive_bytes
        rows.append({"strategy": s, "arena_bytes": p.arena_bytes, "lower_bound": p.lower_bound,
                     "vs_bound": p.ratio, "naive_over": naive / p.arena_bytes
                     if p.arena_bytes else 1.0})
    return rows

"""Memory planners: give every tensor a byte offset in one arena.

A planner sees **blocks**: a size (already rounded up to the alignment) and a lifetime
``[first, last]`` in steps. Two blocks whose lifetimes meet may not share bytes; two that
never meet may. Drawn with time across and address up, a plan is a packing of rectangles
whose widths are fixed and whose heights we choose::

    address                                   naive: one buffer each, stacked
      ^  [ c ]                                 arena = a + b + c
      |       [    b    ]
      |  [  a  ]
      +-----------------> step

      ^       [    b    ]                     a and c never meet: c reuses a's bytes
      |  [  a  ][ c ]                          arena = max(a, c) + b
      +-----------------> step

Each planner is a small object with ``place(blocks) -> offsets``; strings name them
(:data:`PLANNERS`):

- ``"naive"``: every block its own bytes, one after the other (what the plain executor
  does, each tensor its own buffer).
- ``"shared_objects"``: walk the steps in order with a pool of buffers ("storage tokens"
  in TVM Relax's ``StaticPlanBlockMemory``): a new tensor takes the smallest free buffer
  that fits, else grows the largest free one, else makes a new one; a tensor's buffer
  returns to the pool after its last use. The buffers are laid out end to end.
- ``"greedy_by_size"``: Pisarchyk and Lee (2020), also TFLite Micro's
  ``GreedyMemoryPlanner``: place the largest block first, then each next-largest in the
  best gap among the already placed blocks that are live at the same time (the smallest
  gap that fits; ``fit="first"`` takes the lowest one, as TFLite does), else on top.
- ``"greedy_by_breadth"``: Pisarchyk and Lee (2020): visit the steps from the widest
  (most bytes live) to the narrowest and place each step's unplaced blocks, largest
  first, in the same way: the crowded moments decide the layout.
- ``"optimal"``: exact, by branch and bound (:mod:`mlc.memory.optimal`), for small graphs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """What a planner places: ``size`` bytes (aligned) live in steps ``first..last``."""

    index: int
    size: int
    first: int
    last: int

    def meets(self, other: "Block") -> bool:
        """Whether the two lifetimes share a step."""
        return self.first <= other.last and other.first <= self.last


class Planner:
    """Base class: ``place(blocks)`` returns one offset per block (a list, same order)."""

    name = "planner"

    def place(self, blocks: list[Block]) -> list[int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def find_offset(block: Block, placed: list[tuple[int, Block]], fit: str = "best") -> int:
    """The offset for ``block`` among ``placed`` ``(offset, block)`` pairs.

    Only placed blocks live at the same time matter. Walk them in address order; each
    hole between them big enough is a candidate; ``fit="best"`` takes the smallest such
    hole, ``"first"`` the lowest; with none, the block goes on top of them all.
    """
    active = sorted((off, off + b.size) for off, b in placed if b.meets(block))
    best, top = None, 0
    for lo, hi in active:
        hole = lo - top
        if hole >= block.size:
            if fit == "first":
                return top
            if best is None or hole < best[0]:
                best = (hole, top)
        top = max(top, hi)
    return best[1] if best is not None else top


class Naive(Planner):
    """Every block its own bytes, in order: the arena is the sum of all sizes."""

    name = "naive"

    def place(self, blocks):
        offsets, top = [], 0
        for b in blocks:
            offsets.append(top)
            top += b.size
        return offsets


class SharedObjects(Planner):
    """A pool of reusable buffers, handed out in execution order (TVM Relax's tokens)."""

    name = "shared_objects"

    def place(self, blocks):
        n_steps = max((b.last for b in blocks), default=-1) + 1
        born = [[] for _ in range(n_steps)]
        dies = [[] for _ in range(n_steps)]
        for b in blocks:
            born[b.first].append(b)
            dies[b.last].append(b)
        sizes: list[int] = []          # one entry per shared buffer
        free: list[int] = []           # indices of buffers not in use
        owner: dict[int, int] = {}     # block index -> buffer index
        for step in range(n_steps):
            for b in sorted(born[step], key=lambda b: -b.size):
                fits = [k for k in free if sizes[k] >= b.size]
                if fits:                                   # the tightest free buffer
                    k = min(fits, key=lambda k: sizes[k])
                elif free:                                 # grow the largest free one
                    k = max(free, key=lambda k: sizes[k])
                    sizes[k] = b.size
                else:                                      # a new buffer
                    k = len(sizes)
                    sizes.append(b.size)
                if k in free:
                    free.remove(k)
                owner[b.index] = k
            for b in dies[step]:
                free.append(owner[b.index])
        starts, top = [], 0
        for s in sizes:
            starts.append(top)
            top += s
        return [starts[owner[b.index]] for b in blocks]


class GreedyBySize(Planner):
    """Largest block first, each into the best hole (Pisarchyk and Lee 2020; TFLite)."""

    name = "greedy_by_size"

    def __init__(self, fit: str = "best"):
        if fit not in ("best", "first"):
            raise ValueError(f"fit must be 'best' or 'first', got {fit!r}")
        self.fit = fit

    def place(self, blocks):
        placed: list[tuple[int, Block]] = []
        offsets = [0] * len(blocks)
        for b in sorted(blocks, key=lambda b: (-b.size, b.first, b.index)):
            off = find_offset(b, placed, self.fit)
            offsets[b.index] = off
            placed.append((off, b))
        return offsets

    def __repr__(self):
        return f"GreedyBySize(fit={self.fit!r})"


class GreedyByBreadth(Planner):
    """The widest steps first; within a step the largest blocks first (Pisarchyk and Lee)."""

    name = "greedy_by_breadth"

    def place(self, blocks):
        n_steps = max((b.last for b in blocks), default=-1) + 1
        at = [[] for _ in range(n_steps)]
        for b in blocks:
            for s in range(b.first, b.last + 1):
                at[s].append(b)
        breadth = [sum(b.size for b in bs) for bs in at]
        placed: list[tuple[int, Block]] = []
        offsets: dict[int, int] = {}
        for s in sorted(range(n_steps), key=lambda s: (-breadth[s], s)):
            for b in sorted(at[s], key=lambda b: (-b.size, b.index)):
                if b.index not in offsets:
                    off = find_offset(b, placed, "best")
                    offsets[b.index] = off
                    placed.append((off, b))
        return [offsets[b.index] for b in blocks]


def _optimal():
    from .optimal import Optimal

    return Optimal()


PLANNERS = {"naive": Naive, "shared_objects": SharedObjects, "greedy_by_size": GreedyBySize,
            "greedy_by_breadth": GreedyByBreadth, "optimal": _optimal}


def get_planner(strategy) -> Planner:
    """A :class:`Planner` from its name (see :data:`PLANNERS`) or itself."""
    if isinstance(strategy, Planner):
        return strategy
    try:
        return PLANNERS[strategy]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown memory planner {strategy!r}; expected one of "
                         f"{', '.join(PLANNERS)} or a Planner") from None

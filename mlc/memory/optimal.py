"""The optimal plan of a small graph, by branch and bound: how far is greedy from best?

Finding the smallest arena is NP-hard (it is *dynamic storage allocation*), but small
graphs can be solved exactly with one observation. Take any plan and let every block
fall down as far as it can; nothing gets worse. In the fallen plan each block sits at
the **lowest offset that is free** given the blocks below it. So it is enough to search
over the *order* in which blocks are stacked, placing each at its lowest free offset::

    choose next block ──► lowest free offset ──► recurse ──► undo

Three things keep the search small:

- canonical order: blocks are stacked by non-decreasing offset (ties by index), so the
  same picture is never built twice in different orders;
- the bound: every block still to place lands at or above the current offset, so at each
  step ``s`` the arena needs at least ``current offset + bytes still to place live at s``;
  a branch whose bound is not below the best arena found so far is cut;
- the start: the best of the greedy plans is the first incumbent, and the search stops
  as soon as it meets the lower bound (the widest step), which is then proven optimal.

Above ``max_blocks`` blocks, or after ``max_nodes`` search nodes, :class:`PlanTooLarge`
says so instead of running for hours.
"""

from __future__ import annotations

from .planners import Block, GreedyByBreadth, GreedyBySize, Planner, find_offset


class PlanTooLarge(ValueError):
    """The optimal planner was given a graph too large to solve exactly."""


def arena_of(blocks, offsets) -> int:
    return max((o + b.size for o, b in zip(offsets, blocks, strict=True)), default=0)


class Optimal(Planner):
    """Exact branch and bound over stacking orders (see the module docstring)."""

    name = "optimal"

    def __init__(self, max_blocks: int = 24, max_nodes: int = 200_000):
        self.max_blocks, self.max_nodes = int(max_blocks), int(max_nodes)
        self.nodes = 0           # search nodes used by the last place()
        self.proven = False      # whether the last result was proven optimal

    def place(self, blocks: list[Block]) -> list[int]:
        n = len(blocks)
        if n > self.max_blocks:
            raise PlanTooLarge(f"optimal planner: {n} tensors is more than max_blocks="
                               f"{self.max_blocks}; use a greedy planner, or "
                               "Optimal(max_blocks=...) if you can wait")
        if n == 0:
            return []
        start = min((p.place(blocks) for p in (GreedyBySize(), GreedyByBreadth())),
                    key=lambda offs: arena_of(blocks, offs))
        best = [arena_of(blocks, start), list(start)]
        n_steps = max(b.last for b in blocks) + 1
        remaining = [0] * n_steps                 # bytes still to place, per step
        for b in blocks:
            for s in range(b.first, b.last + 1):
                remaining[s] += b.size
        lower = max(remaining)
        self.nodes, self.proven = 0, False
        if best[0] <= lower:
            self.proven = True
            return best[1]
        offsets = [None] * n
        placed: list[tuple[int, Block]] = []

        def search(last_key, top):
            self.nodes += 1
            if self.nodes > self.max_nodes:
                raise PlanTooLarge(f"optimal planner: no proof after {self.max_nodes} search "
                                   f"nodes ({n} tensors); best found {best[0]} bytes")
            if len(placed) == n:
                if top < best[0]:
                    best[0], best[1] = top, list(offsets)
                return best[0] <= lower
            cands = []
            for b in blocks:
                if offsets[b.index] is None:
                    off = find_offset(b, placed, fit="first")
                    if (off, b.index) > last_key:
                        cands.append((off, -b.size, b))
            cands.sort(key=lambda c: (c[0], c[1]))
            for off, _, b in cands:
                for s in range(b.first, b.last + 1):
                    remaining[s] -= b.size
                new_top = max(top, off + b.size)
                bound = max(new_top, max(off + r for r in remaining if r) if any(remaining)
                            else 0)
                if bound < best[0]:
                    offsets[b.index] = off
                    placed.append((off, b))
                    done = search((off, b.index), new_top)
                    placed.pop()
                    offsets[b.index] = None
                else:
                    done = False
                for s in range(b.first, b.last + 1):
                    remaining[s] += b.size
                if done:
                    return True
            return False

        search((-1, -1), 0)
        self.proven = True
        return best[1]

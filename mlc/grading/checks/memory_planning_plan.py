"""Unit 10, memory planning (2 of 2): a greedy-by-size planner, a checkpointing schedule.

* ``memory_planning.greedy_by_size``: ``greedy_by_size(blocks, alignment)`` places
  blocks ``(size, first, last)`` (raw bytes, steps inclusive) and returns one offset
  each. The grader checks **safety** itself (ints, non-negative multiples of the
  alignment, and no two blocks live at one step share a byte) and **quality**: the arena
  (the highest byte used, rounded up to the alignment) at most :data:`QUALITY` times the
  arena of ``mlc.memory``'s own greedy by size on the same blocks. Blocks come from the
  course's models, hidden random sets, runs of identical blocks, and no blocks at all.
* ``memory_planning.checkpoint_schedule``: ``checkpoint_schedule(sizes, costs, budget)``
  returns which activations of a chain to keep (or None when no choice fits). The
  grader evaluates the choice with its own cost model, :func:`schedule_cost`, and
  compares its recomputation with the best one, :func:`best_schedule`'s dynamic programme
  (tested against exhaustive search). Chains of 24 to 48 layers rule the search out, and
  the source must not enumerate subsets.
"""

from __future__ import annotations

import ast
from itertools import combinations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need
from .graphs import build_graph
from .memory_planning import NB, graph_cases

QUALITY = 1.1
MAX_BLOCKS = 400


def _align(n: int, al: int) -> int:
    return -(-int(n) // al) * al


def blocks_of(data) -> list[list[int]]:
    """The tensors of a graph (plain data) as blocks ``[size, first, last]``."""
    from ... import memory

    return [[t.nbytes, a, b] for t, (a, b) in memory.liveness(build_graph(data)).items()]


def random_blocks(seed: int, n: int, steps: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = int(rng.integers(steps))
        b = min(steps - 1, a + int(rng.geometric(0.35)) - 1)
        size = int(rng.choice([rng.integers(1, 300), rng.integers(300, 5000),
                               rng.integers(5000, 40000)], p=[0.4, 0.45, 0.15]))
        out.append([size, a, b])
    return out


def tied_blocks(seed: int) -> list[list[int]]:
    """Runs of identical blocks, each run two steps after the last, so that every run
    overlaps the next: a planner that finds a block by its value, or keys offsets by
    size, puts twins on the same bytes."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, 10, 2):
        size = int(rng.choice([640, 1000, 4096]))
        out += [[size, start, start + 2] for _ in range(int(rng.integers(2, 5)))]
    return out


def reference_arena(blocks, alignment) -> int:
    """The arena of ``mlc.memory``'s greedy by size (best fit) on the same blocks."""
    from ...memory import Block, GreedyBySize

    bs = [Block(i, _align(s, alignment), a, b) for i, (s, a, b) in enumerate(blocks)]
    offs = GreedyBySize().place(bs)
    return arena_of(blocks, offs, alignment)


def arena_of(blocks, offsets, alignment) -> int:
    return _align(max((o + s for o, (s, _, _) in zip(offsets, blocks, strict=True)),
                      default=0), alignment)


def raw_bound(blocks, alignment) -> int:
    steps = max((b for _, _, b in blocks), default=-1) + 1
    width = [0] * steps
    for s, a, b in blocks:
        for i in range(a, b + 1):
            width[i] += _align(s, alignment)
    return max(width, default=0)


def find_overlap(blocks, offsets):
    """The first pair ``(i, j)`` of blocks live at one step whose bytes overlap, or None."""
    order = sorted(range(len(blocks)), key=lambda i: offsets[i])
    for x, i in enumerate(order):
        si, ai, bi = blocks[i]
        for j in order[x + 1:]:
            sj, aj, bj = blocks[j]
            if offsets[j] >= offsets[i] + si:
                break
            if si and sj and ai <= bj and aj <= bi:
                return (i, j) if i < j else (j, i)
    return None


def _show(i, blocks, offsets=None) -> str:
    s, a, b = blocks[i]
    where = f" at offset {offsets[i]}" if offsets is not None else ""
    return f"block {i} ({s} B, steps {a}..{b}){where}"


@exercise("memory_planning.greedy_by_size", points=3, notebook=NB, needs=("greedy_by_size",),
          hint="take the blocks from the largest down; each goes into the lowest (or the "
               "tightest) gap left between the already placed blocks whose lifetimes meet "
               "its own, else on top of them; a block ending at the step another starts "
               "still meets it, and every offset is a multiple of the alignment",
          rebuilds=("mlc.memory.planners:GreedyBySize",))
class _GreedyBySize(Check):
    def cases(self):
        out = []
        for what, data in graph_cases(range(1200, 1206)):
            out.append((what, blocks_of(data), 64))
        for i, seed in enumerate(range(1300, 1316)):
            n, steps = 6 + 3 * i, 5 + i
            out.append((f"hidden random blocks #{i + 1} ({n} blocks, {steps} steps)",
                        random_blocks(hidden_seed(seed), n, steps), 64))
        out.append(("hidden random blocks, alignment=256", random_blocks(1400, 30, 12), 256))
        out.append(("identical blocks (equal sizes and lifetimes, as an attention layer's "
                    "heads)", tied_blocks(hidden_seed(1401)), 64))
        return [{"what": what, "blocks": blocks, "alignment": al,
                 "_reference": reference_arena(blocks, al),
                 "_bound": raw_bound(blocks, al)} for what, blocks, al in out]

    def observe(self, ns, case):
        fn = need(ns, "greedy_by_size")
        blocks = [tuple(b) for b in case["blocks"]]
        res = call(case["what"], fn, blocks, case["alignment"])
        try:
            res = list(res)
        except TypeError:
            raise CheckFailed(f"{case['what']}: greedy_by_size returned a "
                              f"{type(res).__name__}, expected a list of offsets") from None
        if len(res) > MAX_BLOCKS:
            raise CheckFailed(f"{case['what']}: {len(res)} offsets for "
                              f"{len(blocks)} blocks")
        return [int(o) if isinstance(o, (int, np.integer)) and not isinstance(o, bool)
                else repr(o)[:40] for o in res]

    def judge(self, case, obs, t):
        what, blocks, al = case["what"], case["blocks"], case["alignment"]
        if not isinstance(obs, list):
            t.fail(f"{what}: malformed observation")
        if len(obs) != len(blocks):
            t.fail(f"{what}: {len(obs)} offsets for {len(blocks)} blocks; one offset per "
                   "block, in the blocks' order")
        for i, o in enumerate(obs):
            if not isinstance(o, int) or isinstance(o, bool):
                t.fail(f"{what}: the offset of block {i} is {o!r}, not an int")
            if o < 0:
                t.fail(f"{what}: the offset of {_show(i, blocks)} is negative ({o})")
            if o % al:
                t.fail(f"{what}: the offset of {_show(i, blocks)} is {o}, not a multiple of "
                       f"the alignment {al}")
        pair = find_overlap(blocks, obs)
        if pair is not None:
            i, j = pair
            t.fail(f"{what}: unsafe: {_show(i, blocks, obs)} and {_show(j, blocks, obs)} "
                   "are live at the same step and share bytes")
        t.passed.append(f"{what}: safe")
        arena, ref = arena_of(blocks, obs, al), case["_reference"]
        if arena < case["_bound"]:  # cannot happen for a safe plan; a guard on the judge
            t.fail(f"{what}: an arena of {arena} B is below the lower bound "
                   f"{case['_bound']} B")
        if arena > QUALITY * ref:
            ratio = f"{arena / ref:.2f}x" if ref else "more than"
            t.fail(f"{what}: your arena is {arena} B, {ratio} the {ref} B of "
                   f"mlc.memory's greedy by size (at most {QUALITY}x passes; the lower "
                   f"bound is {case['_bound']} B)")
        t.passed.append(f"{what}: arena {arena} B, the library's {ref} B")

    def inspect(self, src, t):
        d = src.definition("greedy_by_size")
        used = (d.calls() & {"plan", "place", "find_offset", "get_planner", "GreedyBySize",
                             "GreedyByBreadth", "Optimal"}) if d is not None else set()
        t.true(not used, "greedy_by_size does not call mlc.memory's planners",
               f"it calls {', '.join(sorted(used))}: write the placement yourself")


# ---- exercise 4: a checkpointing schedule ---------------------------------------------------

def schedule_cost(sizes, costs, keep) -> tuple[int, int]:
    """``(peak, recompute)`` of keeping activations ``keep`` of a chain (the notebook's
    model): activation 0 is always kept; between two kept activations ``a < b`` backward
    recomputes activations ``a+1 .. b-1`` (layer ``i-1`` makes activation ``i``) and holds
    them all; ``peak`` is every kept activation plus the largest such segment."""
    n = len(sizes)
    kept = sorted(set(keep) | {0})
    ends = kept + [n]
    inner = [sum(sizes[a + 1:b]) for a, b in zip(ends, ends[1:], strict=False)]
    peak = sum(sizes[k] for k in kept) + max(inner, default=0)
    recompute = sum(costs[i - 1] for i in range(1, n) if i not in kept)
    return peak, recompute


def best_schedule(sizes, costs, budget):
    """``(recompute, keep)`` of the cheapest choice within the budget, or None.

    A dynamic programme: for each cap on the largest recomputed segment (one of the
    O(n^2) segment sums), walk the chain keeping, for every last kept activation, the least
    recomputation at each number of kept bytes; a kept set fits when its bytes plus the
    cap are within the budget. O(n^2) caps x O(n^2) transitions x distinct byte totals,
    against 2^(n-1) subsets for a search."""
    n = len(sizes)
    pre, cpre = [0], [0]
    for s, c in zip(sizes, costs, strict=True):
        pre.append(pre[-1] + s)
        cpre.append(cpre[-1] + c)
    best = None
    for cap in sorted({pre[b] - pre[a + 1] for a in range(n) for b in range(a + 1, n + 1)}):
        room = budget - cap
        if room < sizes[0]:
            break
        front = [{sizes[0]: (0, (0,))}]  # front[b]: {kept bytes: (recompute, keep)}
        for b in range(1, n + 1):
            cand = {}
            for a in range(b - 1, -1, -1):
                if pre[b] - pre[a + 1] > cap:
                    break
                extra, redo = (sizes[b] if b < n else 0), cpre[b - 1] - cpre[a]
                for used, (rec, keep) in front[a].items():
                    u, r = used + extra, rec + redo
                    if u <= room and (u not in cand or r < cand[u][0]):
                        cand[u] = (r, keep + (b,) if b < n else keep)
            front.append(cand)
        for r, keep in front[n].values():
            if best is None or r < best[0]:
                best = (r, list(keep))
    return best


def search_schedule(sizes, costs, budget):
    """:func:`best_schedule` by trying every subset: the tests' check of the programme."""
    n, best = len(sizes), None
    for r in range(n):
        for keep in combinations(range(1, n), r):
            peak, rec = schedule_cost(sizes, costs, keep)
            if peak <= budget and (best is None or rec < best[0]):
                best = (rec, list(keep))
    return best


def min_peak(sizes) -> int:
    n = len(sizes)
    return min(schedule_cost(sizes, [0] * n, keep)[0]
               for r in range(n) for keep in combinations(range(1, n), r))


def _chain_cases():
    rng = np.random.default_rng(1500)
    out = [("16 equal layers, a budget of 8 activations", [1024] * 16, [1] * 16, 8 * 1024),
           ("9 equal layers, a budget of 5 activations", [4096] * 9, [3] * 9, 5 * 4096),
           ("a chain of 6 and a budget for everything", [100, 200, 300, 400, 500, 600],
            [1] * 6, 2100)]
    for i in range(12):
        n = 5 + i % 9
        sizes = [int(s) for s in rng.choice([256, 512, 1024, 2048, 4096], n)]
        costs = [int(c) for c in rng.integers(1, 10, n)]
        lo, hi = min_peak(sizes), sum(sizes)
        budget = int(lo + (hi - lo) * rng.uniform(0.05, 0.6))
        out.append((f"hidden chain #{i + 1} ({n} layers)", sizes, costs, budget))
    sizes = [2048, 1024, 4096, 512, 2048, 1024, 4096]
    out.append(("a budget no choice meets", sizes, [2] * 7, min_peak(sizes) - 1))
    # too long to try every subset (2^39 of them for 40 layers)
    out.append(("40 equal layers, a budget of 12 activations", [1024] * 40, [1] * 40, 12 * 1024))
    sizes = [1024, 4096] * 12
    out.append(("24 layers of two sizes", sizes, [int(c) for c in rng.integers(1, 10, 24)],
                int(sum(sizes) * 0.3)))
    hidden = np.random.default_rng(hidden_seed(1501))
    sizes = [int(s) for s in hidden.choice([256, 512, 1024, 2048, 4096], 48)]
    out.append(("hidden chain of 48 layers", sizes,
                [int(c) for c in hidden.integers(1, 10, 48)], int(sum(sizes) * 0.25)))
    return out


def _ints(v):
    if isinstance(v, (list, tuple)) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        return list(v)
    return None


@exercise("memory_planning.checkpoint_schedule", points=3, notebook=NB,
          needs=("checkpoint_schedule",),
          hint="the chains are too long to try every set of activations: fix the largest "
               "segment you allow to be recomputed, then walk the chain once, keeping for "
               "each last kept activation the least recomputation at each number of kept "
               "bytes; try every cap and keep the best schedule within the budget")
class _CheckpointSchedule(Check):
    def cases(self):
        out = []
        for what, sizes, costs, budget in _chain_cases():
            best = best_schedule(sizes, costs, budget)
            out.append({"what": f"{what}: budget {budget} B", "sizes": sizes, "costs": costs,
                        "budget": budget, "_best": None if best is None else best[0]})
        return out

    def observe(self, ns, case):
        fn = need(ns, "checkpoint_schedule")
        res = call(case["what"], fn, list(case["sizes"]), list(case["costs"]), case["budget"])
        if res is None:
            return None
        try:
            return [int(k) if isinstance(k, (int, np.integer)) and not isinstance(k, bool)
                    else repr(k)[:40] for k in sorted(res, key=repr)][:1000]
        except TypeError:
            return repr(res)[:80]

    def judge(self, case, obs, t):
        what, sizes, costs, budget = case["what"], case["sizes"], case["costs"], case["budget"]
        best, n = case["_best"], len(sizes)
        if obs is None:
            if best is not None:
                t.fail(f"{what}: you returned None, but a choice within the budget exists "
                       f"(one recomputes {best})")
            t.passed.append(f"{what}: no choice fits, and you said so")
            return
        keep = _ints(obs)
        if keep is None:
            t.fail(f"{what}: expected a list of activation indices (ints) or None, got "
                   f"{obs!r}")
        bad = [k for k in keep if not 0 <= k < n]
        if bad:
            t.fail(f"{what}: activation {bad[0]} does not exist; the chain has activations "
                   f"0..{n - 1}")
        peak, rec = schedule_cost(sizes, costs, keep)
        if best is None:
            t.fail(f"{what}: keeping {sorted(set(keep))} peaks at {peak} B, over the budget; "
                   "no choice fits this budget, so the answer is None")
        if peak > budget:
            t.fail(f"{what}: keeping {sorted(set(keep))} peaks at {peak} B, over the budget "
                   f"of {budget} B (sizes {sizes})")
        if rec > best:
            t.fail(f"{what}: keeping {sorted(set(keep))} fits ({peak} B) but recomputes "
                   f"{rec}; a choice within the budget recomputes only {best} "
                   f"(sizes {sizes}, costs {costs})")
        t.passed.append(f"{what}: keeps {sorted(set(keep) | {0})}, peak {peak} B, "
                        f"recomputes {rec}")

    def inspect(self, src, t):
        found = _enumerates(src)
        t.true(found is None, "checkpoint_schedule does not try every subset",
               f"it {found}: a chain of n layers has 2^(n-1) subsets, 5 * 10^11 for 40 "
               f"layers; the exercise is the dynamic programme" if found else "")


_SUBSETS = {"combinations", "product", "permutations", "powerset", "combinations_with_replacement"}


def _enumerates(src) -> str | None:
    """How ``checkpoint_schedule`` (or a notebook function it calls) walks every subset,
    or None: itertools' generators, or a loop over ``range(1 << n)`` / ``range(2 ** n)``
    bit masks."""
    for d in src.reachable("checkpoint_schedule", skip=("schedule_cost",)):
        if d.calls() & _SUBSETS:
            return f"calls {', '.join(sorted(d.calls() & _SUBSETS))} in {d.name}"
        for node in ast.walk(d.tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "range"
                    and any(isinstance(b, ast.BinOp) and isinstance(b.op, (ast.LShift, ast.Pow))
                            for a in node.args for b in ast.walk(a))):
                return f"loops over bit masks ({ast.unparse(node)}) in {d.name}"
    return None

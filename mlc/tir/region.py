"""Access regions: which part of a buffer a piece of a loop nest touches.

A block inside loops ``i_0, i_1`` that reads ``B[vi]`` with ``vi = i_0 * 4 + i_1`` touches,
for one iteration of ``i_0``, the region ``B[i_0 * 4 : i_0 * 4 + 4]``: its start is an
expression of the loops we keep fixed (``i_0``) and its extent is a constant, found by
letting the inner loops (``i_1``) run over their ranges — "relaxing" them.

This is the question behind ``compute_at`` (which part of the producer must be computed
inside this loop?), ``cache_read`` (which part to copy?) and buffer compaction at lowering
(how small can an intermediate buffer be?). Regions are over-approximations: they may
cover a little more than is touched, never less.
"""

from __future__ import annotations

from . import expr as E
from .arith import INF, Linear, bound, linear, simplify
from .functor import collect_vars, post_order_visit, substitute
from .stmt import Block, BufferStore


def relax_index(e: E.PrimExpr, relax: dict, fixed: dict | None = None):
    """``(min_expr, extent)`` covering ``e`` while the variables in ``relax`` (Var ->
    (lo, hi)) run over their ranges; ``fixed`` gives ranges of the variables that stay
    symbolic (used to simplify and to bound non-linear parts). None when unbounded."""
    fixed = fixed or {}
    everything = {**fixed, **relax}
    lin = linear(simplify(e, everything))
    keep = Linear(e.dtype)
    keep.const = lin.const
    lo_sum = hi_sum = 0
    rel_ids = {id(v) for v in relax}
    for atom, c in lin.terms.values():
        if not any(id(v) in rel_ids for v in collect_vars(atom)):
            keep.add_atom(atom, c)
            continue
        if isinstance(atom, E.Var):
            lo, hi = relax[atom]
        elif isinstance(atom, E.FloorDiv) and isinstance(atom.b, E.IntImm) and atom.b.value > 0:
            inner = relax_index(atom.a, relax, fixed)
            if inner is None:
                return None
            xm, xe = inner
            d = atom.b.value
            xl = linear(xm)
            aligned = all(k % d == 0 for _, k in xl.terms.values())
            r = xl.const % d if aligned else d - 1
            width = (r + xe - 1) // d  # number of distinct quotients, minus one
            m = simplify(E.FloorDiv(xm, atom.b), fixed)
            if isinstance(m, E.IntImm):
                base = m.value
            else:  # the quotient's start stays symbolic; only its spread is relaxed
                keep.add_atom(m, c)
                base = 0
            lo, hi = base, base + width
        else:
            lo, hi = bound(atom, everything)
            if lo == -INF or hi == INF:
                return None
        a, b = c * lo, c * hi
        lo_sum += min(a, b)
        hi_sum += max(a, b)
    keep.const += lo_sum
    return simplify(keep.to_expr(), fixed), int(hi_sum - lo_sum + 1)


def union_region(r1, r2, fixed: dict):
    """The smallest region of the form ``(min_expr, extent)`` covering both (per dim)."""
    out = []
    for (m1, e1), (m2, e2) in zip(r1, r2, strict=True):
        d = simplify(E.Sub(m2, m1), fixed)
        if isinstance(d, E.IntImm):
            lo, hi = min(0, d.value), max(e1, d.value + e2)
            out.append((simplify(E.Add(m1, E.IntImm(lo, m1.dtype)), fixed), hi - lo))
            continue
        (l1, h1), (l2, h2) = bound(m1, fixed), bound(m2, fixed)
        lo, hi = min(l1, l2), max(h1 + e1, h2 + e2)
        if lo == -INF or hi == INF:
            return None
        out.append((E.IntImm(int(lo), m1.dtype), int(hi - lo)))
    return out


def clamp_region(region, shape):
    """Keep a region inside ``[0, shape)`` where its start is a constant; cap extents."""
    out = []
    for (m, e), n in zip(region, shape, strict=True):
        if isinstance(m, E.IntImm):
            lo, hi = max(m.value, 0), min(m.value + e, n)
            out.append((E.IntImm(lo, m.dtype), max(hi - lo, 1)))
        else:
            out.append((m, min(e, n)))
    return out


def block_accesses(block: Block, kind: str = "both") -> list:
    """``(buffer, indices, is_store)`` for each access in a block's body and init."""
    out = []

    def f(n):
        if isinstance(n, E.BufferLoad) and kind in ("both", "read"):
            out.append((n.buffer, n.indices, False))
        elif isinstance(n, BufferStore) and kind in ("both", "write"):
            out.append((n.buffer, n.indices, True))

    for s in (block.init, block.body):
        if s is not None:
            post_order_visit(s, f)
    return out


def block_writes(block: Block) -> list:
    """Buffers a block stores to, in order of first store."""
    out = []
    for b, _, st in block_accesses(block, "write"):
        if st and b not in out:
            out.append(b)
    return out


def block_reads(block: Block) -> list:
    """Buffers a block loads from, except those it writes (a reduction reads its own
    output), in order of first load. ``cache_read``'s index counts in this list."""
    w = block_writes(block)
    out = []
    for b, _, _ in block_accesses(block, "read"):
        if b not in w and b not in out:
            out.append(b)
    return out


def access_region(block: Block, buffer, relax: dict, fixed: dict, kind: str = "both"):
    """Region of ``buffer`` touched by ``block`` (loads and/or stores), with the loop
    variables in ``relax`` running over their ranges and those in ``fixed`` symbolic.

    Returns a list of ``(min_expr, extent)`` per dimension, the whole buffer when the
    block's accesses cannot be bounded, or None when the block does not touch it.
    """
    bind = {iv.var: b for iv, b in zip(block.iter_vars, block.bindings, strict=True)}
    region = None
    for buf, idx, _ in block_accesses(block, kind):
        if buf is not buffer:
            continue
        dims = []
        for i in idx:
            r = relax_index(substitute(i, bind), relax, fixed)
            if r is None:
                dims = None
                break
            dims.append(r)
        if dims is None:
            dims = [(E.IntImm(0), n) for n in buffer.shape]
        region = dims if region is None else union_region(region, dims, fixed)
        if region is None:
            region = [(E.IntImm(0), n) for n in buffer.shape]
    return None if region is None else clamp_region(region, buffer.shape)

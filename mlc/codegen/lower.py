"""Lowering before code generation: place and shrink intermediate buffers.

During scheduling every intermediate buffer (``C_local``, ``A_shared``, a padded input)
is allocated once, at full size, at the top of the function. That is simple to reason
about but wasteful: after ``compute_at`` a producer fills only a tile per loop iteration.
:func:`compact_buffers` moves each allocation down to the innermost loop that contains
every access to it (their lowest common ancestor), and shrinks it to the region those
accesses touch within one iteration of that loop, rewriting indices relative to the
region's start. A "local" cache under a tile loop becomes a tile; a "shared" cache in a
GPU kernel spans the threads of a thread block (its region is relaxed over threadIdx
loops) but not the blocks.

An allocation never moves into a loop that carries a reduction into the buffer (the
partial sums must survive across that loop's iterations). For the "cuda" target, "global"
buffers stay full size at the root: the host allocates them.
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.arith import simplify
from ..tir.functor import (
    IRMutator, blocks_in, reduce_loop_vars, replace_buffers, stmt_children)
from ..tir.region import access_region, block_accesses, union_region
from ..tir.stmt import Allocate, Block, For, PrimFunc, join_root, seq, split_root
from ..tir.verify import verify


def _paths(root) -> dict:
    """id(block) -> list of loops around it, outermost first."""
    out = {}

    def walk(s, loops):
        if isinstance(s, Block):
            out[id(s)] = loops
            return
        if isinstance(s, For):
            loops = loops + [s]
        for c in stmt_children(s):
            walk(c, loops)

    walk(root, [])
    return out


def _touches(block: Block, buf) -> tuple:
    acc = block_accesses(block)
    return any(b is buf for b, _, _ in acc), any(b is buf and st for b, _, st in acc)


def _placement(buf, blocks, paths):
    """(lca loop index into the first path or -1 for the root, path) for ``buf``."""
    users = [b for b in blocks if _touches(b, buf)[0]]
    if not users:
        return None, []
    ps = [paths[id(b)] for b in users]
    depth = 0
    while all(len(p) > depth for p in ps) and all(p[depth] is ps[0][depth] for p in ps):
        depth += 1
    # do not allocate inside a loop that carries a reduction into this buffer
    for b in users:
        if not (b.is_reduction and _touches(b, buf)[1]):
            continue
        red_vars = reduce_loop_vars(b)
        for d, lp in enumerate(paths[id(b)][:depth]):
            if id(lp.loop_var) in red_vars:
                depth = d
                break
    return depth, users


def compact_buffers(func: PrimFunc, target: str = "cpu") -> PrimFunc:
    """Move each root allocation to its users' common loop and shrink it (see above)."""
    bufs, inner = split_root(func.body)
    if not bufs:
        return func
    blocks = blocks_in(inner)
    paths = _paths(inner)
    keep_root, moves = [], {}  # id(loop var) -> buffers to allocate inside that loop
    bmap, imap = {}, {}
    for buf in bufs:
        if target == "cuda" and buf.scope == "global":
            keep_root.append(buf)
            continue
        depth, users = _placement(buf, blocks, paths)
        if depth is None:
            continue  # never used: drop the allocation
        lca_path = paths[id(users[0])][:depth]
        fixed = {lp.loop_var: (0, lp.extent - 1) for lp in lca_path
                 if not (buf.scope == "shared" and lp.kind == "thread_binding"
                         and lp.thread_tag.startswith("threadIdx"))}
        region = None
        for b in users:
            relax = {lp.loop_var: (0, lp.extent - 1) for lp in paths[id(b)]
                     if lp.loop_var not in fixed}
            r = access_region(b, buf, relax, fixed)
            region = r if region is None else union_region(region, r, fixed)
        region = region or [(E.IntImm(0), n) for n in buf.shape]
        shape = [ext for _, ext in region]
        if any(not isinstance(m, E.IntImm) or m.value != 0 for m, _ in region) or \
                tuple(shape) != buf.shape:
            new = buf.with_(shape=shape)
            bmap[buf] = new
            mins = [m for m, _ in region]
            imap[buf] = (lambda idx, mins=mins, fixed=fixed:
                         [simplify(E.Sub(i, m), fixed) for i, m in zip(idx, mins, strict=True)])
        else:
            new = buf
        if depth == 0:
            keep_root.append(new)
        else:
            moves.setdefault(id(lca_path[-1].loop_var), []).append(new)
    body = replace_buffers(inner, bmap, imap) if bmap else inner
    if moves:
        body = _Place(moves).visit_stmt(body)
    return func.with_body(seq(join_root(keep_root, body)))


class _Place(IRMutator):
    """Wrap the bodies of the chosen loops (found by loop variable) in allocations."""

    def __init__(self, moves):
        self.moves = moves

    def visit_for(self, s):
        s2 = super().visit_for(s)
        allocs = self.moves.get(id(s.loop_var))
        if allocs is None or s2 is None:
            return s2
        body = s2.body
        for b in reversed(allocs):
            body = Allocate(b, body)
        return s2.with_(body=body)


def lower(func, target: str = "cpu") -> PrimFunc:
    """The PrimFunc code generation sees: verified, with buffers placed and compacted.

    Accepts a PrimFunc or a Schedule.
    """
    func = getattr(func, "func", func)
    if not isinstance(func, PrimFunc):
        raise TypeError(f"lower takes a PrimFunc or a Schedule, got {type(func).__name__}")
    verify(func)
    return compact_buffers(func, target)

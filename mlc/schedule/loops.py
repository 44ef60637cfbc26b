"""Loop primitives: split, fuse, reorder, and the loop annotations.

A loop variable appears only in block bindings and predicates (block bodies use their
iterators), so each rewrite here is a substitution in bindings followed by
simplification: ``split`` substitutes ``i -> i_0 * 4 + i_1``, ``fuse`` substitutes
``i -> f // 12, j -> f % 12``. Annotations (parallel, vectorize, unroll, bind) only change
a loop's kind, after checking the loop is safe to run that way.
"""

from __future__ import annotations

import math

from ..tir import expr as E
from ..tir.arith import simplify
from ..tir.functor import IRMutator, blocks_in, collect_vars, post_order_visit, substitute
from ..tir.region import block_reads, block_writes
from ..tir.stmt import THREAD_TAGS, Block, For, SeqStmt
from .state import LoopRV, binds_reduce, fail, loop_ranges, loops_of, replace, split_root


def _rebind(body, vmap: dict, ranges: dict, extra_pred=None):
    """Substitute loop variables in every block binding/predicate below ``body``."""

    class M(IRMutator):
        def visit_block(self, b):
            bindings = [simplify(substitute(x, vmap), ranges) for x in b.bindings]
            pred = substitute(b.predicate, vmap)
            if extra_pred is not None:
                pred = E.binary(E.And, pred, extra_pred)
            return b.with_(bindings=bindings, predicate=simplify(pred, ranges))

    return M().visit_stmt(body)


def split(sch, loop_rv, factors) -> list:
    loop, _ = sch._loop(loop_rv)
    name = loop.loop_var.name
    factors = list(factors)
    if not factors:
        fail(f"split: loop {name} needs at least one factor")
    if sum(f is None for f in factors) > 1:
        fail(f"split: at most one factor of {factors} may be None (inferred)")
    for f in factors:
        if f is not None and (not isinstance(f, int) or isinstance(f, bool) or f <= 0):
            fail(f"split: factors must be positive ints or None, got {factors}")
    if loop.kind != "serial":
        fail(f"split: loop {name} is {loop.kind}; split loops before annotating them")
    known = math.prod(int(f) for f in factors if f is not None)
    factors = [int(f) if f is not None else -(-loop.extent // known) for f in factors]
    total = math.prod(factors)
    if total < loop.extent:
        fail(f"split: factors {factors} do not cover extent {loop.extent} of loop {name} "
             f"(their product is {total} < {loop.extent})")
    new_vars = [E.Var(f"{name}_{k}", loop.loop_var.dtype) for k in range(len(factors))]
    fused = E.IntImm(0)
    for v, f in zip(new_vars, factors, strict=True):
        fused = E.Add(E.Mul(fused, E.IntImm(f)), v)
    ranges = loop_ranges(sch.func.body)
    ranges.update({v: (0, f - 1) for v, f in zip(new_vars, factors, strict=True)})
    fused = simplify(fused, ranges)
    # an imperfect split runs past the old extent: guard the blocks with a predicate
    guard = E.LT(fused, E.IntImm(loop.extent)) if total > loop.extent else None
    body = _rebind(loop.body, {loop.loop_var: fused}, ranges, guard)
    for v, f in reversed(list(zip(new_vars, factors, strict=True))):
        body = For(v, f, body)
    sch._set_body(replace(sch.func.body, {id(loop): body}))
    return [LoopRV(v) for v in new_vars]


def fuse(sch, loop_rvs) -> LoopRV:
    if len(loop_rvs) < 2:
        fail("fuse: give at least two loops")
    loops = [sch._loop(rv)[0] for rv in loop_rvs]
    names = [lp.loop_var.name for lp in loops]
    for outer, inner in zip(loops, loops[1:], strict=False):
        if outer.body is not inner:
            if not any(a is outer for a in sch._loop(LoopRV(inner.loop_var))[1]):
                fail(f"fuse: loop {inner.loop_var.name} is not inside loop "
                     f"{outer.loop_var.name}; give the loops outer to inner")
            body = outer.body
            what = (f"loop {body.loop_var.name} sits between them" if isinstance(body, For)
                    else f"block {body.name} sits between them" if isinstance(body, Block)
                    else "its body holds several statements")
            fail(f"fuse: loop {outer.loop_var.name}'s body is not exactly loop "
                 f"{inner.loop_var.name} ({what}); only perfectly nested loops fuse")
    for lp in loops:
        if lp.kind != "serial":
            fail(f"fuse: loop {lp.loop_var.name} is {lp.kind}; fuse loops before annotating")
    extent = math.prod(lp.extent for lp in loops)
    f = E.Var("_".join(names) + "_fused", loops[0].loop_var.dtype)
    vmap, inner = {}, 1
    for k in range(len(loops) - 1, -1, -1):
        q = E.FloorDiv(f, E.IntImm(inner)) if inner > 1 else f
        vmap[loops[k].loop_var] = q if k == 0 else E.FloorMod(q, E.IntImm(loops[k].extent))
        inner *= loops[k].extent
    ranges = loop_ranges(sch.func.body)
    ranges[f] = (0, extent - 1)
    body = _rebind(loops[-1].body, vmap, ranges)
    sch._set_body(replace(sch.func.body, {id(loops[0]): For(f, extent, body)}))
    return LoopRV(f)


def reorder(sch, loop_rvs) -> None:
    found = [sch._loop(rv) for rv in loop_rvs]
    loops = [lp for lp, _ in found]
    if len({id(lp) for lp in loops}) != len(loops):
        fail("reorder: a loop is given twice")
    if len(loops) < 2:
        return
    depth = {id(lp): len(loops_of(anc)) for lp, anc in found}
    by_depth = sorted(found, key=lambda t: depth[id(t[0])])
    outer, inner_anc = by_depth[0][0], by_depth[-1][1]
    for lp, anc in by_depth[1:]:
        if not any(a is outer for a in anc):
            fail(f"reorder: loops are not in one nest: loop {lp.loop_var.name} is not inside "
                 f"loop {outer.loop_var.name}")
    chain = loops_of(inner_anc)
    chain = chain[chain.index(outer):] + [by_depth[-1][0]]
    for a, b in zip(chain, chain[1:], strict=False):
        if a.body is not b:
            kids = a.body.seq if isinstance(a.body, SeqStmt) else [a.body]
            others = [k for k in kids if k is not b]
            names = [x.name for k in others for x in blocks_in(k)]
            what = (f"block {', '.join(names)} sits between them" if names
                    else "other statements sit between them")
            fail(f"reorder: loops are not a single chain: loop {a.loop_var.name} holds more "
                 f"than loop {b.loop_var.name} ({what})")
    for lp in loops:  # a loop over spatial and reduce iterators at once must keep its place:
        for blk in blocks_in(lp):  # moving it could visit an element after its init point
            kinds = {iv.kind for iv, b in zip(blk.iter_vars, blk.bindings, strict=True)
                     if lp.loop_var in collect_vars(b)}
            if kinds == {"spatial", "reduce"}:
                fail(f"reorder: loop {lp.loop_var.name} binds both spatial and reduce "
                     f"iterators of block {blk.name}; such a loop cannot be reordered")
    given = {id(lp) for lp in loops}
    slots = [i for i, lp in enumerate(chain) if id(lp) in given]
    new_chain = list(chain)
    for slot, lp in zip(slots, loops, strict=True):
        new_chain[slot] = lp
    body = chain[-1].body
    for lp in reversed(new_chain):
        body = lp.with_(body=body)
    sch._set_body(replace(sch.func.body, {id(outer): body}))


def _private(sch, block: Block, loop: For, scope_ok) -> bool:
    """Whether every buffer ``block`` writes is an intermediate touched only under ``loop``
    (lowering then allocates it inside the loop, one copy per iteration)."""
    allocated = split_root(sch.func.body)[0]
    inside = blocks_in(loop)
    for buf in block_writes(block):
        if buf not in allocated or not scope_ok(buf):
            return False
        for other in blocks_in(sch.func.body):
            touches = buf in block_writes(other) or buf in block_reads(other)
            if touches and not any(other is b for b in inside):
                return False
    return True


def annotate(sch, loop_rv, kind: str, thread_tag: str | None = None) -> None:
    loop, anc = sch._loop(loop_rv)
    name = loop.loop_var.name
    verb = {"parallel": "parallelize", "vectorized": "vectorize", "unrolled": "unroll",
            "thread_binding": f"bind loop {name} to {thread_tag}"}[kind]
    what = f"cannot {verb}" + ("" if kind == "thread_binding" else f" loop {name}")
    if kind == "thread_binding" and thread_tag not in THREAD_TAGS:
        fail(f"bind: unknown thread axis {thread_tag!r}; expected one of {THREAD_TAGS}")
    if loop.kind != "serial":
        fail(f"{what}: it is already {loop.kind}"
             + (f" ({loop.thread_tag})" if loop.thread_tag else ""))
    if kind == "unrolled":
        return _set_kind(sch, loop, kind, None)
    for blk in blocks_in(loop):
        rv = binds_reduce(blk, loop.loop_var)
        if rv is not None:
            fail(f"{what}: it binds a reduce iterator of block {blk.name} ({rv.name})")
        if kind == "vectorized" or not blk.is_reduction:
            continue
        uses = any(loop.loop_var in collect_vars(b) for b in blk.bindings)
        ok = (lambda buf: buf.scope == "local") if kind == "thread_binding" else \
            (lambda buf: True)
        if not uses and not _private(sch, blk, loop, ok):
            fail(f"{what}: reduction block {blk.name} does not depend on it, so every "
                 f"iteration would update the same elements of "
                 f"{', '.join(b.name for b in block_writes(blk))} at once")
    if kind == "thread_binding":
        # each other loop of the nest: where it sits, then the outer and the inner tag
        others = [(a, f"loop {a.loop_var.name} inside it is", thread_tag, a.thread_tag)
                  for a in _loops_below(loop)]
        others += [(a, f"it is inside loop {a.loop_var.name},", a.thread_tag, thread_tag)
                   for a in loops_of(anc)]
        for a, where, outer, inner in others:
            if a.thread_tag == thread_tag:
                fail(f"{what}: {where} already bound to {thread_tag}")
            if (outer or "").startswith("threadIdx") and (inner or "").startswith("blockIdx"):
                fail(f"{what}: {where} bound to {a.thread_tag}; blockIdx loops must enclose "
                     "threadIdx loops")
    elif kind == "parallel":
        for a in loops_of(anc):
            if a.kind == "thread_binding":
                fail(f"{what}: it is inside GPU loop {a.loop_var.name} ({a.thread_tag})")
    _set_kind(sch, loop, kind, thread_tag)


def _loops_below(loop: For) -> list:
    out = []
    post_order_visit(loop.body, lambda n: out.append(n) if isinstance(n, For) else None)
    return out


def _set_kind(sch, loop: For, kind: str, tag) -> None:
    sch._set_body(replace(sch.func.body, {id(loop): loop.with_(kind=kind, thread_tag=tag)}))


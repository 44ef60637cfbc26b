"""compute_at and reverse_compute_at: move a block into another block's loop nest.

``compute_at(B, loop)`` puts producer ``B`` inside ``loop`` of its consumer, computing only
the region of B's buffer that the consumer reads in one iteration of ``loop``.
``reverse_compute_at(D, loop)`` puts consumer ``D`` inside ``loop`` of its producer,
computing D for the region the producer has just finished. Both regenerate the moved
block's loops over that region (loops ``ax0, ax1, ...``), with a predicate where the region
could hang over the block's domain.
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.arith import expr_key, linear, prove, simplify
from ..tir.functor import blocks_in, collect_vars, substitute
from ..tir.region import (access_region, block_accesses, block_reads, block_writes,
                          relax_index, union_region)
from ..tir.stmt import Block, For
from .state import (child_index, conjuncts, fail, find_path, insert_at, loop_ranges, loops_of,
                    readers, replace, scope_body, writers)


def nest_for_region(block: Block, regions: dict, fixed: dict, extra=()) -> For | Block:
    """``block`` under fresh loops covering ``regions`` (iterator Var -> (min, extent));
    iterators without a region run over their whole domain. ``extra`` conditions (on the
    fixed loops) join the predicate."""
    loops, bindings, guards = [], [], list(extra)
    ranges = dict(fixed)
    for k, iv in enumerate(block.iter_vars):
        m, ext = regions.get(iv.var, (E.IntImm(iv.dom_min), iv.extent))
        ax = E.Var(f"ax{k}")
        loops.append((ax, ext))
        ranges[ax] = (0, ext - 1)
        val = simplify(E.Add(m, ax), ranges)
        bindings.append(val)
        for cond in (E.GE(val, E.IntImm(iv.dom_min)),
                     E.LT(val, E.IntImm(iv.dom_min + iv.extent))):
            if not prove(cond, ranges):
                guards.append(cond)
    unique = list({expr_key(g): g for g in guards}.values())
    pred = E.all_(*unique) if unique else E.const(True, "bool")
    stmt = block.with_(bindings=bindings, predicate=pred)
    for ax, ext in reversed(loops):
        stmt = For(ax, ext, stmt)
    return stmt


def outer_guards(blocks, fixed: dict, ranges: dict) -> list:
    """Conditions on the loops in ``fixed`` under which ``blocks`` do anything: in other
    iterations they are predicated off, so a block that consumes or copies their results
    must not run either (lowering gives it a fresh, unwritten buffer there). A predicate
    conjunct over inner loops too becomes "some inner iteration passes it"."""
    common = None
    for b in blocks:
        cs = {}
        for c in conjuncts(b.predicate):
            inner = [v for v in collect_vars(c) if v not in fixed]
            if inner:
                r = None
                if isinstance(c, (E.LT, E.LE, E.GT, E.GE)) and E.is_int(c.a.dtype):
                    r = relax_index(E.Sub(c.a, c.b), {v: ranges[v] for v in inner}, fixed)
                if r is None:
                    fail(f"cannot carry the predicate {c!r} of block {b.name} out of its loops")
                lo, ext = r  # some inner iteration passes when the best case does
                hi = E.Add(lo, E.IntImm(ext - 1))
                side = linear(lo if isinstance(c, (E.LT, E.LE)) else hi)
                bound_, side.const = -side.const, 0  # "x + 3 < 0" reads better as "x < -3"
                c = type(c)(side.to_expr(), E.IntImm(bound_))
                c = simplify(c, fixed)
                if isinstance(c, E.IntImm):
                    continue
            cs[expr_key(c)] = c
        common = cs if common is None else {k: v for k, v in common.items() if k in cs}
    return list((common or {}).values())


def _remove(root, block):
    return replace(root, {id(block): None})


def _fixed_ranges(root, loop, anc):
    """``(ranges of the loops down to loop, which stay symbolic; ranges of every loop)``;
    ``anc`` are the loop's ancestors."""
    ranges = loop_ranges(root)
    fixed = {lp.loop_var: ranges[lp.loop_var] for lp in loops_of(anc) + [loop]}
    return fixed, ranges


def _relax_for(root, loop, block, ranges):
    """Ranges of the loops between ``loop`` and ``block`` (relaxed)."""
    path = loops_of(find_path(root, lambda s: s is block)[1])
    below = path[path.index(loop) + 1:]
    return {lp.loop_var: ranges[lp.loop_var] for lp in below}


def _check_exact(block: Block, buf, relax: dict, ranges: dict, lname: str) -> None:
    """The consumer may only read what one iteration of the loop has *finished*, so the
    region the producer writes there must be known exactly: each index must step through
    its range like a mixed-radix counter of the inner loops (``c0 * a + c1 * b + b0`` with
    ``c0 = extent(b) * c1``), each inner loop feeding one index. Anything else (``//``,
    ``%`` of inner loops, strides) covers an over-approximated box with holes."""
    bind = {iv.var: x for iv, x in zip(block.iter_vars, block.bindings, strict=True)}
    for b, idx, _ in block_accesses(block, "write"):
        if b is not buf:
            continue
        used: set = set()
        for raw in idx:
            index = simplify(substitute(raw, bind), ranges)
            lin = linear(index)
            terms = []
            for atom, c in lin.terms.values():
                rel = [v for v in collect_vars(atom) if v in relax]
                if not rel:
                    continue
                if not isinstance(atom, E.Var) or c < 0 or id(atom) in used:
                    fail(f"reverse_compute_at: cannot tell exactly which elements of "
                         f"{buf.name} block {block.name} has finished inside loop {lname} "
                         f"(its index {index!r} is not a plain count of the inner loops)")
                used.add(id(atom))
                terms.append((c, relax[atom][1] + 1))
            terms.sort(reverse=True)
            ok = not terms or terms[-1][0] == 1
            steps = zip(terms, terms[1:], strict=False)
            ok = ok and all(c == c2 * e2 for (c, _), (c2, e2) in steps)
            if not ok:
                fail(f"reverse_compute_at: block {block.name} writes {buf.name} with gaps "
                     f"inside loop {lname} (index {index!r})")


def _same_region(r1, r2, fixed) -> bool:
    return all(e1 == e2 and isinstance(simplify(E.Sub(m1, m2), fixed), E.IntImm)
               and simplify(E.Sub(m1, m2), fixed).value == 0
               for (m1, e1), (m2, e2) in zip(r1, r2, strict=True))


def _spatial_store_map(block: Block, buf, prim: str) -> list:
    """The spatial iterator stored at each dimension of ``buf`` (``B[vi, vj]`` -> [vi, vj])."""
    spatial = [iv.var for iv in block.iter_vars if iv.kind == "spatial"]
    dims = None
    for b, idx, _ in block_accesses(block, "write"):
        if b is not buf:
            continue
        ok = all(isinstance(i, E.Var) and i in spatial for i in idx) and \
            len({id(i) for i in idx}) == len(idx)
        if not ok or (dims is not None and any(a is not c for a, c in zip(dims, idx, strict=True))):
            fail(f"{prim}: block {block.name} must store {buf.name} at its spatial iterators "
                 f"(like {buf.name}[vi, vj]); it stores {buf.name}{list(idx)}")
        dims = list(idx)
    if dims is not None and len(dims) != len(spatial):
        fail(f"{prim}: block {block.name} has spatial iterators that do not index "
             f"{buf.name}")
    return dims


def compute_at(sch, block_rv, loop_rv) -> None:
    root = sch.func.body
    blk, banc = sch._block(block_rv)
    loop, lanc = sch._loop(loop_rv)
    lname = loop.loop_var.name
    if any(a is loop for a in banc):
        fail(f"compute_at: block {blk.name} is already inside loop {lname}")
    outs = block_writes(blk)
    if len(outs) != 1:
        fail(f"compute_at: block {blk.name} must write exactly one buffer, it writes "
             f"{[b.name for b in outs]}")
    buf = outs[0]
    if buf in sch.func.params:
        fail(f"compute_at: block {blk.name} writes {buf.name}, a parameter of the function; "
             "computing only the region a consumer reads could leave part of it unwritten")
    others = writers(root, buf, exclude=blk)
    if others:
        fail(f"compute_at: {buf.name} is also written by block {others[0].name}; compute_at "
             "needs a single producer (decompose_reduction after compute_at)")
    dims = _spatial_store_map(blk, buf, "compute_at")
    consumers = readers(root, buf, exclude=blk)
    if not consumers:
        fail(f"compute_at: no block reads {buf.name}, so nothing needs block {blk.name} "
             "inside a loop")
    inside = blocks_in(loop)
    for c in consumers:
        if not any(c is b for b in inside):
            fail(f"compute_at: loop {lname} does not cover the consumer's region: consumer "
                 f"block {c.name} of {buf.name} is not inside loop {lname}")
    order = blocks_in(root)
    if order.index(blk) > order.index(inside[0]):
        fail(f"compute_at: block {blk.name} comes after loop {lname}; it must be computed "
             "before its consumers")
    fixed, ranges = _fixed_ranges(root, loop, lanc)
    region = None
    for c in consumers:
        r = access_region(c, buf, _relax_for(root, loop, c, ranges), fixed, "read")
        region = r if region is None else union_region(region, r, fixed)
    if region is None:
        region = [(E.IntImm(0), n) for n in buf.shape]
    kids = scope_body(root, loop)
    pos = min(child_index(kids, c) for c in consumers)
    for inp in block_reads(blk):
        for w in writers(root, inp, exclude=blk):
            if child_index(kids, w) >= pos:
                fail(f"compute_at: block {w.name} produces {inp.name}, an input of "
                     f"{blk.name}, after the place in loop {lname} where {blk.name} would go")
    nest = nest_for_region(blk, dict(zip(dims, region, strict=True)), fixed)
    # the block is not inside the loop, so removing it leaves the loop (the object) as it is
    sch._set_body(insert_at(_remove(root, blk), loop, pos, nest))


def reverse_compute_at(sch, block_rv, loop_rv) -> None:
    root = sch.func.body
    blk, banc = sch._block(block_rv)
    loop, lanc = sch._loop(loop_rv)
    lname = loop.loop_var.name
    if any(a is loop for a in banc):
        fail(f"reverse_compute_at: block {blk.name} is already inside loop {lname}")
    if blk.is_reduction:
        fail(f"reverse_compute_at: block {blk.name} is a reduction block; only blocks with "
             "spatial iterators alone can move after their producer")
    inside = blocks_in(loop)
    targets = [b for b in block_reads(blk)
               if any(b in block_writes(w) for w in inside)]
    if not targets:
        fail(f"reverse_compute_at: no block inside loop {lname} produces what block "
             f"{blk.name} reads")
    fixed, ranges = _fixed_ranges(root, loop, lanc)
    regions: dict = {}
    for buf in targets:
        region = None
        for w in writers(root, buf, exclude=blk):
            if not any(w is b for b in inside):
                fail(f"reverse_compute_at: block {w.name} also writes {buf.name} but is not "
                     f"inside loop {lname}")
            for lv in fixed:
                for iv, bnd in zip(w.iter_vars, w.bindings, strict=True):
                    if iv.kind == "reduce" and lv in collect_vars(bnd):
                        fail(f"reverse_compute_at: loop {lv.name} binds reduce iterator "
                             f"{iv.var.name} of producer block {w.name}, so {buf.name} is "
                             f"not final inside loop {lname}")
            relax = _relax_for(root, loop, w, ranges)
            _check_exact(w, buf, relax, ranges, lname)
            r = access_region(w, buf, relax, fixed, "write")
            if region is not None and not _same_region(region, r, fixed):
                fail(f"reverse_compute_at: the producers of {buf.name} inside loop {lname} "
                     "write different regions")
            region = r
        for b, idx, _ in block_accesses(blk, "read"):
            if b is not buf:
                continue
            for i, reg in zip(idx, region, strict=True):
                if not (isinstance(i, E.Var) and any(i is iv.var for iv in blk.iter_vars)):
                    fail(f"reverse_compute_at: block {blk.name} reads {buf.name} at "
                         f"{list(idx)}; each index must be one of its iterators")
                regions.setdefault(i, reg)
    kids = scope_body(root, loop)
    pos = 0
    for inp in block_reads(blk):
        for w in writers(root, inp, exclude=blk):
            k = child_index(kids, w)
            pos = max(pos, k + 1)
    for out in block_writes(blk):
        for c in readers(root, out, exclude=blk):
            if 0 <= child_index(kids, c) < pos:
                fail(f"reverse_compute_at: block {c.name} inside loop {lname} reads "
                     f"{out.name} before {blk.name} could write it")
    order = blocks_in(root)
    last = order.index(inside[-1])
    if order.index(blk) < last:
        fail(f"reverse_compute_at: block {blk.name} comes before loop {lname}")
    for inp in block_reads(blk):
        for w in writers(root, inp, exclude=blk):
            if order.index(w) > last:
                fail(f"reverse_compute_at: block {w.name} writes {inp.name}, which "
                     f"{blk.name} reads, after loop {lname}; {blk.name} cannot move before it")
    producers = [w for buf in targets for w in writers(root, buf, exclude=blk)]
    nest = nest_for_region(blk, regions, fixed, outer_guards(producers, fixed, ranges))
    sch._set_body(insert_at(_remove(root, blk), loop, pos, nest))

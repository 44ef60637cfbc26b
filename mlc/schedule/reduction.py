"""decompose_reduction: hoist a reduction's init out of its reduce loops.

A reduction block runs its ``init`` when all its reduce iterators are at their first
value: a branch inside the innermost loop. ``decompose_reduction(C, loop)`` moves the
init into its own block ``C_init``, placed just before ``loop``, under copies of the loops
from ``loop`` inward that bind spatial iterators (the reduce loops are dropped). The
update block keeps the loops and loses its ``init``. No more branch, and the init loop
can be vectorized on its own.
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.functor import collect_vars, substitute
from ..tir.stmt import Block, For, IterVar
from .compute_location import outer_guards
from .state import (BlockRV, fail, insert_at, loop_ranges, loops_of, replace, same_loop,
                    scope_body, unique_name)


def decompose_reduction(sch, block_rv, loop_rv) -> BlockRV:
    root = sch.func.body
    blk, banc = sch._block(block_rv)
    loop, lanc = sch._loop(loop_rv)
    lname = loop.loop_var.name
    if not blk.is_reduction:
        fail(f"decompose_reduction: block {blk.name} is not a reduction block")
    if blk.init is None:
        fail(f"decompose_reduction: block {blk.name} has no init to separate "
             "(already decomposed?)")
    path = loops_of(banc)
    if not any(lp is loop for lp in path):
        fail(f"decompose_reduction: loop {lname} is not an ancestor of block {blk.name}")
    k = path.index(loop)
    spatial_vars, reduce_vars = set(), set()
    for iv, b in zip(blk.iter_vars, blk.bindings, strict=True):
        ids = {id(v) for v in collect_vars(b)}
        (reduce_vars if iv.kind == "reduce" else spatial_vars).update(ids)
    for lp in path[:k]:
        if id(lp.loop_var) in reduce_vars:
            fail(f"decompose_reduction: loop {lp.loop_var.name} above loop {lname} binds a "
                 f"reduce iterator of block {blk.name}; the init would run more than once "
                 "per element")
    kept = []
    for lp in path[k:]:
        sp, rd = id(lp.loop_var) in spatial_vars, id(lp.loop_var) in reduce_vars
        if sp and rd:
            fail(f"decompose_reduction: loop {lp.loop_var.name} binds both spatial and reduce "
                 f"iterators of block {blk.name}")
        if sp:
            kept.append(lp)
    vmap = {lp.loop_var: E.Var(lp.loop_var.name + "_init", lp.loop_var.dtype) for lp in kept}
    spatial = [(iv, b) for iv, b in zip(blk.iter_vars, blk.bindings, strict=True)
               if iv.kind == "spatial"]
    ivmap = {iv.var: E.Var(iv.var.name + "_init", iv.var.dtype) for iv, _ in spatial}
    new_ivs = [IterVar(ivmap[iv.var], iv.extent, "spatial", iv.dom_min) for iv, _ in spatial]
    # the init runs where some iteration of the dropped loops runs the update
    ranges = loop_ranges(root)
    kept_vars = {lp.loop_var: ranges[lp.loop_var] for lp in path[:k] + kept}
    preds = [substitute(c, vmap) for c in outer_guards([blk], kept_vars, ranges)]
    name = unique_name(root, sch.func.params, blk.name + "_init")
    init_blk = Block(name, new_ivs, [substitute(b, vmap) for _, b in spatial],
                     substitute(blk.init, ivmap),
                     predicate=E.all_(*preds) if preds else True)
    stmt = init_blk
    for lp in reversed(kept):
        stmt = For(vmap[lp.loop_var], lp.extent, stmt, lp.kind, lp.thread_tag)
    parent = loops_of(lanc)[-1] if loops_of(lanc) else None
    kids = scope_body(root, parent)
    if loop not in kids:
        fail(f"decompose_reduction: loop {lname} is not directly in a loop body")
    root = replace(root, {id(blk): blk.with_(init=None)})
    sch._set_body(insert_at(root, same_loop(root, parent), kids.index(loop), stmt))
    return BlockRV(name)

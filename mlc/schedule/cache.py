"""cache_read and cache_write: stage a buffer through another memory scope.

``cache_read(C, 0, "shared")`` makes block C read its first input ``A`` from a new buffer
``A_shared`` filled by a new copy block (also named ``A_shared``), placed just before C.
``cache_write(C, 0, "local")`` makes C compute into ``C_local`` and adds a block that
copies ``C_local`` back to ``C`` just after it. The cache buffers have the full shape of
the original at first; ``compute_at``/``reverse_compute_at`` then move the copy blocks
into a tile loop, and lowering shrinks each cache to the tile it holds (that is what makes
a "shared" cache fit in GPU shared memory, or a "local" one in registers).
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.functor import replace_buffers
from ..tir.region import access_region, block_reads, block_writes
from ..tir.stmt import SCOPES, Block, BufferStore, IterVar
from .compute_location import nest_for_region, outer_guards
from .state import (BlockRV, child_index, fail, find_path, insert_at, join_root, loop_ranges,
                    loops_of, readers, replace, same_loop, scope_body, split_root, unique_name,
                    writers)


def _pick(buffers: list, index, block: Block, what: str, prim: str):
    names = ", ".join(b.name for b in buffers) or "none"
    if isinstance(index, str):
        for b in buffers:
            if b.name == index:
                return b
        fail(f"{prim}: block {block.name} does not {what} a buffer named {index!r} "
             f"(it {what}s: {names})")
    if not isinstance(index, int) or not 0 <= index < len(buffers):
        fail(f"{prim}: block {block.name} {what}s {len(buffers)} buffer(s) ({names}); "
             f"index {index!r} is out of range")
    return buffers[index]


def _lca_loop(root, blocks):
    """The innermost loop containing every block in ``blocks`` (None: the root, also when
    there is only one block: a cache for a function input or output goes at the top)."""
    if len(blocks) < 2:
        return None
    paths = [loops_of(find_path(root, lambda s, b=b: s is b)[1]) for b in blocks]
    lca = None
    for level in zip(*paths, strict=False):
        if all(lp is level[0] for lp in level):
            lca = level[0]
        else:
            break
    return lca


def _copy_block(name: str, src, dst) -> Block:
    """``dst[v0, v1, ...] = src[v0, v1, ...]`` over the whole shape."""
    ivs = [IterVar(E.Var(f"v{d}"), n, "spatial") for d, n in enumerate(src.shape)]
    vs = [iv.var for iv in ivs]
    return Block(name, ivs, [E.IntImm(0)] * len(ivs), BufferStore(dst, E.BufferLoad(src, vs), vs))


def _region_nest(root, lca, block: Block, buf, kind, copy: Block, follow: bool = False):
    """The copy block under loops covering the part of ``buf`` that ``block`` touches
    below ``lca`` (the loops down to ``lca`` stay symbolic)."""
    ranges = loop_ranges(root)
    path = loops_of(find_path(root, lambda s: s is block)[1])
    k = 0 if lca is None else path.index(lca) + 1
    fixed = {lp.loop_var: ranges[lp.loop_var] for lp in path[:k]}
    relax = {lp.loop_var: ranges[lp.loop_var] for lp in path[k:]}
    region = access_region(block, buf, relax, fixed, kind)
    regions = {iv.var: r for iv, r in zip(copy.iter_vars, region, strict=True)}
    # a copy-back must skip the iterations where the block it follows is predicated off
    extra = outer_guards([block], fixed, ranges) if follow else []
    return nest_for_region(copy, regions, fixed, extra)


def _add_alloc(root, buf):
    bufs, inner = split_root(root)
    return join_root(bufs + [buf], inner)


def cache_read(sch, block_rv, read_index, scope: str) -> BlockRV:
    root = sch.func.body
    blk, _ = sch._block(block_rv)
    if scope not in SCOPES:
        fail(f"cache_read: unknown scope {scope!r}; expected one of {SCOPES}")
    buf = _pick(block_reads(blk), read_index, blk, "read", "cache_read")
    name = unique_name(root, sch.func.params, f"{buf.name}_{scope}")
    cache = buf.with_(name=name, scope=scope)
    producers = writers(root, buf, exclude=blk)
    lca = _lca_loop(root, [blk] + producers)
    nest = _region_nest(root, lca, blk, buf, "read", _copy_block(name, buf, cache))
    kids = scope_body(root, lca)
    pos = child_index(kids, blk)
    for w in producers:
        if child_index(kids, w) >= pos:
            fail(f"cache_read: no place for the copy of {buf.name}: its producer {w.name} "
                 f"and the reader {blk.name} share a loop nest below their common loop")
    new_blk = replace_buffers(blk, {buf: cache})
    root = replace(root, {id(blk): new_blk})
    lca = same_loop(root, lca)
    root = insert_at(root, lca, pos, nest)
    sch._set_body(_add_alloc(root, cache))
    return BlockRV(name)


def cache_write(sch, block_rv, write_index, scope: str) -> BlockRV:
    root = sch.func.body
    blk, _ = sch._block(block_rv)
    if scope not in SCOPES:
        fail(f"cache_write: unknown scope {scope!r}; expected one of {SCOPES}")
    buf = _pick(block_writes(blk), write_index, blk, "write", "cache_write")
    others = writers(root, buf, exclude=blk)
    if others:
        fail(f"cache_write: buffer {buf.name} is also written by block {others[0].name}; "
             "cache_write needs a single producer (use it before decompose_reduction)")
    name = unique_name(root, sch.func.params, f"{buf.name}_{scope}")
    cache = buf.with_(name=name, scope=scope)
    new_blk = replace_buffers(blk, {buf: cache})
    consumers = readers(root, buf, exclude=blk)
    lca = _lca_loop(root, [blk] + consumers)
    kids = scope_body(root, lca)
    pos = child_index(kids, blk) + 1
    for c in consumers:
        if child_index(kids, c) < pos:
            fail(f"cache_write: no place for the copy-back of {buf.name}: the writer "
                 f"{blk.name} and its reader {c.name} share a loop nest below their common "
                 "loop")
    root = replace(root, {id(blk): new_blk})
    lca = same_loop(root, lca)
    nest = _region_nest(root, lca, new_blk, cache, "write", _copy_block(name, cache, buf),
                        follow=True)
    root = insert_at(root, lca, pos, nest)
    sch._set_body(_add_alloc(root, cache))
    return BlockRV(name)


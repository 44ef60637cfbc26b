"""compute_inline and reverse_compute_inline: fuse a block into its neighbour.

``compute_inline(B)`` replaces every read ``B[e0, e1]`` in B's consumers by B's value
expression with its iterators set to ``e0, e1``; B and its buffer disappear. This is how
elementwise producers (padding, bias, casts) fuse into the operator that reads them.

``reverse_compute_inline(D)`` goes the other way: the consumer ``D`` (say a ReLU) is
folded into the store of its producer, which then writes D's buffer directly.
"""

from __future__ import annotations

from ..tir import expr as E
from ..tir.functor import IRMutator, blocks_in, substitute
from ..tir.region import block_accesses, block_reads
from ..tir.stmt import Block, BufferStore
from .state import fail, join_root, readers, replace, split_root, writers


def _simple_store(blk: Block, prim: str, role: str = "block"):
    """The single store ``buf[v...] = value`` of a complete block, indices its iterators."""
    if blk.is_reduction or blk.init is not None:
        red = [iv.var.name for iv in blk.iter_vars if iv.kind == "reduce"]
        fail(f"{prim}: {role} {blk.name} is a reduction block (reduce iterator "
             f"{', '.join(red) or 'with init'}); only blocks with spatial iterators alone "
             "can be inlined")
    if not isinstance(blk.body, BufferStore):
        fail(f"{prim}: {role} {blk.name} must be a single store")
    st = blk.body
    ivars = [iv.var for iv in blk.iter_vars]
    if not (all(isinstance(i, E.Var) and i in ivars for i in st.indices)
            and len({id(i) for i in st.indices}) == len(st.indices) == len(ivars)):
        fail(f"{prim}: {role} {blk.name} stores {st.buffer.name}{list(st.indices)}; its "
             "indices must be its iterators, each once")
    if any(b is st.buffer for b, _, s in block_accesses(blk, "read") if not s):
        fail(f"{prim}: {role} {blk.name} reads the buffer it writes")
    return st


def _drop_alloc(root, buf):
    bufs, inner = split_root(root)
    return join_root([b for b in bufs if b is not buf], inner)


def compute_inline(sch, block_rv) -> None:
    root = sch.func.body
    blk, _ = sch._block(block_rv)
    st = _simple_store(blk, "compute_inline")
    buf = st.buffer
    if buf in sch.func.params:
        fail(f"compute_inline: block {blk.name} writes {buf.name}, a parameter (output) of "
             "the function, which must still be written")
    if writers(root, buf, exclude=blk):
        fail(f"compute_inline: {buf.name} has more than one producer")
    ivars = list(st.indices)

    class Inline(IRMutator):
        def visit_buffer_load(self, e):
            e = super().visit_buffer_load(e)
            if isinstance(e, E.BufferLoad) and e.buffer is buf:
                return substitute(st.value, dict(zip(ivars, e.indices, strict=True)))
            return e

    mapping = {id(blk): None}
    for c in readers(root, buf, exclude=blk):
        m = Inline()
        mapping[id(c)] = c.with_(body=m.visit_stmt(c.body), init=m.visit_stmt(c.init))
    sch._set_body(_drop_alloc(replace(root, mapping), buf))


def reverse_compute_inline(sch, block_rv) -> None:
    root = sch.func.body
    blk, _ = sch._block(block_rv)
    st = _simple_store(blk, "reverse_compute_inline")
    produced = [b for b in block_reads(blk) if writers(root, b, exclude=blk)]
    if len(produced) != 1:
        fail(f"reverse_compute_inline: block {blk.name} must read exactly one buffer made by "
             f"another block; it reads {[b.name for b in produced] or 'none'}")
    buf = produced[0]
    if buf in sch.func.params:
        fail(f"reverse_compute_inline: {buf.name} is a parameter of the function and must "
             "still be written")
    ws = writers(root, buf, exclude=blk)
    if len(ws) != 1:
        fail(f"reverse_compute_inline: {buf.name} has more than one producer")
    prod = ws[0]
    others = readers(root, buf, exclude=blk)
    others = [o for o in others if o is not prod]
    if others:
        fail(f"reverse_compute_inline: {buf.name} is also read by block {others[0].name}")
    pst = _simple_store(prod, "reverse_compute_inline", "producer block")
    loads = [idx for b, idx, s in block_accesses(blk, "read") if b is buf and not s]
    ivars = [iv.var for iv in blk.iter_vars]
    first = loads[0]
    for idx in loads:
        ok = all(isinstance(i, E.Var) for i in idx) and \
            all(i is j for i, j in zip(idx, first, strict=True))
        if not ok or len({id(i) for i in idx}) != len(ivars) or \
                not all(i in ivars for i in idx):
            fail(f"reverse_compute_inline: block {blk.name} reads {buf.name}{list(idx)}; it "
                 "must read it once per instance, at its iterators")
    # D's iterator u reads dimension d of B, which the producer writes at pst.indices[d]
    vmap = {u: pst.indices[d] for d, u in enumerate(first)}
    order = blocks_in(root)
    pos = order.index(prod)
    for inp in block_reads(blk):
        for w in writers(root, inp, exclude=blk):
            if inp is not buf and order.index(w) > pos:
                fail(f"reverse_compute_inline: block {w.name} writes {inp.name}, which "
                     f"{blk.name} reads, after producer {prod.name}")

    class Fold(IRMutator):
        def visit_buffer_load(self, e):
            if e.buffer is buf:
                return pst.value
            return super().visit_buffer_load(e)

    value = Fold().visit_expr(substitute(st.value, vmap))
    new_store = BufferStore(st.buffer, value, [substitute(i, vmap) for i in st.indices])
    new_prod = prod.with_(body=new_store)
    root = replace(root, {id(blk): None, id(prod): new_prod})
    sch._set_body(_drop_alloc(root, buf))

"""Well-formedness: the rules a PrimFunc must follow before it can be scheduled or built.

:func:`verify` walks the program and names every broken rule:

* every variable is bound where it is used: loop variables inside their loop, block
  iterators inside their block; a block's body uses its iterators, never loop variables
  (this is what lets schedules rewrite loops by rewriting bindings);
* a variable is bound by one loop or block only;
* every buffer used is a parameter or allocated by an enclosing ``Allocate``;
* each access has one index per buffer dimension, with integer indices;
* stores stay inside the buffer for every value of the block's iterator domains;
* block names are unique.
"""

from __future__ import annotations

from . import expr as E
from .arith import bound
from .functor import collect_vars, post_order_visit
from .printer import Namer, expr_to_str
from .stmt import Allocate, Block, BufferStore, For, IfThenElse, PrimFunc, SeqStmt


class VerifyError(ValueError):
    """A PrimFunc broke one or more well-formedness rules (all are listed)."""


def verify(func: PrimFunc, raise_error: bool = True) -> list:
    """Check ``func``; raise :class:`VerifyError` listing the problems, or return them."""
    errors: list = []
    namer = Namer()
    show = lambda e: expr_to_str(e, namer)  # noqa: E731
    bound_once: set = set()
    block_names: set = set()

    def check_accesses(node, where, buffers):
        def f(n):
            if isinstance(n, (E.BufferLoad, BufferStore)):
                b = n.buffer
                if b not in buffers:
                    errors.append(f"{where}: buffer {b.name} is used but not declared "
                                  "(not a parameter, and no Allocate encloses this use)")
                if len(n.indices) != b.ndim:
                    errors.append(f"{where}: {b.name} has {b.ndim} dims but is indexed with "
                                  f"{len(n.indices)} indices")
                for i in n.indices:
                    if not E.is_int(i.dtype):
                        errors.append(f"{where}: index {show(i)} of {b.name} is {i.dtype}, "
                                      "not an integer")
        post_order_visit(node, f)

    def check_vars(node, allowed, where, what):
        for v in collect_vars(node):
            if v not in allowed:
                errors.append(f"{where}: {what} uses unbound variable {namer(v)}")

    def bind(v, where):
        if id(v) in bound_once:
            errors.append(f"{where}: variable {namer(v)} is bound more than once")
        bound_once.add(id(v))

    def walk(s, loops: list, buffers: list):
        if s is None:
            return
        if isinstance(s, SeqStmt):
            for c in s.seq:
                walk(c, loops, buffers)
        elif isinstance(s, For):
            bind(s.loop_var, f"loop {namer(s.loop_var)}")
            walk(s.body, loops + [s.loop_var], buffers)
        elif isinstance(s, Allocate):
            walk(s.body, loops, buffers + [s.buffer])
        elif isinstance(s, IfThenElse):
            check_vars(s.condition, loops, "if", "the condition")
            check_accesses(s.condition, "if", buffers)
            walk(s.then_case, loops, buffers)
            walk(s.else_case, loops, buffers)
        elif isinstance(s, Block):
            check_block(s, loops, buffers)
        elif isinstance(s, BufferStore):
            check_vars(s, loops, f"store to {s.buffer.name}", "the statement")
            check_accesses(s, f"store to {s.buffer.name}", buffers)
        else:
            errors.append(f"unexpected statement {type(s).__name__} outside a block")

    def check_block(b: Block, loops, buffers):
        where = f"block {b.name}"
        if b.name in block_names:
            errors.append(f"{where}: the name is used by another block")
        block_names.add(b.name)
        for iv, val in zip(b.iter_vars, b.bindings, strict=True):
            bind(iv.var, where)
            for v in collect_vars(val):
                if v not in loops:
                    errors.append(f"{where}: binding of {namer(iv.var)} uses unbound variable "
                                  f"{namer(v)}")
        check_vars(b.predicate, loops, where, "the predicate")
        ivars = [iv.var for iv in b.iter_vars]
        dom = {iv.var: (iv.dom_min, iv.dom_min + iv.extent - 1) for iv in b.iter_vars}
        for part, stmt in (("body", b.body), ("init", b.init)):
            if stmt is None:
                continue
            for v in collect_vars(stmt):
                if v in loops:
                    errors.append(f"{where}: {part} uses loop variable {namer(v)} directly; "
                                  "blocks must use their own iterators")
                elif v not in ivars:
                    errors.append(f"{where}: {part} uses unbound variable {namer(v)}")
            check_accesses(stmt, where, buffers)

            def stores(n, part=part):
                if isinstance(n, (For, Block)):
                    errors.append(f"{where}: a {type(n).__name__} inside a block's {part} "
                                  "(blocks are leaves of the loop tree)")
                if isinstance(n, BufferStore) and len(n.indices) == n.buffer.ndim:
                    for d, (i, ext) in enumerate(zip(n.indices, n.buffer.shape, strict=True)):
                        lo, hi = bound(i, dom)
                        if lo < 0 or hi >= ext:
                            errors.append(f"{where}: store to {n.buffer.name} may leave the "
                                          f"buffer: index {show(i)} of dim {d} ranges over "
                                          f"[{lo}, {hi + 1}) but the extent is {ext}")
            post_order_visit(stmt, stores)

    walk(func.body, [], list(func.params))
    if errors and raise_error:
        raise VerifyError(f"PrimFunc {func.name} is not well formed:\n  - "
                          + "\n  - ".join(errors))
    return errors

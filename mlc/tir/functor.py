"""Walking and rewriting IR trees.

:class:`IRMutator` rebuilds a tree bottom-up and shares every subtree it did not change
(so ``new is old`` tells whether anything happened). Override a ``visit_<node>`` method
to rewrite that kind of node. :func:`substitute` replaces variables, :func:`post_order_visit`
calls a function on every node.
"""

from __future__ import annotations

from typing import Callable

from . import expr as E
from .stmt import Allocate, Block, BufferStore, For, IfThenElse, SeqStmt, Stmt, seq


def _same(xs, ys) -> bool:
    return len(xs) == len(ys) and all(x is y for x, y in zip(xs, ys, strict=True))


class IRMutator:
    """Rebuild expressions and statements; unchanged subtrees are returned as they are."""

    # ------------------------------------------------------------------ expressions
    def visit_expr(self, e: E.PrimExpr) -> E.PrimExpr:
        if isinstance(e, E.Var):
            return self.visit_var(e)
        if isinstance(e, E.BufferLoad):
            return self.visit_buffer_load(e)
        if isinstance(e, E.BinaryOp):
            a, b = self.visit_expr(e.a), self.visit_expr(e.b)
            return e if a is e.a and b is e.b else type(e)(a, b, e.dtype)
        if isinstance(e, E.Not):
            a = self.visit_expr(e.a)
            return e if a is e.a else E.Not(a)
        if isinstance(e, E.Cast):
            v = self.visit_expr(e.value)
            return e if v is e.value else E.Cast(e.dtype, v)
        if isinstance(e, E.Select):
            c, t, f = (self.visit_expr(x) for x in (e.condition, e.true_value, e.false_value))
            if c is e.condition and t is e.true_value and f is e.false_value:
                return e
            return E.Select(c, t, f)
        if isinstance(e, E.Call):
            args = tuple(self.visit_expr(a) for a in e.args)
            return e if _same(args, e.args) else E.Call(e.op, args, e.dtype)
        return e  # constants

    def visit_var(self, v: E.Var) -> E.PrimExpr:
        return v

    def visit_buffer(self, buf):
        return buf

    def visit_buffer_load(self, e: E.BufferLoad) -> E.PrimExpr:
        idx = tuple(self.visit_expr(i) for i in e.indices)
        buf = self.visit_buffer(e.buffer)
        return e if buf is e.buffer and _same(idx, e.indices) else E.BufferLoad(buf, idx)

    # ------------------------------------------------------------------ statements
    def visit_stmt(self, s: Stmt | None) -> Stmt | None:
        if s is None:
            return None
        method = getattr(self, "visit_" + type(s).__name__.lower())
        return method(s)

    def visit_bufferstore(self, s: BufferStore) -> Stmt:
        v = self.visit_expr(s.value)
        idx = tuple(self.visit_expr(i) for i in s.indices)
        buf = self.visit_buffer(s.buffer)
        if v is s.value and buf is s.buffer and _same(idx, s.indices):
            return s
        return BufferStore(buf, v, idx)

    def visit_seqstmt(self, s: SeqStmt) -> Stmt | None:
        new = [self.visit_stmt(c) for c in s.seq]
        return s if _same(new, s.seq) else seq(new)

    def visit_ifthenelse(self, s: IfThenElse) -> Stmt | None:
        c = self.visit_expr(s.condition)
        t, f = self.visit_stmt(s.then_case), self.visit_stmt(s.else_case)
        if c is s.condition and t is s.then_case and f is s.else_case:
            return s
        if t is None:
            return None if f is None else IfThenElse(E.Not(c), f)
        return IfThenElse(c, t, f)

    def visit_allocate(self, s: Allocate) -> Stmt | None:
        body = self.visit_stmt(s.body)
        buf = self.visit_buffer(s.buffer)
        if body is None:
            return None
        return s if body is s.body and buf is s.buffer else Allocate(buf, body)

    def visit_for(self, s: For) -> Stmt | None:
        body = self.visit_stmt(s.body)
        if body is None:  # a loop around nothing disappears
            return None
        return s if body is s.body else s.with_(body=body)

    def visit_block(self, b: Block) -> Stmt | None:
        bindings = tuple(self.visit_expr(x) for x in b.bindings)
        pred = self.visit_expr(b.predicate)
        body, init = self.visit_stmt(b.body), self.visit_stmt(b.init)
        if (_same(bindings, b.bindings) and pred is b.predicate and body is b.body
                and init is b.init):
            return b
        return b.with_(bindings=bindings, predicate=pred, body=body, init=init)


class _Substitute(IRMutator):
    def __init__(self, vmap):
        self.vmap = vmap

    def visit_var(self, v):
        return self.vmap.get(v, v)


def substitute(node, vmap: dict):
    """Replace variables (keys, by identity) with expressions in an expression or statement."""
    if not vmap:
        return node
    m = _Substitute({k: E.convert(v) for k, v in vmap.items()})
    return m.visit_expr(node) if isinstance(node, E.PrimExpr) else m.visit_stmt(node)


class _BufferReplace(IRMutator):
    def __init__(self, bmap, index_map):
        self.bmap, self.index_map = bmap, index_map

    def visit_buffer(self, buf):
        return self.bmap.get(buf, buf)

    def _indices(self, buf, idx):
        f = self.index_map.get(buf) if self.index_map else None
        return tuple(f(idx)) if f else idx

    def visit_buffer_load(self, e):
        idx = tuple(self.visit_expr(i) for i in e.indices)
        if e.buffer in self.bmap or (self.index_map and e.buffer in self.index_map):
            return E.BufferLoad(self.bmap.get(e.buffer, e.buffer), self._indices(e.buffer, idx))
        return super().visit_buffer_load(e)

    def visit_bufferstore(self, s):
        if s.buffer in self.bmap or (self.index_map and s.buffer in self.index_map):
            idx = tuple(self.visit_expr(i) for i in s.indices)
            return BufferStore(self.bmap.get(s.buffer, s.buffer), self.visit_expr(s.value),
                               self._indices(s.buffer, idx))
        return super().visit_bufferstore(s)

    def visit_allocate(self, s):
        body = self.visit_stmt(s.body)
        if body is None:
            return None
        return Allocate(self.bmap.get(s.buffer, s.buffer), body)


def replace_buffers(node, bmap: dict, index_map: dict | None = None):
    """Swap buffers (``bmap``: old -> new) in loads, stores and allocations.

    ``index_map`` optionally maps an old buffer to a function rewriting its index tuple
    (used when a buffer shrinks to the region actually touched).
    """
    m = _BufferReplace(bmap, index_map)
    return m.visit_expr(node) if isinstance(node, E.PrimExpr) else m.visit_stmt(node)


def expr_children(e: E.PrimExpr) -> tuple:
    if isinstance(e, E.BinaryOp):
        return (e.a, e.b)
    if isinstance(e, E.Not):
        return (e.a,)
    if isinstance(e, E.Cast):
        return (e.value,)
    if isinstance(e, E.Select):
        return (e.condition, e.true_value, e.false_value)
    if isinstance(e, E.BufferLoad):
        return e.indices
    if isinstance(e, E.Call):
        return e.args
    return ()


def stmt_exprs(s: Stmt) -> tuple:
    """The expressions held directly by a statement."""
    if isinstance(s, BufferStore):
        return (*s.indices, s.value)
    if isinstance(s, IfThenElse):
        return (s.condition,)
    if isinstance(s, Block):
        return (*s.bindings, s.predicate)
    return ()


def stmt_children(s: Stmt) -> tuple:
    """All child statements, including a block's init and body."""
    if isinstance(s, SeqStmt):
        return s.seq
    if isinstance(s, (For, Allocate)):
        return (s.body,)
    if isinstance(s, IfThenElse):
        return (s.then_case,) if s.else_case is None else (s.then_case, s.else_case)
    if isinstance(s, Block):
        return (s.body,) if s.init is None else (s.init, s.body)
    return ()


def post_order_visit(node, fn: Callable) -> None:
    """Call ``fn`` on every statement and expression below ``node`` (children first)."""
    stack = [(node, False)]
    while stack:
        n, done = stack.pop()
        if done:
            fn(n)
            continue
        stack.append((n, True))
        kids = expr_children(n) if isinstance(n, E.PrimExpr) else \
            (*stmt_children(n), *stmt_exprs(n))
        for k in reversed(kids):
            if k is not None:
                stack.append((k, False))


def collect_vars(node) -> list:
    """Variables used in ``node``, in first-use order, without repeats."""
    out, seen = [], set()

    def f(n):
        if isinstance(n, E.Var) and id(n) not in seen:
            seen.add(id(n))
            out.append(n)

    post_order_visit(node, f)
    return out


def reduce_loop_vars(block) -> set:
    """``id``s of the variables (loop vars) bound into ``block``'s reduce iterators: a loop
    over one of them carries the reduction."""
    return {id(v) for iv, b in zip(block.iter_vars, block.bindings, strict=True)
            if iv.kind == "reduce" for v in collect_vars(b)}


def blocks_in(node) -> list:
    """Blocks below ``node`` in program order."""
    out = []

    def walk(s):
        if isinstance(s, Block):
            out.append(s)
            return
        for c in stmt_children(s):
            walk(c)

    if node is not None:
        walk(node)
    return out

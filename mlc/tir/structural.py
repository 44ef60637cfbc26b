"""Structural equality: same tree shape, same constants, variables equal up to renaming.

Two programs are structurally equal when one can be turned into the other by renaming
variables and buffers consistently (alpha-equivalence). A variable is paired with its
counterpart where it is defined (a loop, a block iterator) or, for free variables, where
it is first met; afterwards every use must agree with that pairing. Block names, loop
kinds, extents, dtypes, shapes and scopes must match exactly.
"""

from __future__ import annotations

from . import expr as E
from .stmt import (Allocate, Block, Buffer, BufferStore, For, IfThenElse, IterVar, PrimFunc,
                   SeqStmt)


class _Eq:
    def __init__(self):
        self.vmap: dict = {}   # id(var in a) -> var in b
        self.bmap: dict = {}   # id(buffer in a) -> buffer in b

    def var(self, a, b) -> bool:
        if id(a) in self.vmap:
            return self.vmap[id(a)] is b
        if a.dtype != b.dtype or any(v is b for v in self.vmap.values()):
            return False
        self.vmap[id(a)] = b
        return True

    def buf(self, a: Buffer, b: Buffer) -> bool:
        if id(a) in self.bmap:
            return self.bmap[id(a)] is b
        if (a.shape, a.dtype, a.scope) != (b.shape, b.dtype, b.scope) \
                or any(x is b for x in self.bmap.values()):
            return False
        self.bmap[id(a)] = b
        return True

    def expr(self, a, b) -> bool:
        if type(a) is not type(b) or a.dtype != b.dtype:
            return False
        if isinstance(a, E.Var):
            return self.var(a, b)
        if isinstance(a, (E.IntImm, E.FloatImm)):
            return a.value == b.value or (a.value != a.value and b.value != b.value)
        if isinstance(a, E.BinaryOp):
            return self.expr(a.a, b.a) and self.expr(a.b, b.b)
        if isinstance(a, E.Not):
            return self.expr(a.a, b.a)
        if isinstance(a, E.Cast):
            return self.expr(a.value, b.value)
        if isinstance(a, E.Select):
            return (self.expr(a.condition, b.condition) and self.expr(a.true_value, b.true_value)
                    and self.expr(a.false_value, b.false_value))
        if isinstance(a, E.BufferLoad):
            return self.buf(a.buffer, b.buffer) and self.exprs(a.indices, b.indices)
        if isinstance(a, E.Call):
            return a.op == b.op and self.exprs(a.args, b.args)
        return False

    def exprs(self, xs, ys) -> bool:
        return len(xs) == len(ys) and all(self.expr(x, y) for x, y in zip(xs, ys, strict=True))

    def iv(self, a: IterVar, b: IterVar) -> bool:
        return ((a.extent, a.dom_min, a.kind) == (b.extent, b.dom_min, b.kind)
                and self.var(a.var, b.var))

    def stmt(self, a, b) -> bool:
        if a is None or b is None:
            return a is None and b is None
        if type(a) is not type(b):
            return False
        if isinstance(a, SeqStmt):
            return len(a.seq) == len(b.seq) and \
                all(self.stmt(x, y) for x, y in zip(a.seq, b.seq, strict=True))
        if isinstance(a, For):
            return ((a.extent, a.kind, a.thread_tag) == (b.extent, b.kind, b.thread_tag)
                    and self.var(a.loop_var, b.loop_var) and self.stmt(a.body, b.body))
        if isinstance(a, BufferStore):
            return (self.buf(a.buffer, b.buffer) and self.exprs(a.indices, b.indices)
                    and self.expr(a.value, b.value))
        if isinstance(a, IfThenElse):
            return (self.expr(a.condition, b.condition) and self.stmt(a.then_case, b.then_case)
                    and self.stmt(a.else_case, b.else_case))
        if isinstance(a, Allocate):
            return self.buf(a.buffer, b.buffer) and self.stmt(a.body, b.body)
        if isinstance(a, Block):
            return (a.name == b.name and len(a.iter_vars) == len(b.iter_vars)
                    and all(self.iv(x, y) for x, y in zip(a.iter_vars, b.iter_vars, strict=True))
                    and self.exprs(a.bindings, b.bindings)
                    and self.expr(a.predicate, b.predicate)
                    and self.stmt(a.init, b.init) and self.stmt(a.body, b.body))
        return False


def structural_equal(a, b) -> bool:
    """Whether two PrimFuncs, statements, expressions or buffers are equal up to renaming."""
    eq = _Eq()
    if isinstance(a, PrimFunc):
        if not isinstance(b, PrimFunc) or len(a.params) != len(b.params):
            return False
        return all(eq.buf(x, y) for x, y in zip(a.params, b.params, strict=True)) \
            and eq.stmt(a.body, b.body)
    if isinstance(a, Buffer):
        return isinstance(b, Buffer) and eq.buf(a, b)
    if isinstance(a, E.PrimExpr):
        return isinstance(b, E.PrimExpr) and eq.expr(a, b)
    return eq.stmt(a, b)


def assert_structural_equal(a, b) -> None:
    """Raise AssertionError showing both programs when they differ."""
    if not structural_equal(a, b):
        sa = a.script() if hasattr(a, "script") else repr(a)
        sb = b.script() if hasattr(b, "script") else repr(b)
        raise AssertionError(f"not structurally equal:\n--- left\n{sa}\n--- right\n{sb}")

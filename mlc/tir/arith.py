"""Integer arithmetic on index expressions: bounds, linear forms and simplification.

Schedules rewrite loops, so index expressions grow: a split turns ``i`` into
``i_0 * 4 + i_1``; fusing those back gives ``(f // 4) * 4 + f % 4``. This module keeps them
small and answers the questions schedule legality needs:

* :func:`bound` — the interval ``[lo, hi]`` an integer expression can take when each
  variable ranges over ``ranges[var] = (lo, hi)`` (inclusive; unknown variables are
  unbounded, ``math.inf``).
* :func:`linear` — an integer expression as ``sum(coeff * atom) + const``, where an atom
  is a variable or a sub-expression that is not linear (``x // 4``, ``x % 4``, ``x * y``).
* :func:`simplify` — constant folding plus rules that hold for integers in known ranges:
  ``(i_0*4 + i_1) // 4 -> i_0`` when ``0 <= i_1 < 4``, ``(x//c)*c + x%c -> x``, comparisons
  that the ranges decide become ``True``/``False``. Float arithmetic is only folded when
  both sides are constants (reassociating floats would change results).
"""

from __future__ import annotations

import math

from . import expr as E
from .functor import IRMutator

INF = math.inf


def expr_key(e: E.PrimExpr):
    """A hashable structural key (variables by identity), for grouping equal atoms."""
    if isinstance(e, E.Var):
        return ("v", id(e))
    if isinstance(e, (E.IntImm, E.FloatImm)):
        return ("c", e.value, e.dtype)
    if isinstance(e, E.BinaryOp):
        return (type(e).__name__, expr_key(e.a), expr_key(e.b))
    if isinstance(e, E.BufferLoad):
        return ("load", id(e.buffer), tuple(expr_key(i) for i in e.indices))
    if isinstance(e, E.Cast):
        return ("cast", e.dtype, expr_key(e.value))
    if isinstance(e, E.Not):
        return ("not", expr_key(e.a))
    if isinstance(e, E.Select):
        return ("sel", expr_key(e.condition), expr_key(e.true_value), expr_key(e.false_value))
    if isinstance(e, E.Call):
        return ("call", e.op, tuple(expr_key(a) for a in e.args))
    raise TypeError(f"not an expression: {e!r}")


# ------------------------------------------------------------------------ linear forms

class Linear:
    """``sum(coeff * atom) + const`` over integer atoms (ordered by first appearance)."""

    __slots__ = ("terms", "const", "dtype")

    def __init__(self, dtype="int32"):
        self.terms: dict = {}  # key -> [atom, coeff]
        self.const = 0
        self.dtype = dtype

    def add_atom(self, atom, coeff: int) -> None:
        if coeff == 0:
            return
        k = expr_key(atom)
        if k in self.terms:
            self.terms[k][1] += coeff
            if self.terms[k][1] == 0:
                del self.terms[k]
        else:
            self.terms[k] = [atom, coeff]

    def add(self, other: "Linear", scale: int = 1) -> None:
        for atom, c in list(other.terms.values()):
            self.add_atom(atom, c * scale)
        self.const += other.const * scale

    def to_expr(self) -> E.PrimExpr:
        pos = [(a, c) for a, c in self.terms.values() if c > 0]
        neg = [(a, -c) for a, c in self.terms.values() if c < 0]
        out = None
        for a, c in pos:
            t = a if c == 1 else E.Mul(a, E.IntImm(c, self.dtype))
            out = t if out is None else E.Add(out, t)
        const = self.const
        if out is None:  # no positive term: start from the constant, then subtract
            out, const = E.IntImm(const, self.dtype), 0
            if not neg:
                return out
        for a, c in neg:
            out = E.Sub(out, a if c == 1 else E.Mul(a, E.IntImm(c, self.dtype)))
        if const > 0:
            out = E.Add(out, E.IntImm(const, self.dtype))
        elif const < 0:
            out = E.Sub(out, E.IntImm(-const, self.dtype))
        return out


def linear(e: E.PrimExpr) -> Linear:
    """The linear form of an integer expression (non-linear parts become atoms)."""
    out = Linear(e.dtype)
    _lin(e, 1, out)
    _merge_div_mod(out)
    return out


def _lin(e, scale, out: Linear) -> None:
    if isinstance(e, E.IntImm):
        out.const += e.value * scale
    elif isinstance(e, E.Add):
        _lin(e.a, scale, out)
        _lin(e.b, scale, out)
    elif isinstance(e, E.Sub):
        _lin(e.a, scale, out)
        _lin(e.b, -scale, out)
    elif isinstance(e, E.Mul) and isinstance(e.b, E.IntImm):
        _lin(e.a, scale * e.b.value, out)
    elif isinstance(e, E.Mul) and isinstance(e.a, E.IntImm):
        _lin(e.b, scale * e.a.value, out)
    else:
        out.add_atom(e, scale)


def _merge_div_mod(lin: Linear) -> None:
    """``a*c*(x//c) + a*(x%c) -> a*x``: undo what fusing split loops produces."""
    changed = True
    while changed:
        changed = False
        for k, (atom, a) in list(lin.terms.items()):
            if not (isinstance(atom, E.FloorMod) and isinstance(atom.b, E.IntImm)):
                continue
            c = atom.b.value
            dk = ("FloorDiv", expr_key(atom.a), expr_key(atom.b))
            if dk in lin.terms and lin.terms[dk][1] == a * c:
                del lin.terms[k], lin.terms[dk]
                lin.add(linear(atom.a), a)
                changed = True
                break


# ------------------------------------------------------------------------ bounds

def _mul_iv(a, b):
    prods = [x * y for x in a for y in b if not ((x == 0 and abs(y) == INF)
                                                  or (y == 0 and abs(x) == INF))] or [0]
    return min(prods), max(prods)


def bound(e: E.PrimExpr, ranges: dict | None = None) -> tuple:
    """Inclusive interval of an integer expression; ``ranges`` maps Var -> (lo, hi)."""
    return _bound_atom(e, ranges or {})


def bound_linear(lin: Linear, ranges: dict) -> tuple:
    lo = hi = lin.const
    for atom, c in lin.terms.values():
        alo, ahi = _bound_atom(atom, ranges)
        x, y = _mul_iv((alo, ahi), (c, c))
        lo, hi = lo + x, hi + y
    return lo, hi


def _bound_atom(e, ranges) -> tuple:
    if isinstance(e, E.Var):
        return ranges.get(e, (-INF, INF))
    if isinstance(e, E.IntImm):
        return e.value, e.value
    if isinstance(e, (E.Add, E.Sub)) or (isinstance(e, E.Mul) and (
            isinstance(e.a, E.IntImm) or isinstance(e.b, E.IntImm))):
        return bound_linear(linear(e), ranges)
    if isinstance(e, E.Mul):
        return _mul_iv(bound(e.a, ranges), bound(e.b, ranges))
    if isinstance(e, (E.FloorDiv, E.FloorMod)) and isinstance(e.b, E.IntImm) and e.b.value > 0:
        c = e.b.value
        lo, hi = bound(e.a, ranges)
        if isinstance(e, E.FloorDiv):
            return (lo // c if lo > -INF else -INF), (hi // c if hi < INF else INF)
        if lo > -INF and hi < INF and lo // c == hi // c:
            return lo % c, hi % c
        return 0, c - 1
    if isinstance(e, (E.Min, E.Max)):
        (alo, ahi), (blo, bhi) = bound(e.a, ranges), bound(e.b, ranges)
        f = min if isinstance(e, E.Min) else max
        return f(alo, blo), f(ahi, bhi)
    if isinstance(e, E.Select):
        (alo, ahi), (blo, bhi) = bound(e.true_value, ranges), bound(e.false_value, ranges)
        return min(alo, blo), max(ahi, bhi)
    if e.dtype == "bool":
        return 0, 1
    if isinstance(e, E.Cast) and E.is_int(e.value.dtype):
        return bound(e.value, ranges)
    return -INF, INF


def prove(cond: E.PrimExpr, ranges: dict | None = None) -> bool:
    """True when ``cond`` holds for every value in ``ranges`` (False means "not proven")."""
    c = simplify(cond, ranges)
    return isinstance(c, E.IntImm) and c.value == 1


# ------------------------------------------------------------------------ simplify

def simplify(e: E.PrimExpr, ranges: dict | None = None) -> E.PrimExpr:
    """A simpler expression equal to ``e`` whenever variables lie in ``ranges``."""
    return _Simplifier(ranges or {}).run(e)


def _int_const(e):
    return isinstance(e, E.IntImm) and e.dtype != "bool"


class _BottomUp(IRMutator):
    """Rebuild an expression children first, then apply ``rule`` to each node."""

    def __init__(self, rule):
        self.rule = rule

    def visit_expr(self, x):
        return self.rule(super().visit_expr(x))


class _Simplifier:
    def __init__(self, ranges):
        self.ranges = ranges

    def run(self, e):
        return _BottomUp(self.rule).visit_expr(e)

    def rule(self, e):
        if isinstance(e, E.Var):  # a variable with a single possible value is that value
            r = self.ranges.get(e)
            return E.IntImm(int(r[0]), e.dtype) if r is not None and r[0] == r[1] else e
        if isinstance(e, E.BinaryOp) and isinstance(e.a, (E.IntImm, E.FloatImm)) \
                and isinstance(e.b, (E.IntImm, E.FloatImm)):
            return self.fold(e)
        if isinstance(e, E.Cast) and isinstance(e.value, (E.IntImm, E.FloatImm)):
            v = e.value.value
            return E.const(float(v) if E.is_float(e.dtype) else
                           (bool(v) if e.dtype == "bool" else int(v)), e.dtype)
        if E.is_int(e.dtype) and isinstance(e, (E.Add, E.Sub, E.Mul)):
            return linear(e).to_expr()
        if isinstance(e, (E.FloorDiv, E.FloorMod)) and _int_const(e.b) and e.b.value > 0:
            return self.divmod(e)
        if isinstance(e, (E.Min, E.Max)) and E.is_int(e.dtype):
            (alo, ahi), (blo, bhi) = bound(e.a, self.ranges), bound(e.b, self.ranges)
            if isinstance(e, E.Min):
                return e.a if ahi <= blo else e.b if bhi <= alo else e
            return e.a if alo >= bhi else e.b if blo >= ahi else e
        if isinstance(e, E.CmpOp) and not isinstance(e, (E.And, E.Or)) and E.is_int(e.a.dtype):
            return self.compare(e)
        if isinstance(e, (E.And, E.Or)):
            return self.logic(e)
        if isinstance(e, E.Not) and isinstance(e.a, E.IntImm):
            return E.const(not e.a.value, "bool")
        if isinstance(e, E.Select) and isinstance(e.condition, E.IntImm):
            return e.true_value if e.condition.value else e.false_value
        return e

    def fold(self, e):
        a, b = e.a.value, e.b.value
        if isinstance(e, (E.FloorDiv, E.FloorMod, E.Div)) and b == 0:
            return e  # leave division by zero for run time to report
        v = type(e).fold(a, b)
        if isinstance(e, E.CmpOp):
            return E.const(bool(v), "bool")
        if E.is_float(e.dtype):
            import numpy as np

            return E.FloatImm(float(np.dtype(e.dtype).type(v)), e.dtype)
        return E.IntImm(int(v), e.dtype)

    def divmod(self, e):
        c = e.b.value
        x = e.a
        if isinstance(e, E.FloorDiv) and isinstance(x, E.FloorDiv) and _int_const(x.b) \
                and x.b.value > 0:  # (y // a) // c == y // (a*c)
            return self.divmod(E.FloorDiv(x.a, E.IntImm(x.b.value * c, e.dtype)))
        lin = linear(x)
        q, r = Linear(e.dtype), Linear(e.dtype)
        for atom, k in lin.terms.values():
            (q if k % c == 0 else r).add_atom(atom, k // c if k % c == 0 else k)
        q.const, r.const = lin.const // c, lin.const % c
        rlo, rhi = bound_linear(r, self.ranges)
        if isinstance(e, E.FloorDiv):
            if 0 <= rlo and rhi < c:
                return q.to_expr()
            lo, hi = bound_linear(lin, self.ranges)
            if lo > -INF and hi < INF and lo // c == hi // c:
                return E.IntImm(int(lo // c), e.dtype)
            if not q.terms and q.const == 0:
                return E.FloorDiv(x, e.b)
            q.add_atom(E.FloorDiv(r.to_expr(), e.b), 1)
            return q.to_expr()
        if 0 <= rlo and rhi < c:
            return r.to_expr()
        lo, hi = bound_linear(lin, self.ranges)
        if 0 <= lo and hi < c:
            return x
        return E.FloorMod(r.to_expr(), e.b)  # multiples of c drop out of x % c

    def compare(self, e):
        d = linear(E.Sub(e.a, e.b))
        lo, hi = bound_linear(d, self.ranges)
        t = {E.LT: (hi < 0, lo >= 0), E.LE: (hi <= 0, lo > 0), E.GT: (lo > 0, hi <= 0),
             E.GE: (lo >= 0, hi < 0), E.EQ: (lo == hi == 0, lo > 0 or hi < 0),
             E.NE: (lo > 0 or hi < 0, lo == hi == 0)}[type(e)]
        if t[0]:
            return E.const(True, "bool")
        if t[1]:
            return E.const(False, "bool")
        return e

    def logic(self, e):
        a, b = e.a, e.b
        is_and = isinstance(e, E.And)
        for x, y in ((a, b), (b, a)):
            if isinstance(x, E.IntImm):
                if is_and:
                    return y if x.value else E.const(False, "bool")
                return E.const(True, "bool") if x.value else y
        return e

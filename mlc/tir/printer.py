"""Print IR as readable, Python-like text (``func.script()``).

The text mirrors TVMScript: loops show their kind (``range``, ``parallel``,
``vectorized``, ``unroll``, ``thread_binding``), blocks show their iterators with
``axis.spatial``/``axis.reduce`` and their bindings, ``where(...)`` shows a predicate and
``with init():`` the reduction's initialisation. Variables that share a name get
suffixes (``i``, ``i_1``) so the text is unambiguous.
"""

from __future__ import annotations

from . import expr as E
from .stmt import Allocate, Block, BufferStore, For, IfThenElse, PrimFunc, SeqStmt

PRECEDENCE = {E.Or: 1, E.And: 2, E.EQ: 4, E.NE: 4, E.LT: 4, E.LE: 4, E.GT: 4, E.GE: 4,
              E.Add: 5, E.Sub: 5, E.Mul: 6, E.Div: 6, E.FloorDiv: 6, E.FloorMod: 6}


def show_binary(e: E.BinaryOp, show, prec: int) -> str:
    """``a <op> b`` (or ``min(a, b)``) with the brackets Python's precedence needs inside a
    context of precedence ``prec``; ``show(x, prec)`` prints an operand. Shared by this
    printer and the code generator."""
    if isinstance(e, (E.Min, E.Max)):
        return f"{e.symbol}({show(e.a, 0)}, {show(e.b, 0)})"
    p = PRECEDENCE[type(e)]
    # left-associative: the right operand needs brackets at equal precedence;
    # comparisons chain in Python, so both their sides do
    left = p + 1 if isinstance(e, E.CmpOp) and p == 4 else p
    s = f"{show(e.a, left)} {e.symbol} {show(e.b, p + 1)}"
    return f"({s})" if p < prec else s


class Namer:
    """Unique, stable names for variables and buffers (by object identity)."""

    def __init__(self, reserved=()):
        self.names: dict = {}
        self.used = set(reserved)

        self.scopes: list = []

    def push(self) -> None:
        """Open a scope: names given out until :meth:`pop` may be reused afterwards."""
        self.scopes.append([])

    def pop(self) -> None:
        for key in self.scopes.pop():
            name, _ = self.names.pop(key)
            self.used.discard(name)

    def bind(self, var) -> str:
        """Name a variable that lives only in the current scope (a loop or block variable)."""
        name = self(var)
        if self.scopes:
            self.scopes[-1].append(id(var))
        return name

    def __call__(self, obj) -> str:
        if id(obj) in self.names:
            return self.names[id(obj)][0]
        base = obj.name if obj.name.isidentifier() else "v"
        name, n = base, 0
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        self.names[id(obj)] = (name, obj)  # keep obj alive so its id is not reused
        return name


def format_float(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))


def expr_to_str(e: E.PrimExpr, namer: Namer | None = None) -> str:
    namer = namer or Namer()
    return _Expr(namer).show(e, 0)


class _Expr:
    def __init__(self, namer):
        self.namer = namer

    def show(self, e, prec: int) -> str:
        if isinstance(e, E.Var):
            return self.namer(e)
        if isinstance(e, E.IntImm):
            return str(bool(e.value)) if e.dtype == "bool" else str(e.value)
        if isinstance(e, E.FloatImm):
            s = format_float(e.value)
            return f"({s})" if s.startswith("-") and prec > 0 else s
        if isinstance(e, E.BinaryOp):
            return show_binary(e, self.show, prec)
        if isinstance(e, E.Not):
            s = f"not {self.show(e.a, 3)}"
            return f"({s})" if prec > 3 else s
        if isinstance(e, E.Cast):
            return f"{e.dtype}({self.show(e.value, 0)})"
        if isinstance(e, E.Select):
            return (f"if_then_else({self.show(e.condition, 0)}, {self.show(e.true_value, 0)}, "
                    f"{self.show(e.false_value, 0)})")
        if isinstance(e, E.BufferLoad):
            idx = ", ".join(self.show(i, 0) for i in e.indices) or "()"
            return f"{self.namer(e.buffer)}[{idx}]"
        if isinstance(e, E.Call):
            return f"{e.op}({', '.join(self.show(a, 0) for a in e.args)})"
        raise TypeError(f"cannot print {type(e).__name__}")


def _loop_header(s: For, namer) -> str:
    v = namer(s.loop_var)
    if s.kind == "thread_binding":
        return f"for {v} in thread_binding({s.extent}, \"{s.thread_tag}\"):"
    fn = {"serial": "range", "parallel": "parallel", "vectorized": "vectorized",
          "unrolled": "unroll"}[s.kind]
    return f"for {v} in {fn}({s.extent}):"


def _stmt_lines(s, namer, ind: str, out: list) -> None:
    ex = _Expr(namer)
    if s is None:
        out.append(ind + "pass")
    elif isinstance(s, SeqStmt):
        for c in s.seq:
            _stmt_lines(c, namer, ind, out)
    elif isinstance(s, For):
        namer.push()
        namer.bind(s.loop_var)
        out.append(ind + _loop_header(s, namer))
        _stmt_lines(s.body, namer, ind + "    ", out)
        namer.pop()
    elif isinstance(s, BufferStore):
        idx = ", ".join(ex.show(i, 0) for i in s.indices) or "()"
        out.append(f"{ind}{namer(s.buffer)}[{idx}] = {ex.show(s.value, 0)}")
    elif isinstance(s, IfThenElse):
        out.append(f"{ind}if {ex.show(s.condition, 0)}:")
        _stmt_lines(s.then_case, namer, ind + "    ", out)
        if s.else_case is not None:
            out.append(ind + "else:")
            _stmt_lines(s.else_case, namer, ind + "    ", out)
    elif isinstance(s, Allocate):
        b = s.buffer
        out.append(f"{ind}{namer(b)} = alloc_buffer({b.shape}, \"{b.dtype}\", "
                   f"scope=\"{b.scope}\")")
        _stmt_lines(s.body, namer, ind, out)
    elif isinstance(s, Block):
        out.append(f"{ind}with block(\"{s.name}\"):")
        ind2 = ind + "    "
        namer.push()
        for iv in s.iter_vars:
            namer.bind(iv.var)
        for iv, b in zip(s.iter_vars, s.bindings, strict=True):
            dom = str(iv.extent) if iv.dom_min == 0 else f"({iv.dom_min}, " \
                f"{iv.dom_min + iv.extent})"
            out.append(f"{ind2}{namer(iv.var)} = axis.{iv.kind}({dom}, {ex.show(b, 0)})")
        if not (isinstance(s.predicate, E.IntImm) and s.predicate.value == 1):
            out.append(f"{ind2}where({ex.show(s.predicate, 0)})")
        if s.init is not None:
            out.append(f"{ind2}with init():")
            _stmt_lines(s.init, namer, ind2 + "    ", out)
        _stmt_lines(s.body, namer, ind2, out)
        namer.pop()
    else:
        raise TypeError(f"cannot print {type(s).__name__}")


def stmt_to_str(s, namer: Namer | None = None) -> str:
    out: list = []
    _stmt_lines(s, namer or Namer(), "", out)
    return "\n".join(out)


def func_to_str(f: PrimFunc) -> str:
    namer = Namer()
    params = ", ".join(f"{namer(b)}: Buffer({b.shape}, \"{b.dtype}\")" for b in f.params)
    out = ["@prim_func", f"def {f.name}({params}):"]
    _stmt_lines(f.body, namer, "    ", out)
    return "\n".join(out)

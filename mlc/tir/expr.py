"""Expressions of the tensor IR: variables, constants, arithmetic, loads and intrinsics.

Every expression is an immutable node with a ``dtype`` string ("int32", "float32",
"bool", ...). Python operators build nodes, so ``A[i, k] * B[k, j] + 1.0`` is an
expression tree, not a number. Two rules keep the trees honest:

* Python scalars take the dtype of the other operand (``x * 2`` keeps x's dtype);
  two expressions of different dtypes do not mix silently: cast one with
  :func:`cast` (``Cast``) first. Integers of different widths widen.
* ``==`` and ``!=`` build ``EQ``/``NE`` nodes (so ``te.if_then_else(i == 0, ...)``
  reads naturally); their truth value is object identity, so ``var in some_list``
  still works. Use :func:`mlc.tir.structural_equal` to compare trees.
"""

from __future__ import annotations

import math
import operator

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")
DTYPES = INT_DTYPES + FLOAT_DTYPES + ("bool",)
_INT_BITS = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
             "int64": 64, "uint64": 64}


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def check_dtype(dtype) -> str:
    """Normalise a dtype given as a string or numpy dtype; reject unknown ones."""
    name = getattr(dtype, "name", None) or str(dtype)
    if name not in DTYPES:
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return name


class PrimExpr:
    """Base of every expression node. Operators build new nodes."""

    __slots__ = ("dtype",)
    __hash__ = object.__hash__

    def __add__(self, o): return binary(Add, self, o)
    def __radd__(self, o): return binary(Add, o, self)
    def __sub__(self, o): return binary(Sub, self, o)
    def __rsub__(self, o): return binary(Sub, o, self)
    def __mul__(self, o): return binary(Mul, self, o)
    def __rmul__(self, o): return binary(Mul, o, self)
    def __truediv__(self, o): return binary(Div, self, o)
    def __rtruediv__(self, o): return binary(Div, o, self)
    def __floordiv__(self, o): return binary(FloorDiv, self, o)
    def __rfloordiv__(self, o): return binary(FloorDiv, o, self)
    def __mod__(self, o): return binary(FloorMod, self, o)
    def __rmod__(self, o): return binary(FloorMod, o, self)
    def __neg__(self): return binary(Sub, 0, self)
    def __lt__(self, o): return binary(LT, self, o)
    def __le__(self, o): return binary(LE, self, o)
    def __gt__(self, o): return binary(GT, self, o)
    def __ge__(self, o): return binary(GE, self, o)
    def __eq__(self, o): return binary(EQ, self, o)
    def __ne__(self, o): return binary(NE, self, o)
    def __and__(self, o): return binary(And, self, o)
    def __rand__(self, o): return binary(And, o, self)
    def __or__(self, o): return binary(Or, self, o)
    def __ror__(self, o): return binary(Or, o, self)
    def __invert__(self): return Not(self)

    def __bool__(self):
        raise TypeError("an IR expression has no truth value; use tir.all/tir.any/Select "
                        "to build conditions, or tir.structural_equal to compare trees")

    def astype(self, dtype: str) -> "PrimExpr":
        return cast(dtype, self)

    def __repr__(self):
        from .printer import expr_to_str

        return expr_to_str(self)


class Var(PrimExpr):
    """A named variable (loop variable, block iterator). Identity, not name, matters."""

    __slots__ = ("name",)

    def __init__(self, name: str, dtype: str = "int32"):
        self.name = name
        self.dtype = check_dtype(dtype)


class IntImm(PrimExpr):
    """An integer (or boolean, dtype "bool") constant."""

    __slots__ = ("value",)

    def __init__(self, value: int, dtype: str = "int32"):
        self.value = int(value)
        self.dtype = check_dtype(dtype)


class FloatImm(PrimExpr):
    """A floating-point constant."""

    __slots__ = ("value",)

    def __init__(self, value: float, dtype: str = "float32"):
        self.value = float(value)
        self.dtype = check_dtype(dtype)


class BinaryOp(PrimExpr):
    """``a <op> b``. Subclasses set ``symbol`` (for printing) and ``fold`` (for constants)."""

    __slots__ = ("a", "b")
    symbol = "?"
    fold = None

    def __init__(self, a: PrimExpr, b: PrimExpr, dtype: str | None = None):
        self.a, self.b = a, b
        self.dtype = dtype or a.dtype


def _floordiv(x, y):
    return x // y if isinstance(x, int) and isinstance(y, int) else math.floor(x / y)


class Add(BinaryOp): symbol, fold = "+", operator.add        # noqa: E701
class Sub(BinaryOp): symbol, fold = "-", operator.sub        # noqa: E701
class Mul(BinaryOp): symbol, fold = "*", operator.mul        # noqa: E701
class Div(BinaryOp): symbol, fold = "/", operator.truediv    # noqa: E701
class FloorDiv(BinaryOp): symbol, fold = "//", staticmethod(_floordiv)  # noqa: E701
class FloorMod(BinaryOp): symbol, fold = "%", operator.mod   # noqa: E701
class Min(BinaryOp): symbol, fold = "min", min               # noqa: E701
class Max(BinaryOp): symbol, fold = "max", max               # noqa: E701


class CmpOp(BinaryOp):
    """A comparison; its dtype is "bool"."""

    def __init__(self, a, b, dtype="bool"):
        super().__init__(a, b, "bool")


class EQ(CmpOp):
    symbol, fold = "==", operator.eq

    def __bool__(self):  # lets `var in list` and dict lookups work: identity of operands
        return self.a is self.b


class NE(CmpOp):
    symbol, fold = "!=", operator.ne

    def __bool__(self):
        return self.a is not self.b


class LT(CmpOp): symbol, fold = "<", operator.lt             # noqa: E701
class LE(CmpOp): symbol, fold = "<=", operator.le            # noqa: E701
class GT(CmpOp): symbol, fold = ">", operator.gt             # noqa: E701
class GE(CmpOp): symbol, fold = ">=", operator.ge            # noqa: E701
class And(CmpOp): symbol, fold = "and", staticmethod(lambda x, y: bool(x and y))  # noqa: E701
class Or(CmpOp): symbol, fold = "or", staticmethod(lambda x, y: bool(x or y))     # noqa: E701


class Not(PrimExpr):
    __slots__ = ("a",)

    def __init__(self, a: PrimExpr):
        a = convert(a)
        if a.dtype != "bool":
            raise TypeError(f"logical not needs a bool expression, got {a.dtype}")
        self.a, self.dtype = a, "bool"


class Cast(PrimExpr):
    """Convert ``value`` to ``dtype`` (float -> int truncates toward zero, as in C)."""

    __slots__ = ("value",)

    def __init__(self, dtype: str, value: PrimExpr):
        self.dtype, self.value = check_dtype(dtype), convert(value)


class Select(PrimExpr):
    """``true_value if condition else false_value``; only the chosen side is evaluated."""

    __slots__ = ("condition", "true_value", "false_value")

    def __init__(self, condition, true_value, false_value):
        condition = convert(condition)
        if condition.dtype != "bool":
            raise TypeError(f"Select condition must be bool, got {condition.dtype}")
        t, f = _unify(true_value, false_value)
        self.condition, self.true_value, self.false_value, self.dtype = condition, t, f, t.dtype


class BufferLoad(PrimExpr):
    """``buffer[indices]``: read one element."""

    __slots__ = ("buffer", "indices")

    def __init__(self, buffer, indices):
        self.buffer = buffer
        self.indices = tuple(convert(i) for i in indices)
        self.dtype = buffer.dtype


INTRINSICS = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh,
              "abs": abs, "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)), "erf": math.erf}


class Call(PrimExpr):
    """An intrinsic math function (``exp``, ``log``, ``sqrt``, ``tanh``, ``abs``, ``sigmoid``)."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, args, dtype: str | None = None):
        if op not in INTRINSICS:
            raise ValueError(f"unknown intrinsic {op!r}; known: {sorted(INTRINSICS)}")
        self.op, self.args = op, tuple(convert(a) for a in args)
        self.dtype = dtype or self.args[0].dtype


# ----------------------------------------------------------------------------- builders

def const(value, dtype: str | None = None) -> PrimExpr:
    """A constant node; the dtype defaults to int32/float32/bool from the Python type."""
    if dtype is None:
        dtype = "bool" if isinstance(value, bool) else "int32" if isinstance(value, int) \
            else "float32"
    dtype = check_dtype(dtype)
    if is_float(dtype):
        return FloatImm(value, dtype)
    if isinstance(value, float) and not value.is_integer():
        raise TypeError(f"cannot make a {dtype} constant from {value}")
    return IntImm(bool(value) if dtype == "bool" else value, dtype)


def convert(value, dtype: str | None = None) -> PrimExpr:
    """Turn a Python scalar into a constant (of ``dtype`` if given); pass nodes through."""
    if isinstance(value, PrimExpr):
        return value
    if hasattr(value, "dtype") and hasattr(value, "item"):  # numpy scalar
        return const(value.item(), dtype or str(value.dtype))
    if isinstance(value, (bool, int, float)):
        return const(value, dtype)
    raise TypeError(f"cannot use {type(value).__name__} {value!r} in an IR expression")


def _scalar_for(value, dtype: str) -> PrimExpr:
    """A Python scalar next to an expression of ``dtype`` takes that dtype."""
    if isinstance(value, bool):
        return const(value, "bool")
    if isinstance(value, float) and not is_float(dtype):
        if value.is_integer() and is_int(dtype):
            return const(int(value), dtype)
        raise TypeError(f"cannot combine a {dtype} expression with the float constant "
                        f"{value}; cast the expression first (Cast / .astype)")
    return convert(value, dtype if dtype != "bool" else None)


def _unify(a, b) -> tuple[PrimExpr, PrimExpr]:
    """Give two operands one dtype, following the rules in the module docstring."""
    if not isinstance(a, PrimExpr) and not isinstance(b, PrimExpr):
        a, b = convert(a), convert(b)
    elif not isinstance(a, PrimExpr):
        a = _scalar_for(a, b.dtype)
    elif not isinstance(b, PrimExpr):
        b = _scalar_for(b, a.dtype)
    if a.dtype == b.dtype:
        return a, b
    if is_int(a.dtype) and is_int(b.dtype):
        wide = a.dtype if _INT_BITS[a.dtype] >= _INT_BITS[b.dtype] else b.dtype
        return (a if a.dtype == wide else Cast(wide, a)), (b if b.dtype == wide else Cast(wide, b))
    for x, y in ((a, b), (b, a)):  # an integer constant next to a float takes its dtype
        if isinstance(x, IntImm) and x.dtype != "bool" and is_float(y.dtype):
            x2 = FloatImm(x.value, y.dtype)
            return (x2, y) if x is a else (y, x2)
    raise TypeError(f"dtype mismatch: {a.dtype} vs {b.dtype} in {a!r} and {b!r}; "
                    "insert a Cast (expr.astype(dtype)) to combine them")


def binary(cls, a, b) -> PrimExpr:
    """Build ``cls(a, b)`` after unifying dtypes and checking the operator applies."""
    a, b = _unify(a, b)
    if cls in (And, Or):
        if a.dtype != "bool":
            raise TypeError(f"'{cls.symbol}' needs bool operands, got {a.dtype}")
    elif cls is Div and not is_float(a.dtype):
        raise TypeError(f"'/' is true division and needs floats, got {a.dtype}; "
                        "use // (floordiv) for integers")
    elif cls in (FloorDiv, FloorMod) and not is_int(a.dtype):
        raise TypeError(f"'{cls.symbol}' needs integers, got {a.dtype}")
    return cls(a, b)


def cast(dtype: str, value) -> PrimExpr:
    value = convert(value)
    return value if value.dtype == check_dtype(dtype) else Cast(dtype, value)


def min_(a, b) -> PrimExpr: return binary(Min, a, b)     # noqa: E704
def max_(a, b) -> PrimExpr: return binary(Max, a, b)     # noqa: E704
def floordiv(a, b) -> PrimExpr: return binary(FloorDiv, a, b)  # noqa: E704
def floormod(a, b) -> PrimExpr: return binary(FloorMod, a, b)  # noqa: E704


def _call(op):
    def f(x):
        x = convert(x)
        if op != "abs" and not is_float(x.dtype):
            raise TypeError(f"{op} needs a float expression, got {x.dtype}")
        return Call(op, [x])

    f.__name__, f.__doc__ = op, f"The intrinsic ``{op}(x)``."
    return f


exp, log, sqrt, tanh, abs_, sigmoid, erf = (_call(o) for o in ("exp", "log", "sqrt", "tanh",
                                                                "abs", "sigmoid", "erf"))


def all_(*conds) -> PrimExpr:
    """Logical and of conditions (Python's ``and`` cannot be overloaded)."""
    out = convert(True)
    for i, c in enumerate(conds):
        out = convert(c) if i == 0 else binary(And, out, c)
    return out


def any_(*conds) -> PrimExpr:
    """Logical or of conditions."""
    out = convert(False)
    for i, c in enumerate(conds):
        out = convert(c) if i == 0 else binary(Or, out, c)
    return out


def max_value(dtype: str) -> PrimExpr:
    """The largest value of ``dtype`` (+inf for floats): the identity of a min-reduction."""
    import numpy as np

    dtype = check_dtype(dtype)
    return FloatImm(math.inf, dtype) if is_float(dtype) else IntImm(np.iinfo(dtype).max, dtype)


def min_value(dtype: str) -> PrimExpr:
    """The smallest value of ``dtype`` (-inf for floats): the identity of a max-reduction."""
    import numpy as np

    dtype = check_dtype(dtype)
    return FloatImm(-math.inf, dtype) if is_float(dtype) else IntImm(np.iinfo(dtype).min, dtype)

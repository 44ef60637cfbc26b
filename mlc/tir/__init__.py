"""The tensor IR: expressions, statements, buffers and PrimFuncs.

A ``PrimFunc`` is a loop nest over buffers whose computations sit in ``Block`` s::

    from mlc import te, tir
    func = te.create_prim_func([A, B, C])   # or build the nodes by hand
    print(func.script())
    sch = tir.Schedule(func)                 # transform the loops (mlc.schedule)
    mod = tir.build(sch, target="cpu")       # generate and compile code (mlc.codegen)

``Schedule``, ``ScheduleError``, ``build`` and ``lower`` live in the layers above
(``mlc.schedule``, ``mlc.codegen``); they are re-exported here lazily, so importing
``mlc.tir`` does not import them and there is no import cycle.
"""

from . import arith
from .expr import (INTRINSICS, Add, And, BinaryOp, BufferLoad, Call, Cast, CmpOp, Div, EQ,
                   FloatImm, FloorDiv, FloorMod, GE, GT, IntImm, LE, LT, Max, Min, Mul, NE,
                   Not, Or, PrimExpr, Select, Sub, Var, abs_, all_, any_, cast, const, convert,
                   erf, exp, floordiv, floormod, log, max_, max_value, min_, min_value, sigmoid,
                   sqrt, tanh)
from .functor import IRMutator, collect_vars, post_order_visit, substitute
from .printer import expr_to_str
from .stmt import (FOR_KINDS, SCOPES, THREAD_TAGS, Allocate, Block, Buffer, BufferStore, For,
                   IfThenElse, IterVar, PrimFunc, SeqStmt, Stmt, seq)
from .structural import assert_structural_equal, structural_equal
from .verify import VerifyError, verify

# Python-friendly aliases (``tir.all``/``tir.any``/``tir.min``/``tir.max``/``tir.abs``).
all = all_      # noqa: A001
any = any_      # noqa: A001
min = min_      # noqa: A001
max = max_      # noqa: A001
abs = abs_      # noqa: A001

_LAZY = {
    "Schedule": "mlc.schedule", "ScheduleError": "mlc.schedule", "LoopRV": "mlc.schedule",
    "BlockRV": "mlc.schedule", "Trace": "mlc.schedule",
    "build": "mlc.codegen", "lower": "mlc.codegen", "Module": "mlc.codegen",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlc.tir' has no attribute {name!r}")


__all__ = [
    "Add", "Allocate", "And", "BinaryOp", "Block", "Buffer", "BufferLoad", "BufferStore",
    "Call", "Cast", "CmpOp", "Div", "EQ", "FloatImm", "FloorDiv", "FloorMod", "For", "GE", "GT",
    "IfThenElse", "IntImm", "IterVar", "LE", "LT", "Max", "Min", "Mul", "NE", "Not", "Or",
    "PrimExpr", "PrimFunc", "Select", "SeqStmt", "Stmt", "Sub", "Var", "VerifyError",
    "IRMutator", "FOR_KINDS", "SCOPES", "THREAD_TAGS", "INTRINSICS", "arith",
    "abs", "all", "any", "cast", "collect_vars", "const", "convert", "erf", "exp", "expr_to_str",
    "floordiv", "floormod", "log", "max", "max_value", "min", "min_value", "post_order_visit",
    "seq", "sigmoid", "sqrt", "structural_equal", "assert_structural_equal", "substitute",
    "tanh", "verify", *_LAZY,
]

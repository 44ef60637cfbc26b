"""Elementwise operations: dtype rules and broadcasting, then one backend call.

The backends only know how to combine *compact* buffers of *one* dtype and *equal* size.
Everything else is decided here, in this order:

1. the result dtype, by numpy's promotion rules (python scalars are "weak": a float32
   array times 2.5 stays float32; int / int gives float64);
2. the result shape, by numpy's broadcasting rules;
3. each operand is cast, broadcast (a stride-0 view) and compacted;
4. one kernel writes the output.

Comparisons (``==``, ``<``, ...) return 1 or 0 in the promoted dtype of their operands,
as needle does (there is no bool dtype): ``(a < b)`` of float32 arrays is float32.
"""

from __future__ import annotations

from . import shapes as S
from .ndarray import NDArray, _as_operand

COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
# ``val - a`` is not ``a - val``: these need their own reflected kernels.
_REFLECTED = {"sub": "rsub", "div": "rdiv", "power": "rpower"}
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "power": "**", "eq": "==",
            "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _prepare(x: NDArray, shape, dtype: str) -> NDArray:
    """Cast, broadcast and compact one operand so a kernel can read it flat."""
    if x.dtype != dtype:
        x = x.astype(dtype)
    if x.shape != shape:
        x = x.broadcast_to(shape)
    return x.compact()


def binary(op: str, a: NDArray, b, reflected: bool = False) -> NDArray:
    """``a <op> b`` (or ``b <op> a`` when ``reflected``) for an NDArray or scalar ``b``."""
    device = a.device
    if isinstance(b, NDArray) or not _is_scalar(b):
        try:
            b = _as_operand(b, a)
        except TypeError:
            return NotImplemented
        dtype = S.result_dtype(op, a.dtype, b.dtype)
        try:
            shape = S.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            sym = _SYMBOLS.get(op, op)
            raise ValueError(f"operands of {sym} have shapes {a.shape} and {b.shape}, which "
                             "cannot be broadcast together") from None
        x, y = _prepare(a, shape, dtype), _prepare(b, shape, dtype)
        if reflected:
            x, y = y, x
        if op == "power" and dtype.startswith(("int", "uint")):
            _check_int_exponent(y)
        out = NDArray.make(shape, device=device, dtype=dtype)
        getattr(device, f"ewise_{op}")(x._handle, y._handle, out._handle)
        return out

    val = S.scalar_value(b)
    dtype = S.result_dtype(op, a.dtype, val)
    S.check_scalar_fits(val, dtype)
    x = _prepare(a, a.shape, dtype)
    if op == "power" and not reflected and val == 2:
        return binary("mul", x, x)  # x*x is exact and much faster than pow(x, 2)
    if op == "power" and dtype.startswith(("int", "uint")):
        if reflected:
            _check_int_exponent(x)
        elif val < 0:
            raise ValueError(f"integer array ({dtype}) to a negative power {val} is not "
                             "supported; cast with astype('float32') first")
    out = NDArray.make(a.shape, device=device, dtype=dtype)
    name = _REFLECTED[op] if reflected and op in _REFLECTED else op
    getattr(device, f"scalar_{name}")(x._handle, val, out._handle)
    return out


def _is_scalar(x) -> bool:
    try:
        S.scalar_value(x)
        return True
    except TypeError:
        return False


def _check_int_exponent(e: NDArray) -> None:
    if e.size and e.numpy().min() < 0:
        raise ValueError(f"integer array ({e.dtype}) to negative integer powers is not "
                         "supported; cast with astype('float32') first")


FLOAT_ONLY = ("log", "exp", "tanh", "sqrt", "erf")


def unary(op: str, a: NDArray) -> NDArray:
    """``op(a)`` for ``neg``, ``abs`` (any dtype) and ``log``, ``exp``, ``tanh``, ``sqrt``
    (float dtypes only: cast integer arrays with ``astype`` first)."""
    S.check_arithmetic(op, a.dtype)
    if op in FLOAT_ONLY and a.dtype not in S.FLOAT_DTYPES:
        raise TypeError(f"{op} needs a float array, got {a.dtype} with shape {a.shape}; "
                        "use .astype('float32') first")
    x = a.compact()
    out = NDArray.make(a.shape, device=a.device, dtype=a.dtype)
    getattr(a.device, f"ewise_{op}")(x._handle, out._handle)
    return out

"""Comparison ops, which ONNX models use for masks (``Equal``, ``Greater``, ``Less``), and
``subtract`` and ``minimum`` (ONNX's ``Sub`` and ``Min``, exact on unsigned integers).

Each is one elementwise entry. The result is ``uint8`` 0/1, mlc's stand-in for ``bool``
(NDArray has no bool dtype, and a byte per element is what a bool tensor stores), so it
feeds ``where`` directly::

    %m = less(%ids, %zero)                 uint8[1, 6]
    %i = where(%m, %ids_plus_n, %ids)      int64[1, 6]
"""

from __future__ import annotations

import operator

from ... import te
from .registry import elementwise, register


def _compare_dtype(dtypes, attrs):
    if dtypes[0] != dtypes[1]:
        raise TypeError(f"comparison of two dtypes: {dtypes[0]} and {dtypes[1]}")
    return "uint8"


def _comparison(name, cmp):
    def expr(x, attrs, dtype):
        return te.if_then_else(cmp(x[0], x[1]), te.const(1, "uint8"), te.const(0, "uint8"))

    def reference(attrs, a, b):
        return cmp(a, b).astype("uint8")

    return elementwise(name, expr, arity=2, reference=reference, dtype=_compare_dtype,
                       doc=f"``{name}(a, b)``: 1 where ``a {cmp.__name__} b``, else 0 (uint8)")


for _name, _cmp in (("equal", operator.eq), ("greater", operator.gt), ("less", operator.lt)):
    register(_comparison(_name, _cmp))

# ONNX's Sub and Min (and Cast's saturation) on unsigned integers: a + (-b) and
# -max(-a, -b) would negate an unsigned value, which has no meaning there, so the two are
# ops of their own (a - b wraps modulo 2**bits, as numpy and ONNX do).
register(elementwise("subtract", lambda x, attrs, dtype: x[0] - x[1], arity=2,
                     reference=lambda attrs, a, b: a - b,
                     doc="``subtract(a, b)``: ``a - b`` elementwise"))
register(elementwise("minimum", lambda x, attrs, dtype: te.min(x[0], x[1]), arity=2,
                     reference=lambda attrs, a, b: a.minimum(b),
                     doc="``minimum(a, b)``: the smaller of each pair of elements"))

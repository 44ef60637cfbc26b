"""The ops a transformer adds: gather, cast, concat, slice, select, erf/gelu, and the
composite softmax, layer norm and mean.

``softmax`` and ``layer_norm`` are one node each. Their ``te`` is their own fused loops
(max, ``exp``, sum, divide: one ``exp`` per element, whatever the fusion policy), and
their ``decompose`` writes them as primitive ops for a lecture that wants to watch fusion
put the pieces back together (:func:`mlc.graph.decompose`).
"""

from __future__ import annotations

import math

from ... import ops, te, tir
from ...ndarray.shapes import FLOAT_DTYPES, check_dtype
from ..lower_ops import const, load, te_shape
from .basic import reduce_te
from .registry import (OpDef, elementwise, first_shape, from_op, reduced_shape, register,
                       row_reduce_flops)


def _first_dtype(dtypes, attrs):
    return dtypes[0]


# -- elementwise -----------------------------------------------------------------------------
def _cast_dtype(dtypes, attrs):
    return check_dtype(attrs["dtype"])


register(elementwise("cast", lambda x, a, dt: tir.cast(dt, x[0]), (ops.Cast,),
                     make=lambda a: ops.Cast(a["dtype"]), dtype=_cast_dtype, flops=0,
                     attrs_of=lambda op: {"dtype": op.dtype}))
register(elementwise("erf", lambda x, a, dt: te.erf(x[0]), (ops.Erf,),
                     make=lambda a: ops.Erf()))
register(elementwise(
    "gelu", lambda x, a, dt: x[0] * const(0.5, dt) * (
        const(1.0, dt) + te.erf(x[0] * const(1 / math.sqrt(2.0), dt))),
    (ops.GELU,), make=lambda a: ops.GELU(), flops=5))


def _where_dtype(dtypes, attrs):
    if dtypes[1] != dtypes[2]:
        raise TypeError(f"where: x and y must have one dtype, got {dtypes[1]}, {dtypes[2]}")
    return dtypes[1]


def _where_expr(x, a, dt):
    zero = te.const(0, x[0].dtype) if x[0].dtype not in FLOAT_DTYPES else const(0.0,
                                                                                 x[0].dtype)
    return te.if_then_else(x[0] != zero, x[1], x[2])


register(elementwise("where", _where_expr, (ops.Where,), arity=3, make=lambda a: ops.Where(),
                     dtype=_where_dtype, flops=0))


# -- injective: gather, concat, slice ----------------------------------------------------------
def _take_shape(shapes, attrs):
    return tuple(shapes[1]) + tuple(shapes[0][1:])


def _take_dtype(dtypes, attrs):
    if not dtypes[1].startswith(("int", "uint")):
        raise TypeError(f"take: ids must be integers, got {dtypes[1]}")
    return dtypes[0]


def _take_te(node, args, name):
    """``table[ids[i], j]``. The kernel cannot raise, so an id outside the table gives NaN
    (or 0 in an integer table) instead of reading past the buffer."""
    table, ids = node.inputs
    k, rows = len(ids.shape), table.shape[0]
    bad = const(math.nan, node.dtype) if node.dtype in FLOAT_DTYPES else \
        te.const(0, node.dtype)

    def f(*i):
        row = load(args[1], ids, i[:k])
        ok = te.all(row >= te.const(0, row.dtype), row < te.const(rows, row.dtype))
        return te.if_then_else(ok, args[0][(row,) + tuple(i[k:])], bad)
    return te.compute(te_shape(node.shape), f, name=name)


register(OpDef("take", "injective", _take_shape, from_op(lambda a: ops.Take()), _take_te,
               dtype=_take_dtype, arity=2, flops=lambda n: 0, traces=(ops.Take,)))


def _concat_shape(shapes, attrs):
    ax = attrs["axis"]
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in
                                           enumerate(zip(s, shapes[0], strict=True)) if i != ax):
            raise ValueError(f"concat along axis {ax}: shapes {shapes} differ elsewhere")
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    return tuple(out)


def _concat_te(node, args, name):
    ax = node.attrs["axis"]
    starts = [0]
    for x in node.inputs:
        starts.append(starts[-1] + x.shape[ax])

    def f(*i):
        def pick(k):  # inputs k.. : a chain of selects on the axis position
            idx = list(i)
            idx[ax] = i[ax] - starts[k] if starts[k] else i[ax]
            value = args[k][tuple(idx)]
            if k == len(args) - 1:
                return value
            return te.if_then_else(i[ax] < starts[k + 1], value, pick(k + 1))
        return pick(0)
    return te.compute(te_shape(node.shape), f, name=name)


register(OpDef("concat", "injective", _concat_shape,
               lambda attrs, *arrays: ops.Concat(attrs["axis"]).compute(*arrays), _concat_te,
               arity=None, flops=lambda n: 0, traces=(ops.Concat,),
               attrs_of=lambda op: {"axis": int(op.axis)}))


def _slice_shape(shapes, attrs):
    return tuple(hi - lo for lo, hi in zip(attrs["starts"], attrs["stops"], strict=True))


def _slice_te(node, args, name):
    starts = node.attrs["starts"]
    return te.compute(te_shape(node.shape), lambda *i: args[0][tuple(
        v + lo if lo else v for v, lo in zip(i, starts, strict=True))], name=name)


register(OpDef("slice", "injective", _slice_shape,
               from_op(lambda a: ops.Slice(a["starts"], a["stops"])), _slice_te,
               flops=lambda n: 0, traces=(ops.Slice,),
               attrs_of=lambda op: {"starts": op.starts, "stops": op.stops}))


# -- composite reductions ----------------------------------------------------------------------
register(OpDef("reduce_mean", "reduce", reduced_shape,
               from_op(lambda a: ops.ReduceMean(a["axes"], a.get("keepdims", False))),
               reduce_te(te.sum, lambda v, n, dt: v / const(n, dt)),
               traces=(ops.ReduceMean,), flops=lambda n: n.inputs[0].size,
               attrs_of=lambda op: {"axes": tuple(op.axes), "keepdims": bool(op.keepdims)}))


def _row_stat(x, node, axis, reducer, body, name):
    """``reducer(body(x[..., r, ...]))`` over ``axis``, kept as an axis of length 1."""
    src = node.inputs[0]
    r = te.reduce_axis((0, src.shape[axis]), name="r")

    def f(*i):
        j = list(i)
        j[axis] = r
        return reducer(body(load(x, src, j), tuple(j)), axis=r)
    return te.compute(te_shape(_kept(src.shape, axis)), f, name=name)


def _kept(shape, axis):
    return tuple(1 if k == axis else n for k, n in enumerate(shape))


def _at_row(i, axis):
    j = list(i)
    j[axis] = 0
    return tuple(j)


def _softmax_te(node, args, name):
    """max, ``e = exp(x - max)`` (kept: one ``exp`` per element), its sum, ``e / sum``."""
    ax, x, src = node.attrs["axis"], args[0], node.inputs[0]
    shape = te_shape(node.shape)
    m = _row_stat(x, node, ax, te.max, lambda v, j: v, name + "_max")
    e = te.compute(shape, lambda *i: te.exp(load(x, src, i) - m[_at_row(i, ax)]),
                   name=name + "_exp")
    s = _row_stat(e, node, ax, te.sum, lambda v, j: v, name + "_sum")
    return te.compute(shape, lambda *i: e[i] / s[_at_row(i, ax)], name=name)


def _softmax_decompose(op, node, ins):
    """``e = exp(x - max)``, ``e / sum(e)``: the same arithmetic as primitive ops."""
    x, ax = ins[0], (node.attrs["axis"],)
    m = op("broadcast_to", op("reduce_max", x, axes=ax, keepdims=True), shape=node.shape)
    e = op("exp", op("add", x, op("negate", m)))
    s = op("broadcast_to", op("summation", e, axes=ax, keepdims=True), shape=node.shape)
    return op("divide", e, s)


register(OpDef("softmax", "reduce", first_shape,
               from_op(lambda a: ops.Softmax(a["axis"])), _softmax_te,
               flops=row_reduce_flops(5), traces=(ops.Softmax,),
               attrs_of=lambda op: {"axis": int(op.axis)}, decompose=_softmax_decompose))


def _layer_norm_shape(shapes, attrs):
    x, w, b = shapes
    if w != (x[-1],) or b != (x[-1],):
        raise ValueError(f"layer_norm: weight and bias must have shape ({x[-1]},), got {w}, "
                         f"{b}")
    return x


def _layer_norm_te(node, args, name):
    """Two row sums (of ``x``, then of ``(x - mean)^2``) and the normalised output."""
    x, w, b = args
    src, dt = node.inputs[0], node.dtype
    ax, n = len(src.shape) - 1, src.shape[-1]
    inv_n, eps = const(1.0 / n, dt), const(node.attrs["eps"], dt)
    total = _row_stat(x, node, ax, te.sum, lambda v, j: v, name + "_sum")

    def centred(v, j):
        d = v - total[_at_row(j, ax)] * inv_n
        return d * d
    sq = _row_stat(x, node, ax, te.sum, centred, name + "_sq")

    def f(*i):
        row = _at_row(i, ax)
        d = load(x, src, i) - total[row] * inv_n
        return d / te.sqrt(sq[row] * inv_n + eps) * w[(i[-1],)] + b[(i[-1],)]
    return te.compute(te_shape(node.shape), f, name=name)


def _layer_norm_decompose(op, node, ins):
    x, w, b = ins
    shape, ax, n = node.shape, (len(node.shape) - 1,), node.shape[-1]

    def row_mean(v):
        s = op("summation", v, axes=ax, keepdims=True)
        return op("broadcast_to", op("mul_scalar", s, scalar=1.0 / n), shape=shape)
    d = op("add", x, op("negate", row_mean(x)))
    var = row_mean(op("multiply", d, d))
    inv = op("power_scalar", op("add_scalar", var, scalar=node.attrs["eps"]), scalar=-0.5)
    return op("add", op("multiply", op("multiply", d, inv), op("broadcast_to", w, shape=shape)),
              op("broadcast_to", b, shape=shape))


register(OpDef("layer_norm", "reduce", _layer_norm_shape,
               from_op(lambda a: ops.LayerNorm(a["eps"])), _layer_norm_te,
               dtype=_first_dtype, arity=3, flops=row_reduce_flops(8),
               traces=(ops.LayerNorm,), attrs_of=lambda op: {"eps": float(op.eps)},
               decompose=_layer_norm_decompose))

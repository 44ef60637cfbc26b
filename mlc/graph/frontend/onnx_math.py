"""Converters of ONNX's elementwise, reduction and matrix ops (see :mod:`.onnx`).

Every converter takes a :class:`~.onnx.Ctx` and returns the mlc node(s) of the ONNX
node's outputs. ONNX broadcasts implicitly; mlc's elementwise ops take equal shapes, so
:func:`broadcast_all` makes the broadcast explicit first::

    ONNX   Add(x: [4, 1, 8], b: [8])
    mlc    %b_r = reshape(%b, shape=(1, 1, 8))
           %b_b = broadcast_to(%b_r, shape=(4, 1, 8))
           %y   = add(%x, %b_b)

A known scalar operand takes the scalar form instead (``add_scalar``, ``mul_scalar``...),
which needs no broadcast at all.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx import converter


def broadcast(ctx, x, shape):
    """``x`` broadcast to ``shape`` (numpy rules), as explicit ``reshape`` + ``broadcast_to``."""
    shape = tuple(int(s) for s in shape)
    if x.shape == shape:
        return x
    if len(x.shape) < len(shape):
        x = ctx.op("reshape", x, shape=(1,) * (len(shape) - len(x.shape)) + x.shape)
        if x.shape == shape:
            return x
    return ctx.op("broadcast_to", x, shape=shape)


def broadcast_all(ctx, *xs):
    try:
        shape = np.broadcast_shapes(*[x.shape for x in xs])
    except ValueError:
        raise ctx.error(f"input shapes {[x.shape for x in xs]} do not broadcast") from None
    return [broadcast(ctx, x, shape) for x in xs]


def _scalar_of(ctx, i):
    """The float of a known one-element float input ``i``, else None."""
    if ctx.is_static(i) and ctx.values[i].size == 1 and ctx.values[i].dtype.kind == "f":
        return float(ctx.values[i].reshape(()))
    return None


def _float_operand(ctx, i):
    return _scalar_of(ctx, i) is not None and ctx.values[i].ndim <= len(ctx.shape(1 - i))


def _binary(op, scalar_op=None, flip=None):
    def conv(ctx):
        if scalar_op and _float_operand(ctx, 1):
            return ctx.op(scalar_op, ctx.input(0), scalar=_scalar_of(ctx, 1))
        if flip and scalar_op and _float_operand(ctx, 0):
            return ctx.op(scalar_op, ctx.input(1), scalar=_scalar_of(ctx, 0))
        a, b = broadcast_all(ctx, ctx.input(0), ctx.input(1))
        return ctx.op(op, a, b)
    return conv


converter("Add", since=7)(_binary("add", "add_scalar", flip=True))
converter("Mul", since=7)(_binary("multiply", "mul_scalar", flip=True))
converter("Div", since=7)(_binary("divide", "divide_scalar"))


@converter("Pow", since=7)
def _pow(ctx):
    s = _scalar_of(ctx, 1)
    if s is not None and _float_operand(ctx, 1):
        return ctx.op("power_scalar", ctx.input(0), scalar=s)
    base, e = ctx.input(0), ctx.input(1)
    if e.dtype != base.dtype:            # ONNX lets the exponent have its own type
        e = ctx.op("cast", e, dtype=base.dtype)
    a, b = broadcast_all(ctx, base, e)
    return ctx.op("power", a, b)


converter("Equal", since=7)(_binary("equal"))
converter("Greater", since=7)(_binary("greater"))
converter("Less", since=7)(_binary("less"))


@converter("Sub", since=7)
def _sub(ctx):
    s = _scalar_of(ctx, 1)
    if s is not None and _float_operand(ctx, 1):
        return ctx.op("add_scalar", ctx.input(0), scalar=-s)
    a, b = broadcast_all(ctx, ctx.input(0), ctx.input(1))
    return ctx.op("subtract", a, b)


def _variadic(ctx, fn):
    xs = broadcast_all(ctx, *[ctx.input(i) for i in range(len(ctx)) if ctx.has(i)])
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


@converter("Max", since=8)
def _max(ctx):
    return _variadic(ctx, lambda a, b: ctx.op("maximum", a, b))


@converter("Min", since=8)
def _min(ctx):
    return _variadic(ctx, lambda a, b: ctx.op("minimum", a, b))


def _unary(op, **attrs):
    return lambda ctx: ctx.op(op, ctx.input(0), **attrs)


for _t, _op in {"Neg": "negate", "Exp": "exp", "Log": "log", "Relu": "relu", "Tanh": "tanh",
                "Sigmoid": "sigmoid", "Erf": "erf"}.items():
    converter(_t, since=6)(_unary(_op))
converter("Sqrt", since=6)(_unary("power_scalar", scalar=0.5))
converter("Reciprocal", since=6)(_unary("power_scalar", scalar=-1.0))


@converter("Abs", since=6)
def _abs(ctx):
    x = ctx.input(0)
    return ctx.op("maximum", x, ctx.op("negate", x))


@converter("Identity", since=1)
def _identity(ctx):
    return ctx.values[0]


@converter("Gelu", since=20)
def _gelu(ctx):
    x, mode = ctx.input(0), ctx.attr("approximate", "none")
    if mode == "none":
        return ctx.op("gelu", x)
    if mode != "tanh":
        raise ctx.unsupported("approximate", mode, "ONNX defines 'none' and 'tanh'")
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written with the registry's
    # elementwise ops (mlc's gelu op is the exact form); fusion makes it one kernel again
    cube = ctx.op("multiply", ctx.op("multiply", x, x), x)
    inner = ctx.op("add", x, ctx.op("mul_scalar", cube, scalar=0.044715))
    t = ctx.op("tanh", ctx.op("mul_scalar", inner, scalar=math.sqrt(2 / math.pi)))
    return ctx.op("multiply", ctx.op("mul_scalar", x, scalar=0.5),
                  ctx.op("add_scalar", t, scalar=1.0))


# -- reductions -------------------------------------------------------------------------
def _axes(ctx, rank, from_input: bool):
    if from_input:
        axes = ctx.static(1, "axes").tolist() if ctx.has(1) else None
    else:
        axes = ctx.attr("axes")
    if axes is None or len(axes) == 0:
        if ctx.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(rank))
    return tuple(sorted(int(a) % rank for a in axes))


def _reduce(op, axes_input_since):
    def conv(ctx):
        x = ctx.input(0)
        axes = _axes(ctx, len(x.shape), ctx.opset >= axes_input_since)
        if axes is None:
            return x
        keep = bool(ctx.attr("keepdims", 1))
        if 0 in x.shape:
            return _reduce_empty(ctx, op, x, axes, keep)
        return ctx.op(op, x, axes=axes, keepdims=keep)
    return conv


def _reduce_empty(ctx, op, x, axes, keep):
    """A reduction of an empty tensor is a constant, whatever x holds: empty itself when
    a kept axis is empty, else the identity over the empty reduced axes (ONNX: 0 for a
    sum, the dtype's lowest value for a max; a mean of nothing has no value)."""
    shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape) if keep or a not in axes)
    dt = np.dtype(x.dtype)
    if 0 in shape:
        fill = 0
    elif op == "summation":
        fill = 0
    elif op == "reduce_max":
        fill = -np.inf if dt.kind == "f" else np.iinfo(dt).min
    else:
        raise ctx.error(f"{op} over an empty axis of shape {x.shape} has no value")
    return ctx.const(np.full(shape, fill, dtype=dt))


converter("ReduceSum", since=1)(_reduce("summation", 13))
converter("ReduceMax", since=1)(_reduce("reduce_max", 18))
converter("ReduceMean", since=1)(_reduce("reduce_mean", 18))


@converter("Softmax", since=13)
def _softmax(ctx):
    x = ctx.input(0)
    return ctx.op("softmax", x, axis=int(ctx.attr("axis", -1)) % len(x.shape))


@converter("LayerNormalization", since=17)
def _layer_norm(ctx):
    x = ctx.input(0)
    rank = len(x.shape)
    axis = int(ctx.attr("axis", -1)) % rank
    if ctx.attr("stash_type", 1) != 1:
        raise ctx.unsupported("stash_type", ctx.attr("stash_type"), "statistics in float32 only")
    eps = float(ctx.attr("epsilon", 1e-5))
    inner = tuple(x.shape[axis:])
    d = int(np.prod(inner))
    flat = (*x.shape[:axis], d)
    w = broadcast(ctx, ctx.input(1), inner)
    b = broadcast(ctx, ctx.input(2), inner) if ctx.has(2) else ctx.const(
        np.zeros(inner, dtype=x.dtype))
    xr = ctx.op("reshape", x, shape=flat) if flat != x.shape else x
    y = ctx.op("layer_norm", xr, ctx.op("reshape", w, shape=(d,)),
               ctx.op("reshape", b, shape=(d,)), eps=eps)
    y = ctx.op("reshape", y, shape=x.shape) if flat != x.shape else y
    if not any(ctx.node.output[1:]):
        return y
    # the optional Mean and InvStdDev outputs: the statistics over the normalised axes
    axes = tuple(range(axis, rank))
    mean = ctx.op("reduce_mean", x, axes=axes, keepdims=True)
    d = ctx.op("add", x, ctx.op("negate", broadcast(ctx, mean, x.shape)))
    var = ctx.op("reduce_mean", ctx.op("multiply", d, d), axes=axes, keepdims=True)
    inv = ctx.op("power_scalar", ctx.op("add_scalar", var, scalar=eps), scalar=-0.5)
    return y, mean, inv


# -- matrix products ----------------------------------------------------------------------
def matmul(ctx, a, b):
    """numpy's ``matmul`` (1-D operands, broadcast batch axes) from mlc's 2-D / batched op."""
    a1, b1 = len(a.shape) == 1, len(b.shape) == 1
    if a1:
        a = ctx.op("reshape", a, shape=(1, a.shape[0]))
    if b1:
        b = ctx.op("reshape", b, shape=(b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise ctx.error(f"MatMul of shapes {a.shape} and {b.shape}: inner sizes differ")
    if len(b.shape) == 2:           # batched @ 2-D: one shared matrix, one op
        lead = a.shape[:-1]
        if len(a.shape) > 3:
            a = ctx.op("reshape", a, shape=(int(np.prod(lead[:-1])), *a.shape[-2:]))
        out = ctx.op("matmul", a, b)
        if len(lead) > 2:
            out = ctx.op("reshape", out, shape=(*lead, b.shape[-1]))
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a = broadcast(ctx, a, (*batch, *a.shape[-2:]))
        b = broadcast(ctx, b, (*batch, *b.shape[-2:]))
        nb = int(np.prod(batch))
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        a3 = ctx.op("reshape", a, shape=(nb, m, k)) if len(batch) != 1 else a
        b3 = ctx.op("reshape", b, shape=(nb, k, n)) if len(batch) != 1 else b
        out = ctx.op("matmul", a3, b3)
        if len(batch) != 1:
            out = ctx.op("reshape", out, shape=(*batch, m, n))
    if a1 or b1:
        shape = out.shape[:-2] + (() if a1 else out.shape[-2:-1]) + (() if b1 else
                                                                     out.shape[-1:])
        out = ctx.op("reshape", out, shape=shape)
    return out


@converter("MatMul", since=1)
def _matmul(ctx):
    return matmul(ctx, ctx.input(0), ctx.input(1))


@converter("Gemm", since=11)
def _gemm(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if ctx.attr("transA", 0):
        a = ctx.op("permute", a, axes=(1, 0))
    if ctx.attr("transB", 0):
        b = ctx.op("permute", b, axes=(1, 0))
    y = ctx.op("matmul", a, b)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    if alpha != 1.0:
        y = ctx.op("mul_scalar", y, scalar=alpha)
    if ctx.has(2) and beta != 0.0:
        c = ctx.input(2)
        if beta != 1.0:
            c = ctx.op("mul_scalar", c, scalar=beta)
        y = ctx.op("add", y, broadcast(ctx, c, y.shape))
    return y

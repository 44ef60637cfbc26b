"""The ops of units 08-11: arithmetic, activations, shapes, reductions, matmul, convolution.

Two exist only in graphs: ``reduce_max`` (the max inside ``logsumexp``, which tracing
takes apart into primitive ops) and ``batch_norm`` in inference form (what
``nn.BatchNorm1d`` computes in eval mode, kept whole so ``fold_batch_norm`` can find it).
"""

from __future__ import annotations

from ... import ops, te
from ...autograd import TensorOp
from ..lower_ops import binary_power, const, divide, load, power, reshape_index, te_shape
from .registry import (OpDef, attr_shape, elementwise, first_shape, from_op,
                       reduced_shape, register, sum_dtype)


def _scalar(op) -> dict:
    return {"scalar": op.scalar}


# -- elementwise ---------------------------------------------------------------------------
_BINARY = {  # name: (mlc.ops class, scalar expression)
    "add": (ops.EWiseAdd, lambda x, a, dt: x[0] + x[1]),
    "multiply": (ops.EWiseMul, lambda x, a, dt: x[0] * x[1]),
    "divide": (ops.EWiseDiv, lambda x, a, dt: divide(x[0], x[1], dt)),
    "power": (ops.EWisePow, lambda x, a, dt: binary_power(x[0], x[1], dt)),
    "maximum": (ops.Maximum, lambda x, a, dt: te.max(x[0], x[1])),
}
_UNARY = {
    "negate": (ops.Negate, lambda x, a, dt: const(0.0, dt) - x[0]),
    "exp": (ops.Exp, lambda x, a, dt: te.exp(x[0])),
    "log": (ops.Log, lambda x, a, dt: te.log(x[0])),
    "relu": (ops.ReLU, lambda x, a, dt: te.max(x[0], const(0.0, dt))),
    "tanh": (ops.Tanh, lambda x, a, dt: te.tanh(x[0])),
    "sigmoid": (ops.Sigmoid, lambda x, a, dt: te.sigmoid(x[0])),
}
_SCALAR = {
    "add_scalar": (ops.AddScalar, lambda x, a, dt: x[0] + const(a["scalar"], dt)),
    "mul_scalar": (ops.MulScalar, lambda x, a, dt: x[0] * const(a["scalar"], dt)),
    "divide_scalar": (ops.DivScalar, lambda x, a, dt: x[0] / const(a["scalar"], dt)),
    "power_scalar": (ops.PowerScalar, lambda x, a, dt: power(x[0], a["scalar"], dt)),
    "maximum_scalar": (ops.MaximumScalar, lambda x, a, dt: te.max(x[0], const(a["scalar"],
                                                                                dt))),
}
for _n, (_cls, _expr) in _BINARY.items():
    register(elementwise(_n, _expr, (_cls,), arity=2, make=lambda a, c=_cls: c()))
for _n, (_cls, _expr) in _UNARY.items():
    register(elementwise(_n, _expr, (_cls,), make=lambda a, c=_cls: c()))
for _n, (_cls, _expr) in _SCALAR.items():
    register(elementwise(_n, _expr, (_cls,), make=lambda a, c=_cls: c(a["scalar"]),
                         attrs_of=_scalar))


def _batch_norm_ref(attrs, x, mean, var, weight, bias):
    """``(x - mean) / sqrt(var + eps) * weight + bias``, the statistics given (eval mode)."""
    shape = x.shape
    scale = ((var + attrs["eps"]) ** 0.5).broadcast_to(shape)
    return (x - mean.broadcast_to(shape)) / scale * weight.broadcast_to(shape) + \
        bias.broadcast_to(shape)


def _batch_norm_te(node, args, name):
    x, mean, var, w, b = args
    eps = const(node.attrs["eps"], node.dtype)

    def f(*i):
        c = (i[-1],)
        return (load(x, node.inputs[0], i) - mean[c]) / te.sqrt(var[c] + eps) * w[c] + b[c]
    return te.compute(te_shape(node.shape), f, name=name)


class BatchNormEval(TensorOp):
    """BatchNorm1d in eval mode as one op on the tape (tracing keeps it whole)."""

    def __init__(self, eps: float):
        self.eps = eps

    def compute(self, x, mean, var, weight, bias):
        return _batch_norm_ref({"eps": self.eps}, x, mean, var, weight, bias)


register(OpDef("batch_norm", "broadcast", first_shape, _batch_norm_ref, _batch_norm_te,
               arity=5, flops=lambda n: 5 * n.size, traces=(BatchNormEval,),
               attrs_of=lambda op: {"eps": float(op.eps)}))


# -- broadcast and injective: a load at a computed index ----------------------------------
def _broadcast_te(node, args, name):
    src = node.inputs[0]
    lead = len(node.shape) - len(src.shape)

    def f(*i):
        j = [0 if n == 1 and node.shape[lead + k] != 1 else i[lead + k]
             for k, n in enumerate(src.shape)]
        return load(args[0], src, j)
    return te.compute(te_shape(node.shape), f, name=name)


def _reshape_te(node, args, name):
    src = node.inputs[0]

    def f(*i):
        idx = reshape_index(list(i if node.shape else ()), node.shape, src.shape) \
            if src.shape else ()
        return load(args[0], src, idx)
    return te.compute(te_shape(node.shape), f, name=name)


def _permute_te(node, args, name):
    inv = [0] * len(node.attrs["axes"])
    for k, ax in enumerate(node.attrs["axes"]):
        inv[ax] = k
    return te.compute(te_shape(node.shape), lambda *i: load(
        args[0], node.inputs[0], [i[inv[d]] for d in range(len(inv))]), name=name)


def _im2col_shape(shapes, attrs):
    n, h, w, c = shapes[0]
    (kh, kw), s = attrs["kernel"], attrs["stride"]
    return (n, (h - kh) // s + 1, (w - kw) // s + 1, kh, kw, c)


def _im2col_te(node, args, name):
    s = node.attrs["stride"]
    return te.compute(te_shape(node.shape), lambda n, h, w, kh, kw, c:
                      args[0][n, h * s + kh, w * s + kw, c], name=name)


def _pad_te(node, args, name):
    pads, src_shape = node.attrs["axes"], node.inputs[0].shape

    def f(*i):
        conds, src = [], []
        for k, (v, (lo, hi)) in enumerate(zip(i, pads, strict=True)):
            if lo or hi:
                conds += [v >= lo, v < lo + src_shape[k]]
            src.append(v - lo if lo else v)
        if not conds:
            return args[0][tuple(src)]
        return te.if_then_else(te.all(*conds), args[0][tuple(src)], const(0.0, node.dtype))
    return te.compute(te_shape(node.shape), f, name=name)


def _crop_te(node, args, name):
    return te.compute(te_shape(node.shape), lambda *i: args[0][tuple(
        v + lo for v, (lo, _) in zip(i, node.attrs["axes"], strict=True))], name=name)


def _flip_te(node, args, name):
    src, axes = node.inputs[0], node.attrs["axes"]
    return te.compute(te_shape(node.shape), lambda *i: args[0][tuple(
        (src.shape[k] - 1 - v) if k in axes else v for k, v in enumerate(i))], name=name)


def _pairs(op) -> dict:
    return {"axes": tuple(tuple(p) for p in op.axes)}


def _injective(name, shape, make, lower, traces, attrs_of, pattern="injective"):
    register(OpDef(name, pattern, shape, from_op(make), lower, flops=lambda n: 0,
                   traces=traces, attrs_of=attrs_of))


_injective("broadcast_to", attr_shape, lambda a: ops.BroadcastTo(a["shape"]), _broadcast_te,
           (ops.BroadcastTo,), lambda op: {"shape": tuple(op.shape)}, pattern="broadcast")
_injective("reshape", attr_shape, lambda a: ops.Reshape(a["shape"]), _reshape_te,
           (ops.Reshape,), lambda op: {"shape": tuple(op.shape)})
_injective("permute", lambda s, a: tuple(s[0][x] for x in a["axes"]),
           lambda a: ops.Permute(a["axes"]), _permute_te, (ops.Permute,),
           lambda op: {"axes": tuple(op.axes)})
_injective("im2col", _im2col_shape, lambda a: ops.Im2Col(tuple(a["kernel"]), a["stride"]),
           _im2col_te, (ops.Im2Col,),
           lambda op: {"kernel": tuple(op.kernel), "stride": int(op.stride)})
_injective("pad", lambda s, a: tuple(n + lo + hi for n, (lo, hi) in
                                     zip(s[0], a["axes"], strict=True)),
           lambda a: ops.Pad(a["axes"]), _pad_te, (ops.Pad,), _pairs)
_injective("crop", lambda s, a: tuple(n - lo - hi for n, (lo, hi) in
                                      zip(s[0], a["axes"], strict=True)),
           lambda a: ops.Crop(a["axes"]), _crop_te, (ops.Crop,), _pairs)
_injective("flip", first_shape, lambda a: ops.Flip(a["axes"]), _flip_te, (ops.Flip,),
           lambda op: {"axes": tuple(op.axes)})


# -- reductions ------------------------------------------------------------------------------
def reduce_te(reducer, finish=None):
    """A reduction over ``attrs["axes"]`` as ``te``; ``finish(value, count)`` post-processes
    the reduced value (the mean divides by the count)."""
    def lower(node, args, name):
        axes, keep = node.attrs["axes"], node.attrs.get("keepdims", False)
        src = node.inputs[0]
        if not axes:
            return te.compute(te_shape(node.shape), lambda *i: load(
                args[0], src, i if node.shape else ()), name=name)
        rs = {ax: te.reduce_axis((0, src.shape[ax]), name=f"r{ax}") for ax in axes}
        count = 1
        for ax in axes:
            count *= src.shape[ax]

        def f(*i):
            i = list(i if node.shape else ())
            j, pos = [], 0
            for d in range(len(src.shape)):
                if d in rs:
                    j.append(rs[d])
                    pos += 1 if keep else 0
                else:
                    j.append(i[pos])
                    pos += 1
            return reducer(load(args[0], src, j), axis=list(rs.values()))
        out = te.compute(te_shape(node.shape), f, name=name + ("_sum" if finish else ""))
        if finish is None:
            return out
        return te.compute(te_shape(node.shape), lambda *i: finish(out[i], count, node.dtype),
                          name=name)
    return lower


def _reduce_attrs(op) -> dict:
    return {"axes": tuple(op.axes), "keepdims": bool(op.keepdims)}


def _reduce_max_ref(attrs, a):
    axes = tuple(attrs["axes"])
    return a.max(axis=axes, keepdims=attrs.get("keepdims", False)) if axes else a


register(OpDef("summation", "reduce", reduced_shape,
               from_op(lambda a: ops.Summation(a["axes"], a.get("keepdims", False))),
               reduce_te(te.sum), dtype=sum_dtype, traces=(ops.Summation,),
               attrs_of=_reduce_attrs, flops=lambda n: n.inputs[0].size))
register(OpDef("reduce_max", "reduce", reduced_shape, _reduce_max_ref, reduce_te(te.max),
               flops=lambda n: n.inputs[0].size))


# -- matmul and the opaque col2im --------------------------------------------------------------
def _matmul_shape(shapes, attrs):
    a, b = shapes
    # batched @ 2-D (or 2-D @ batched) shares one matrix across the batch
    batch_ok = len(b) == 2 or len(a) == 2 or a[:-2] == b[:-2]
    if len(a) < 2 or len(b) < 2 or not batch_ok or a[-1] != b[-2]:
        raise ValueError(f"matmul: shapes {a} and {b} do not match")
    return (a if len(a) > 2 else b)[:-2] + (a[-2], b[-1])


def _matmul_te(node, args, name):
    A, B = args
    r = te.reduce_axis((0, node.inputs[0].shape[-1]), name="k")
    shape = te_shape(node.shape)
    if len(node.shape) == 2:
        return te.compute(shape, lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name=name)
    if len(node.inputs[1].shape) == 2:  # batched @ 2-D: one weight shared by every batch
        return te.compute(shape, lambda *i: te.sum(A[tuple(i[:-1]) + (r,)] * B[r, i[-1]],
                                                   axis=r), name=name)
    if len(node.inputs[0].shape) == 2:  # 2-D @ batched: one left matrix for every batch
        return te.compute(shape, lambda *i: te.sum(A[i[-2], r] * B[tuple(i[:-2]) + (r, i[-1])],
                                                   axis=r), name=name)
    return te.compute(shape, lambda *i: te.sum(A[tuple(i[:-1]) + (r,)] *
                                               B[tuple(i[:-2]) + (r, i[-1])], axis=r),
                      name=name)


register(OpDef("matmul", "out_elemwise_fusable", _matmul_shape, from_op(lambda a: ops.MatMul()),
               _matmul_te, arity=2, traces=(ops.MatMul,),
               flops=lambda n: 2 * n.size * n.inputs[0].shape[-1]))


register(OpDef("col2im", "opaque", attr_shape,
               from_op(lambda a: ops.Col2Im(a["shape"], tuple(a["kernel"]), a["stride"])),
               None, traces=(ops.Col2Im,), flops=lambda n: n.inputs[0].size,
               attrs_of=lambda op: {"shape": tuple(op.shape), "kernel": tuple(op.kernel),
                                    "stride": int(op.stride)}))

"""Each graph op as a ``te.compute``: the loop-level meaning of an op.

``compute_of(node, args, name)`` returns the te tensor computing ``node`` from ``args``
(the te tensors of its inputs). Elementwise ops are one expression per element; a
broadcast or an injective op is a *load at a computed index* (``x[i, 0]``,
``x[flat // 8, flat % 8]``, ``x[n, h * s + kh, w * s + kw, c]``); reductions use
``te.reduce_axis``; matmul is the textbook ``te.sum(A[i, k] * B[k, j], axis=k)``. Because
every op is an expression of loads, the schedule can inline a producer into its consumer
(``compute_inline``): that substitution *is* fusion at the loop level.

A 0-d tensor (a sum over every axis) is stored with shape ``(1,)``: one element.
"""

from __future__ import annotations

import math

from .. import te, tir


def te_shape(shape) -> tuple:
    return tuple(shape) if shape else (1,)


def load(t, node, idx):
    """``t[idx]`` for the te tensor ``t`` holding ``node`` (a 0-d node is ``t[0]``)."""
    if not node.shape:
        return t[0]
    return t[tuple(idx)]


def _c(v, dtype):
    return tir.const(float(v), dtype)


def _power(x, p, dtype):
    if p == 0:
        return _c(1.0, dtype)
    if p == 0.5:
        return te.sqrt(x)
    if p == -0.5:
        return _c(1.0, dtype) / te.sqrt(x)
    if float(p).is_integer() and abs(p) <= 4:
        out = x
        for _ in range(int(abs(p)) - 1):
            out = out * x
        return out if p > 0 else _c(1.0, dtype) / out
    return te.exp(_c(p, dtype) * te.log(x))


def _elemwise(op, attrs, xs, dtype):
    s = attrs.get("scalar")
    if op == "add":
        return xs[0] + xs[1]
    if op == "multiply":
        return xs[0] * xs[1]
    if op == "divide":
        return xs[0] / xs[1]
    if op == "maximum":
        return te.max(xs[0], xs[1])
    if op == "power":
        return te.exp(xs[1] * te.log(xs[0]))
    if op == "add_scalar":
        return xs[0] + _c(s, dtype)
    if op == "mul_scalar":
        return xs[0] * _c(s, dtype)
    if op == "divide_scalar":
        return xs[0] / _c(s, dtype)
    if op == "maximum_scalar":
        return te.max(xs[0], _c(s, dtype))
    if op == "power_scalar":
        return _power(xs[0], s, dtype)
    if op == "negate":
        return _c(0.0, dtype) - xs[0]
    if op == "relu":
        return te.max(xs[0], _c(0.0, dtype))
    if op in ("exp", "log", "tanh", "sigmoid"):
        return getattr(te, op)(xs[0])
    raise KeyError(op)


def _unravel(flat, shape):
    """Row-major multi-index of the flat index ``flat`` in ``shape``."""
    idx = []
    for k in range(len(shape)):
        stride = math.prod(shape[k + 1:])
        v = te.floordiv(flat, stride) if stride > 1 else flat
        idx.append(te.floormod(v, shape[k]) if k > 0 else v)
    return idx


def _reshape_index(i, out_shape, in_shape):
    squeeze_out = [(n, v) for n, v in zip(out_shape, i, strict=True) if n != 1]
    squeeze_in = [n for n in in_shape if n != 1]
    if [n for n, _ in squeeze_out] == squeeze_in:  # only axes of length 1 change
        it = iter(v for _, v in squeeze_out)
        return [0 if n == 1 else next(it) for n in in_shape]
    flat = 0
    for k, v in enumerate(i):
        stride = math.prod(out_shape[k + 1:])
        flat = v * stride if k == 0 else flat + v * stride
    return _unravel(flat, in_shape)


def compute_of(node, args, name):
    """The te tensor computing ``node`` from the te tensors ``args`` of its inputs."""
    op, a, dt = node.op, node.attrs, node.dtype
    ins = node.inputs
    shape = te_shape(node.shape)

    def out_index(i):  # the node's own index from the te loop indices
        return i if node.shape else ()

    if op in ("batch_norm",):
        x, mean, var, w, b = args

        def f(*i):
            c = (i[-1],)
            return (load(x, ins[0], i) - mean[c]) / te.sqrt(var[c] + _c(a["eps"], dt)) * \
                w[c] + b[c]
        return te.compute(shape, f, name=name)
    if op == "broadcast_to":
        src = ins[0]
        lead = len(node.shape) - len(src.shape)

        def f(*i):
            j = [0 if n == 1 and node.shape[lead + k] != 1 else i[lead + k]
                 for k, n in enumerate(src.shape)]
            return load(args[0], src, j)
        return te.compute(shape, f, name=name)
    if op == "reshape":
        return te.compute(shape, lambda *i: load(args[0], ins[0], _reshape_index(
            list(out_index(i)), node.shape, ins[0].shape) if ins[0].shape else ()), name=name)
    if op == "permute":
        inv = [0] * len(a["axes"])
        for k, ax in enumerate(a["axes"]):
            inv[ax] = k
        return te.compute(shape, lambda *i: load(args[0], ins[0], [i[inv[d]] for d in
                                                                    range(len(inv))]), name=name)
    if op == "im2col":
        s = a["stride"]
        return te.compute(shape, lambda n, h, w, kh, kw, c: args[0][n, h * s + kh, w * s + kw, c],
                          name=name)
    if op == "pad":
        pads = a["axes"]

        def f(*i):
            conds = []
            src = []
            for k, (v, (lo, _)) in enumerate(zip(i, pads, strict=True)):
                if lo or pads[k][1]:
                    conds += [v >= lo, v < lo + ins[0].shape[k]]
                src.append(v - lo if lo else v)
            if not conds:
                return args[0][tuple(src)]
            return te.if_then_else(te.all(*conds), args[0][tuple(src)], _c(0.0, dt))
        return te.compute(shape, f, name=name)
    if op == "crop":
        return te.compute(shape, lambda *i: args[0][tuple(v + lo for v, (lo, _) in
                                                          zip(i, a["axes"], strict=True))],
                          name=name)
    if op == "flip":
        return te.compute(shape, lambda *i: args[0][tuple(
            (ins[0].shape[k] - 1 - v) if k in a["axes"] else v for k, v in enumerate(i))],
            name=name)
    if op in ("summation", "reduce_max"):
        axes, keep = a["axes"], a.get("keepdims", False)
        src = ins[0]
        if not axes:
            return te.compute(shape, lambda *i: load(args[0], src, out_index(i)), name=name)
        rs = {ax: te.reduce_axis((0, src.shape[ax]), name=f"r{ax}") for ax in axes}
        reducer = te.sum if op == "summation" else te.max

        def f(*i):
            i = list(out_index(i))
            j, pos = [], 0
            for d in range(len(src.shape)):
                if d in rs:
                    j.append(rs[d])
                    pos += 1 if keep else 0
                else:
                    j.append(i[pos])
                    pos += 1
            return reducer(load(args[0], src, j), axis=list(rs.values()))
        return te.compute(shape, f, name=name)
    if op == "matmul":
        A, B = args
        k = ins[0].shape[-1]
        r = te.reduce_axis((0, k), name="k")
        if len(node.shape) == 2:
            return te.compute(shape, lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name=name)
        if len(ins[1].shape) == 2:  # batched @ 2-D: one weight shared by every batch
            return te.compute(shape, lambda *i: te.sum(A[tuple(i[:-1]) + (r,)] *
                                                       B[r, i[-1]], axis=r), name=name)
        return te.compute(shape, lambda *i: te.sum(A[tuple(i[:-1]) + (r,)] *
                                                   B[tuple(i[:-2]) + (r, i[-1])], axis=r),
                          name=name)

    def f(*i):
        return _elemwise(op, a, [load(t, x, out_index(i)) for t, x in zip(args, ins,
                                                                             strict=True)], dt)
    return te.compute(shape, f, name=name)

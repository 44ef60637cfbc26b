"""Converters of ONNX's shape, indexing and type ops (see :mod:`.onnx`).

Shapes in an mlc graph are static, so ``Shape`` returns a known array and every
``Reshape``/``Expand``/``Slice``/``Squeeze`` must receive known numbers: the chains an
exporter writes (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) are folded at
import, and a shape that is truly computed at run time is refused with the node's name.
"""

from __future__ import annotations

import numpy as np

from .onnx import converter
from .onnx_load import dtype_of, tensor_to_numpy
from .onnx_math import broadcast


@converter("Constant", since=1)
def _constant(ctx):
    a = ctx.attrs
    if "value" in a:
        node = next(x for x in ctx.node.attribute if x.name == "value")
        return tensor_to_numpy(node.t, f"Constant node {ctx.name!r}", ctx.imp.base_dir)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise ctx.unsupported(next(iter(a), "value"), "...", "sparse or string constants")


@converter("Shape", since=1)
def _shape(ctx):
    shape = np.asarray(ctx.shape(0), dtype=np.int64)
    rank = len(shape)
    start = int(ctx.attr("start", 0))
    end = ctx.attr("end", None)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = rank if end is None else max(0, min(rank, int(end) + rank if end < 0 else int(end)))
    return shape[start:end]


def _reshape_to(ctx, x, shape):
    return x if tuple(shape) == x.shape else ctx.op("reshape", x, shape=tuple(shape))


@converter("Reshape", since=5)
def _reshape(ctx):
    x = ctx.input(0)
    spec = [int(s) for s in ctx.static(1, "shape")]
    allowzero = ctx.attr("allowzero", 0)
    out = [x.shape[i] if s == 0 and not allowzero else s for i, s in enumerate(spec)]
    if out.count(-1) > 1:
        raise ctx.error(f"shape {spec} has more than one -1")
    if -1 in out:
        known = int(np.prod([s for s in out if s != -1]))
        if known == 0 or x.size % known:
            raise ctx.error(f"cannot reshape {x.shape} to {spec}")
        out[out.index(-1)] = x.size // known
    if int(np.prod(out)) != x.size or any(s < 0 for s in out):
        raise ctx.error(f"cannot reshape {x.shape} ({x.size} elements) to {spec}")
    return _reshape_to(ctx, x, out)


@converter("Flatten", since=13)
def _flatten(ctx):
    x = ctx.input(0)
    axis = int(ctx.attr("axis", 1))
    axis = axis + len(x.shape) if axis < 0 else axis
    return _reshape_to(ctx, x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))


def _axes_arg(ctx, since_input=13):
    if ctx.opset >= since_input:
        return ctx.static(1, "axes").tolist() if ctx.has(1) else None
    return ctx.attr("axes")


@converter("Squeeze", since=1)
def _squeeze(ctx):
    x = ctx.input(0)
    axes = _axes_arg(ctx)
    rank = len(x.shape)
    axes = [i for i, n in enumerate(x.shape) if n == 1] if axes is None else \
        [int(a) % rank for a in axes]
    for a in axes:
        if x.shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of shape {x.shape}: its size is not 1")
    return _reshape_to(ctx, x, [n for i, n in enumerate(x.shape) if i not in axes])


@converter("Unsqueeze", since=1)
def _unsqueeze(ctx):
    x = ctx.input(0)
    axes = _axes_arg(ctx)
    rank = len(x.shape) + len(axes)
    axes = sorted(int(a) % rank for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return _reshape_to(ctx, x, shape)


@converter("Transpose", since=1)
def _transpose(ctx):
    x = ctx.input(0)
    perm = ctx.attr("perm") or list(range(len(x.shape)))[::-1]
    return ctx.op("permute", x, axes=tuple(int(p) for p in perm))


@converter("Expand", since=8)
def _expand(ctx):
    x = ctx.input(0)
    shape = [int(s) for s in ctx.static(1, "shape")]
    try:
        out = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        raise ctx.error(f"cannot expand shape {x.shape} to {shape}") from None
    return broadcast(ctx, x, out)


@converter("Concat", since=4)
def _concat(ctx):
    xs = [ctx.input(i) for i in range(len(ctx)) if ctx.has(i)]
    xs = [x for x in xs if x.size > 0] or xs[:1]
    axis = int(ctx.attr("axis")) % len(xs[0].shape)
    return xs[0] if len(xs) == 1 else ctx.op("concat", *xs, axis=axis)


def take_every(ctx, x, axis, begin, step, count):
    """``x[..., begin : begin + step * count : step, ...]`` along ``axis`` from mlc's
    contiguous ``slice``: for ``step > 1`` the axis is cut to ``step * count`` (padded when
    the last group is short), split into ``(count, step)`` and the first of each kept."""
    shape = list(x.shape)
    if step == 1:
        starts, stops = [0] * len(shape), list(shape)
        starts[axis], stops[axis] = begin, begin + count
        return x if (begin, count) == (0, shape[axis]) else ctx.op(
            "slice", x, starts=tuple(starts), stops=tuple(stops))
    need = begin + step * count
    if need > shape[axis]:
        widths = [(0, 0)] * len(shape)
        widths[axis] = (0, need - shape[axis])
        x = ctx.op("pad", x, axes=tuple(widths))
    x = take_every(ctx, x, axis, begin, 1, step * count)
    split = list(x.shape[:axis]) + [count, step] + list(x.shape[axis + 1:])
    x = take_every(ctx, ctx.op("reshape", x, shape=tuple(split)), axis + 1, 0, 1, 1)
    return ctx.op("reshape", x, shape=tuple(split[:axis + 1] + split[axis + 2:]))


@converter("Slice", since=10)
def _slice(ctx):
    x = ctx.input(0)
    rank = len(x.shape)
    starts = ctx.static(1, "starts").tolist()
    ends = ctx.static(2, "ends").tolist()
    axes = ctx.static(3, "axes").tolist() if ctx.has(3) else list(range(len(starts)))
    steps = ctx.static(4, "steps").tolist() if ctx.has(4) else [1] * len(starts)
    plan = []
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = int(a) % rank
        if st == 0:
            raise ctx.error(f"step 0 on axis {a}")
        # python's slice() clamps exactly as ONNX specifies, negative steps included
        b, e2, st2 = slice(int(s), int(e), int(st)).indices(x.shape[a])
        plan.append((a, b, st2, len(range(b, e2, st2))))
    if any(count == 0 for *_, count in plan):
        # an empty result holds no value of x: it is a constant, known from shapes alone
        shape = list(x.shape)
        for a, _, _, count in plan:
            shape[a] = count
        return ctx.const(np.zeros(shape, dtype=x.dtype))
    for a, b, st2, count in plan:
        if st2 < 0:      # walk a flipped axis forwards
            x = ctx.op("flip", x, axes=(a,))
            b, st2 = x.shape[a] - 1 - b, -st2
        x = take_every(ctx, x, a, b, st2, count)
    return x


def _gather_take(ctx, x, ind, axis):
    """ONNX ``Gather`` on any axis from mlc's ``take``, which gathers rows (axis 0)."""
    if axis == 0:
        return ctx.op("take", x, ind)
    rank, k = len(x.shape), len(ind.shape)
    front = (axis, *range(axis), *range(axis + 1, rank))
    y = ctx.op("take", ctx.op("permute", x, axes=front), ind)   # ind..., x[:axis], x[axis+1:]
    back = (*range(k, k + axis), *range(k), *range(k + axis, k + rank - 1))
    return ctx.op("permute", y, axes=back)


@converter("Gather", since=1)
def _gather(ctx):
    x = ctx.input(0)
    axis = int(ctx.attr("axis", 0)) % len(x.shape)
    n = x.shape[axis]
    if ctx.is_static(1):
        idx = ctx.static(1).astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ctx.error(f"index out of range [-{n}, {n}) on axis {axis}")
        ind = ctx.const(np.where(idx < 0, idx + n, idx))
    else:
        # a negative index counts from the end: ids + n where ids < 0
        ind = ctx.input(1)
        zero = ctx.const(np.zeros(ind.shape, dtype=ind.dtype))
        ind = ctx.op("where", ctx.op("less", ind, zero),
                     ctx.op("add", ind, ctx.const(np.full(ind.shape, n, dtype=ind.dtype))), ind)
    return _gather_take(ctx, x, ind, axis)


@converter("Cast", since=6)
def _cast(ctx):
    to = int(ctx.attr("to"))
    try:
        dtype = dtype_of(to, f"Cast node {ctx.name!r}")
    except ValueError as e:
        raise ctx.unsupported("to", to, str(e)) from None
    x = ctx.input(0)
    if dtype == "float8_e8m0fnu" and x.dtype != dtype and \
            ctx.attr("round_mode", "up") != "nearest":
        # a power of two at or above x: the conversion (ml_dtypes) rounds to nearest
        raise ctx.unsupported("round_mode", ctx.attr("round_mode", "up"),
                              "casts to FLOAT8E8M0 round to nearest only")
    if ctx.attr("saturate", 1) == 1 and dtype.startswith(("float8", "float4")) and \
            x.dtype != dtype:
        # ONNX saturates: out-of-range values (infinities too) go to the largest finite
        # float8 of their sign; a plain conversion would give NaN or inf. NaN stays NaN
        # (minimum and maximum propagate it).
        if not x.dtype.startswith(("float", "bfloat")):
            x = ctx.op("cast", x, dtype="float32")
        top = float(np.finfo(np.dtype(dtype)).max)
        hi, lo = (ctx.const(np.full(x.shape, v, dtype=x.dtype)) for v in (top, -top))
        x = ctx.op("maximum", ctx.op("minimum", x, hi), lo)
    return x if x.dtype == dtype else ctx.op("cast", x, dtype=dtype)


@converter("Where", since=9)
def _where(ctx):
    from .onnx_math import broadcast_all

    c, a, b = broadcast_all(ctx, ctx.input(0), ctx.input(1), ctx.input(2))
    return ctx.op("where", c, a, b)

"""Converters of ONNX's convolution, pooling and normalisation ops (see :mod:`.onnx`).

ONNX images are NCHW; mlc's ``im2col`` (the one window op that lowering, fusion and the
quantizer know) is NHWC. Each conv or pool is therefore imported as a **layout transpose
around mlc's NHWC ops**, e.g. a depthwise 3x3 conv with padding 1::

    %x_nhwc = permute(%x, axes=(0, 2, 3, 1))          # N, H, W, C
    %x_pad  = pad(%x_nhwc, axes=((0,0),(1,1),(1,1),(0,0)))
    %cols   = im2col(%x_pad, kernel=(3, 3), stride=1)  # N, H, W, 3, 3, C
    %prod   = multiply(%cols, broadcast_to(%w_hwc))    # depthwise: one filter per channel
    %y_nhwc = summation(%prod, axes=(3, 4))
    %y      = permute(%y_nhwc, axes=(0, 3, 1, 2))      # back to N, C, H, W

Why transposes rather than a layout pass that rewrites the whole graph to NHWC: each
``permute`` is an injective op that fusion inlines into the neighbouring kernel's loads,
so the copies mostly disappear after ``graph.fuse``; and the imported graph keeps ONNX's
shapes node for node, so it can be read next to the original model. A layout pass is the
better choice for deep CNNs where consecutive convs would cancel each other's transposes.

1-D convs and pools become 2-D ones over a width of 1; a 3-D pool is two 2-D ones
(:func:`_pool_3d`). Grouped convs (``group > 1``) are
one batched matmul over the groups; depthwise convs (one filter per channel) a multiply
and a window sum, which fuse into one kernel.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx import converter
from .onnx_math import broadcast
from .onnx_shape import take_every

NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _spatial(ctx, x, what):
    """``(x as 4-D NCHW, spatial rank)``; 1-D inputs gain a width of 1."""
    rank = len(x.shape) - 2
    if rank == 1:
        return ctx.op("reshape", x, shape=(*x.shape, 1)), 1
    if rank != 2:
        raise ctx.error(f"{what} over {rank} spatial axes is not supported (1-D and 2-D are)")
    return x, 2


def _pair(ctx, name, default, rank):
    v = list(ctx.attr(name) or [default] * rank)
    return (v + [1])[:2] if rank == 1 else v


def _pads(ctx, hw, kernel, strides, dil, rank):
    """``[(lo, hi), (lo, hi)]`` of the two spatial axes, ``auto_pad`` resolved."""
    auto = ctx.attr("auto_pad", "NOTSET")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    if auto == "NOTSET":
        p = list(ctx.attr("pads") or [0] * (2 * rank))
        if rank == 1:
            p = [p[0], 0, p[1], 0]
        return [(p[0], p[2]), (p[1], p[3])]
    if auto == "VALID":
        return [(0, 0), (0, 0)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, s, e in zip(hw, strides, eff, strict=True):
            total = max(0, (math.ceil(n / s) - 1) * s + e - n)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    raise ctx.unsupported("auto_pad", auto)


def _padded_nhwc(ctx, x, pads):
    """NCHW ``x`` as NHWC, zero-padded by ``pads`` on its two spatial axes."""
    xt = ctx.op("permute", x, axes=NHWC)
    if any(p != (0, 0) for p in pads):
        xt = ctx.op("pad", xt, axes=((0, 0), *pads, (0, 0)))
    return xt


def _windows(ctx, x_nhwc, kernel, strides):
    """``im2col`` with per-axis strides (one stride: one op; two: stride 1, then every
    ``s``-th window of each axis)."""
    if strides[0] == strides[1]:
        return ctx.op("im2col", x_nhwc, kernel=tuple(kernel), stride=int(strides[0]))
    cols = ctx.op("im2col", x_nhwc, kernel=tuple(kernel), stride=1)
    for axis, s in ((1, strides[0]), (2, strides[1])):
        cols = take_every(ctx, cols, axis, 0, s, (cols.shape[axis] - 1) // s + 1)
    return cols


def _ceil_extra(ctx, hw, pads, kernel, strides):
    """Extra high-side padding so that ``ceil_mode`` gets its last, partial window."""
    if not ctx.attr("ceil_mode", 0):
        return pads
    out = []
    for n, (lo, hi), k, s in zip(hw, pads, kernel, strides, strict=True):
        size = math.ceil((n + lo + hi - k) / s) + 1
        if (size - 1) * s >= n + lo:     # a window may not start inside the right padding
            size -= 1
        out.append((lo, hi + max(0, (size - 1) * s + k - (n + lo + hi))))
    return out


def _finish(ctx, y_nhwc, rank):
    y = ctx.op("permute", y_nhwc, axes=NCHW)
    return ctx.op("reshape", y, shape=y.shape[:3]) if rank == 1 else y


def _dilate(ctx, w, dil):
    """A conv filter with ``d - 1`` zeros between taps: dilation as a plain conv."""
    if dil == [1, 1]:
        return w
    m, c, kh, kw = w.shape
    (dh, dw) = dil
    w = ctx.op("reshape", w, shape=(m, c, kh, 1, kw, 1))
    w = ctx.op("pad", w, axes=((0, 0), (0, 0), (0, 0), (0, dh - 1), (0, 0), (0, dw - 1)))
    w = ctx.op("reshape", w, shape=(m, c, kh * dh, kw * dw))
    return ctx.op("crop", w, axes=((0, 0), (0, 0), (0, dh - 1), (0, dw - 1)))


@converter("Conv", since=11)
def _conv(ctx):
    x, rank = _spatial(ctx, ctx.input(0), "Conv")
    w = ctx.input(1)
    if rank == 1:
        w = ctx.op("reshape", w, shape=(*w.shape, 1))
    n, c, h, wd = x.shape
    m, cg = w.shape[:2]
    groups = int(ctx.attr("group", 1))
    if c % groups or m % groups or c // groups != cg:
        raise ctx.error(f"group={groups} does not fit {c} input channels and a weight of "
                        f"shape {w.shape}")
    w = _dilate(ctx, w, _pair(ctx, "dilations", 1, rank))
    kh, kw = w.shape[2:]
    strides = _pair(ctx, "strides", 1, rank)
    pads = _pads(ctx, (h, wd), (kh, kw), strides, [1, 1], rank)
    xt = _padded_nhwc(ctx, x, pads)
    cols = _windows(ctx, xt, (kh, kw), strides)        # N, OH, OW, KH, KW, C
    _, oh, ow = cols.shape[:3]
    mg, p = m // groups, n * oh * ow
    if groups == 1:
        wm = ctx.op("reshape", ctx.op("permute", w, axes=(2, 3, 1, 0)), shape=(kh * kw * c, m))
        y = ctx.op("matmul", ctx.op("reshape", cols, shape=(p, kh * kw * c)), wm)
    elif cg == 1 and mg == 1:                           # depthwise
        wt = ctx.op("permute", ctx.op("reshape", w, shape=(c, kh, kw)), axes=(1, 2, 0))
        y = ctx.op("summation", ctx.op("multiply", cols, broadcast(ctx, wt, cols.shape)),
                   axes=(3, 4))
    else:
        cols = ctx.op("reshape", cols, shape=(p, kh * kw, groups, cg))
        cols = ctx.op("reshape", ctx.op("permute", cols, axes=(2, 0, 1, 3)),
                      shape=(groups, p, kh * kw * cg))
        wg = ctx.op("reshape", w, shape=(groups, mg, cg, kh, kw))
        wg = ctx.op("reshape", ctx.op("permute", wg, axes=(0, 3, 4, 2, 1)),
                    shape=(groups, kh * kw * cg, mg))
        y = ctx.op("permute", ctx.op("matmul", cols, wg), axes=(1, 0, 2))
    if y.shape != (n, oh, ow, m):
        y = ctx.op("reshape", y, shape=(n, oh, ow, m))
    if ctx.has(2):
        y = ctx.op("add", y, broadcast(ctx, ctx.input(2), y.shape))
    return _finish(ctx, y, rank)


def _pool_setup(ctx, what):
    """``(x, rank, window, strides, hw, declared pads, pads with the ceil_mode extra)``;
    a dilated window is the window of its whole extent, thinned by :func:`_pool_windows`."""
    x, rank = _spatial(ctx, ctx.input(0), what)
    kernel = _pair(ctx, "kernel_shape", 1, rank)
    dil = _pair(ctx, "dilations", 1, rank)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    strides = _pair(ctx, "strides", 1, rank)
    hw = x.shape[2:]
    pads = _pads(ctx, hw, kernel, strides, dil, rank)
    return x, rank, (kernel, dil, eff), strides, hw, pads, _ceil_extra(ctx, hw, pads, eff,
                                                                        strides)


def _pool_windows(ctx, xt, window, strides):
    """The windows of a pool: ``im2col`` over the dilated extent, then every ``d``-th tap."""
    kernel, dil, eff = window
    cols = _windows(ctx, xt, eff, strides)
    for axis, k, d in ((3, kernel[0], dil[0]), (4, kernel[1], dil[1])):
        if d != 1:
            cols = take_every(ctx, cols, axis, 0, d, k)
    return cols


class _PassCtx:
    """The node's ctx as one 2-D pass of a 3-D pool sees it: another input, and the
    window attributes of the pass's two axes; everything else is the node's own."""

    def __init__(self, ctx, x, attrs):
        self._ctx, self._x, self._attrs = ctx, x, attrs

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def input(self, i):
        return self._x

    def shape(self, i):
        return self._x.shape

    def attr(self, name, default=None):
        return self._attrs[name] if name in self._attrs else self._ctx.attr(name, default)


def _pool_3d(ctx, pool_2d):
    """A 3-D pool as two 2-D ones: over (H, W) with the depth folded into the channels,
    then over D with (OH * OW) as the width and a window of 1 there. Exact for max and
    for average alike: a window is a box, so its max is a max of maxes, and the count of
    positions an average divides by (inside the input or its padding) is the product of
    the counts along each axis. ``auto_pad`` and ``ceil_mode`` are per axis as well."""
    x = ctx.input(0)
    if _wants_indices(ctx):
        raise ctx.error("the Indices output of a 3-D MaxPool is not supported")
    n, c, d, h, w = x.shape
    kernel = list(ctx.attr("kernel_shape"))
    strides, dil = (list(ctx.attr(k) or [1] * 3) for k in ("strides", "dilations"))
    p = list(ctx.attr("pads") or [0] * 6)
    hw = pool_2d(_PassCtx(ctx, ctx.op("reshape", x, shape=(n, c * d, h, w)), {
        "kernel_shape": kernel[1:], "strides": strides[1:], "dilations": dil[1:],
        "pads": [p[1], p[2], p[4], p[5]]}))
    oh, ow = hw.shape[2:]
    y = pool_2d(_PassCtx(ctx, ctx.op("reshape", hw, shape=(n, c, d, oh * ow)), {
        "kernel_shape": [kernel[0], 1], "strides": [strides[0], 1], "dilations": [dil[0], 1],
        "pads": [p[0], 0, p[3], 0]}))
    return ctx.op("reshape", y, shape=(n, c, y.shape[2], oh, ow))


@converter("MaxPool", since=8)
def _maxpool(ctx):
    if len(ctx.shape(0)) == 5:
        return _pool_3d(ctx, _maxpool)
    x, rank, window, strides, hw, _, pads = _pool_setup(ctx, "MaxPool")
    xt = _padded_nhwc(ctx, x, pads)
    if xt.shape[1:3] != tuple(hw):
        # pad inserts zeros; a padded position must never win the max, so it gets the
        # lowest float added to it (a constant mask, broadcast over batch and channels)
        mask = np.full((1, *xt.shape[1:3], 1), np.finfo(np.float32).min, dtype=x.dtype)
        mask[:, pads[0][0]:pads[0][0] + hw[0], pads[1][0]:pads[1][0] + hw[1]] = 0
        xt = ctx.op("add", xt, broadcast(ctx, ctx.const(mask), xt.shape))
    cols = _pool_windows(ctx, xt, window, strides)
    y = _finish(ctx, ctx.op("reduce_max", cols, axes=(3, 4), keepdims=False), rank)
    if not _wants_indices(ctx):
        return y
    return y, _argmax_indices(ctx, x, cols, window, strides, pads, rank)


def _wants_indices(ctx) -> bool:
    return len(ctx.node.output) > 1 and bool(ctx.node.output[1])


def _argmax_indices(ctx, x, cols, window, strides, pads, rank):
    """MaxPool's Indices: the flat (row-major NCHW) index of each window's first max.

    A constant holding ``size - flat index`` goes through the same pad and windows as the
    data; where a window's element equals its max it is kept, else 0; the window's max of
    that is ``size`` minus the smallest index of a max (row-major order is the window's
    scan order), and one subtraction gives the index back. With ``storage_order=1`` the
    chosen element's column-major index (``(n C + c) H W + w H + h``) is read instead,
    from a second constant at the one position that holds that smallest index."""
    size = int(np.prod(x.shape))
    zeros = ctx.const(np.zeros(cols.shape, dtype=np.int64))

    def windows_of(values):
        return _pool_windows(ctx, _padded_nhwc(ctx, ctx.const(values), pads), window, strides)

    rcols = windows_of((size - np.arange(size, dtype=np.int64)).reshape(x.shape))
    top = ctx.op("reduce_max", cols, axes=(3, 4), keepdims=True)
    hit = ctx.op("equal", cols, broadcast(ctx, top, cols.shape))
    best = ctx.op("reduce_max", ctx.op("where", hit, rcols, zeros), axes=(3, 4), keepdims=True)
    if ctx.attr("storage_order", 0):
        n, c, h, w = x.shape
        col_major = np.arange(size, dtype=np.int64).reshape(n, c, w, h).transpose(0, 1, 3, 2)
        at = ctx.op("equal", rcols, broadcast(ctx, best, cols.shape))
        idx = ctx.op("reduce_max", ctx.op("where", at, windows_of(col_major), zeros),
                     axes=(3, 4), keepdims=False)
    else:
        best = ctx.op("reshape", best, shape=best.shape[:3] + best.shape[5:])
        idx = ctx.op("subtract", ctx.const(np.full(best.shape, size, dtype=np.int64)), best)
    return _finish(ctx, idx, rank)


@converter("AveragePool", since=7)
def _avgpool(ctx):
    if len(ctx.shape(0)) == 5:
        return _pool_3d(ctx, _avgpool)
    x, rank, window, strides, hw, given, pads = _pool_setup(ctx, "AveragePool")
    xt = _padded_nhwc(ctx, x, pads)
    cols = _pool_windows(ctx, xt, window, strides)
    y = ctx.op("summation", cols, axes=(3, 4))
    # how many positions each window averages: the input's (count_include_pad=0) or the
    # input and its declared padding (=1); the ceil_mode extra is never counted
    count_pad = ctx.attr("count_include_pad", 0)
    inside = np.zeros(xt.shape[1:3], dtype=np.float64)
    lo = [p[0] - (g[0] if count_pad else 0) for p, g in zip(pads, given, strict=True)]
    ext = [n + ((g[0] + g[1]) if count_pad else 0) for n, g in zip(hw, given, strict=True)]
    inside[lo[0]:lo[0] + ext[0], lo[1]:lo[1] + ext[1]] = 1
    (_, (d0, d1), eff) = window
    win = np.lib.stride_tricks.sliding_window_view(inside, tuple(eff))[..., ::d0, ::d1]
    counts = win[::strides[0], ::strides[1]].sum(axis=(2, 3))[: y.shape[1], : y.shape[2]]
    if np.all(counts == counts.flat[0]):
        y = ctx.op("mul_scalar", y, scalar=float(1.0 / counts.flat[0]))
    else:
        inv = (1.0 / counts).astype(x.dtype).reshape(1, *counts.shape, 1)
        y = ctx.op("multiply", y, broadcast(ctx, ctx.const(inv), y.shape))
    return _finish(ctx, y, rank)


@converter("GlobalAveragePool", since=1)
def _global_avgpool(ctx):
    x = ctx.input(0)
    axes = tuple(range(2, len(x.shape)))
    size = int(np.prod(x.shape[2:]))
    return ctx.op("mul_scalar", ctx.op("summation", x, axes=axes, keepdims=True),
                  scalar=1.0 / size)


@converter("BatchNormalization", since=9)
def _batch_norm(ctx):
    x = ctx.input(0)
    c = x.shape[1]
    shape = (1, c) + (1,) * (len(x.shape) - 2)
    eps = float(ctx.attr("epsilon", 1e-5))
    if ctx.attr("training_mode", 0):
        return _batch_norm_training(ctx, x, shape, eps)
    if all(ctx.is_static(i) for i in range(1, 5)):
        # known statistics: one multiply and one add, folded here as fold_batch_norm would
        gamma, beta, mean, var = (ctx.static(i).astype(np.float64) for i in range(1, 5))
        s = gamma / np.sqrt(var + eps)
        scale = ctx.const((s).astype(x.dtype).reshape(shape))
        shift = ctx.const((beta - mean * s).astype(x.dtype).reshape(shape))
    else:
        def param(i):
            return ctx.op("reshape", ctx.input(i), shape=shape)
        inv = ctx.op("power_scalar", ctx.op("add_scalar", param(4), scalar=eps), scalar=-0.5)
        scale = ctx.op("multiply", param(1), inv)
        shift = ctx.op("add", param(2), ctx.op("negate", ctx.op("multiply", param(3), scale)))
    y = ctx.op("multiply", x, broadcast(ctx, scale, x.shape))
    return ctx.op("add", y, broadcast(ctx, shift, x.shape))


def _batch_norm_training(ctx, x, shape, eps):
    """Training mode: normalise by the batch's own statistics (over every axis but the
    channels; the variance is the population one) and return the running statistics
    moved toward them, ``running * momentum + batch * (1 - momentum)``."""
    axes = tuple(a for a in range(len(x.shape)) if a != 1)
    inv_n = 1.0 / int(np.prod([x.shape[a] for a in axes]))

    def mean(v):
        return ctx.op("mul_scalar", ctx.op("summation", v, axes=axes, keepdims=True),
                      scalar=inv_n)

    mu = mean(x)
    d = ctx.op("subtract", x, broadcast(ctx, mu, x.shape))
    var = mean(ctx.op("multiply", d, d))
    inv = ctx.op("power_scalar", ctx.op("add_scalar", var, scalar=eps), scalar=-0.5)
    scale = ctx.op("multiply", ctx.op("reshape", ctx.input(1), shape=shape), inv)
    y = ctx.op("add", ctx.op("multiply", d, broadcast(ctx, scale, x.shape)),
               broadcast(ctx, ctx.op("reshape", ctx.input(2), shape=shape), x.shape))
    if not any(ctx.node.output[1:]):
        return y
    m = float(ctx.attr("momentum", 0.9))

    def running(i, batch):
        batch = ctx.op("reshape", batch, shape=(shape[1],))
        return ctx.op("add", ctx.op("mul_scalar", ctx.input(i), scalar=m),
                      ctx.op("mul_scalar", batch, scalar=1.0 - m))
    return y, running(3, mu), running(4, var)


@converter("Pad", since=11)
def _pad(ctx):
    x = ctx.input(0)
    if ctx.attr("mode", "constant") != "constant":
        raise ctx.unsupported("mode", ctx.attr("mode"), "constant padding only")
    if ctx.has(2) and np.any(ctx.static(2, "constant_value") != 0):
        raise ctx.error("padding with a value other than 0 is not supported")
    rank = len(x.shape)
    pads = [int(p) for p in ctx.static(1, "pads")]
    axes = [int(a) % rank for a in ctx.static(3, "axes")] if ctx.has(3) else list(range(rank))
    widths = [(0, 0)] * rank
    for k, a in enumerate(axes):
        widths[a] = (pads[k], pads[k + len(axes)])
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ctx.error(f"negative pads {pads} (cropping) are not supported")
    return ctx.op("pad", x, axes=tuple(widths))

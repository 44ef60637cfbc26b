"""The operators a graph may hold: for each, its pattern, its shape rule and its reference.

One table, :data:`OPS`, keyed by the op's name in the graph (``node.op``). Each entry says

* ``pattern``: how the op's output elements depend on its input elements, TVM's
  ``OpPatternKind`` (see :mod:`mlc.graph.pattern`);
* ``infer``: the output shape from the input shapes and attributes;
* ``make``: the ``mlc.ops`` operator that computes it, whose ``compute`` (NDArrays in, an
  NDArray out) is the *reference* semantics :func:`mlc.graph.interpret` runs.

Two ops exist only at the graph level: ``reduce_max`` (the max inside ``logsumexp``, which
tracing takes apart into primitive ops) and ``batch_norm`` in inference form (what
``nn.BatchNorm1d`` computes in eval mode, kept whole so ``fold_batch_norm`` can find it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import ops

# TVM's OpPatternKind, in its order: a kind fuses into anything "above" it more easily.
PATTERNS = ("elemwise", "broadcast", "injective", "reduce", "out_elemwise_fusable", "opaque")
RANK = {p: i for i, p in enumerate(PATTERNS)}


@dataclass(frozen=True)
class OpDef:
    name: str
    pattern: str
    infer: Callable       # (input shapes, attrs) -> output shape
    make: Callable        # attrs -> an object with compute(*ndarrays)
    arity: int | None = 1


class _ReduceMax:
    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = tuple(axes), keepdims

    def compute(self, a):
        if not self.axes:
            return a
        return a.max(axis=self.axes, keepdims=self.keepdims)


class _BatchNorm:
    """``(x - mean) / sqrt(var + eps) * weight + bias``, the statistics given (eval mode)."""

    def __init__(self, eps):
        self.eps = eps

    def compute(self, x, mean, var, weight, bias):
        shape = x.shape
        scale = ((var + self.eps) ** 0.5).broadcast_to(shape)
        return (x - mean.broadcast_to(shape)) / scale * weight.broadcast_to(shape) + \
            bias.broadcast_to(shape)


def _same(shapes, attrs):
    if len(set(shapes)) != 1:
        raise ValueError(f"elementwise op needs equal shapes, got {shapes}")
    return shapes[0]


def _first(shapes, attrs):
    return shapes[0]


def _reduced(shapes, attrs):
    axes, keep = attrs["axes"], attrs.get("keepdims", False)
    return tuple(1 if i in axes else n for i, n in enumerate(shapes[0])
                 if keep or i not in axes)


def _matmul(shapes, attrs):
    a, b = shapes
    batch_ok = len(b) == 2 or a[:-2] == b[:-2]  # batched @ 2-D shares one matrix
    if len(a) < 2 or len(b) < 2 or not batch_ok or a[-1] != b[-2]:
        raise ValueError(f"matmul: shapes {a} and {b} do not match")
    return a[:-1] + (b[-1],)


def _im2col(shapes, attrs):
    n, h, w, c = shapes[0]
    (kh, kw), s = attrs["kernel"], attrs["stride"]
    return (n, (h - kh) // s + 1, (w - kw) // s + 1, kh, kw, c)


def _pad(shapes, attrs):
    return tuple(n + lo + hi for n, (lo, hi) in zip(shapes[0], attrs["axes"], strict=True))


def _crop(shapes, attrs):
    return tuple(n - lo - hi for n, (lo, hi) in zip(shapes[0], attrs["axes"], strict=True))


def _permute(shapes, attrs):
    return tuple(shapes[0][a] for a in attrs["axes"])


def _attr_shape(shapes, attrs):
    return tuple(attrs["shape"])


_EW1 = {"negate": ops.Negate, "exp": ops.Exp, "log": ops.Log, "relu": ops.ReLU,
        "tanh": ops.Tanh, "sigmoid": ops.Sigmoid}
_EW2 = {"add": ops.EWiseAdd, "multiply": ops.EWiseMul, "divide": ops.EWiseDiv,
        "power": ops.EWisePow, "maximum": ops.Maximum}
_EWS = {"add_scalar": ops.AddScalar, "mul_scalar": ops.MulScalar,
        "divide_scalar": ops.DivScalar, "power_scalar": ops.PowerScalar,
        "maximum_scalar": ops.MaximumScalar}

OPS: dict[str, OpDef] = {}
for _n, _cls in _EW1.items():
    OPS[_n] = OpDef(_n, "elemwise", _first, lambda a, c=_cls: c())
for _n, _cls in _EW2.items():
    OPS[_n] = OpDef(_n, "elemwise", _same, lambda a, c=_cls: c(), 2)
for _n, _cls in _EWS.items():
    OPS[_n] = OpDef(_n, "elemwise", _first, lambda a, c=_cls: c(a["scalar"]))
OPS.update({
    "broadcast_to": OpDef("broadcast_to", "broadcast", _attr_shape,
                          lambda a: ops.BroadcastTo(a["shape"])),
    "batch_norm": OpDef("batch_norm", "broadcast", _first, lambda a: _BatchNorm(a["eps"]), 5),
    "reshape": OpDef("reshape", "injective", _attr_shape, lambda a: ops.Reshape(a["shape"])),
    "permute": OpDef("permute", "injective", _permute, lambda a: ops.Permute(a["axes"])),
    "im2col": OpDef("im2col", "injective", _im2col,
                    lambda a: ops.Im2Col(tuple(a["kernel"]), a["stride"])),
    "pad": OpDef("pad", "injective", _pad, lambda a: ops.Pad(a["axes"])),
    "crop": OpDef("crop", "injective", _crop, lambda a: ops.Crop(a["axes"])),
    "flip": OpDef("flip", "injective", _first, lambda a: ops.Flip(a["axes"])),
    "summation": OpDef("summation", "reduce", _reduced,
                       lambda a: ops.Summation(a["axes"], a.get("keepdims", False))),
    "reduce_max": OpDef("reduce_max", "reduce", _reduced,
                        lambda a: _ReduceMax(a["axes"], a.get("keepdims", False))),
    "matmul": OpDef("matmul", "out_elemwise_fusable", _matmul, lambda a: ops.MatMul(), 2),
    "col2im": OpDef("col2im", "opaque", _attr_shape,
                    lambda a: ops.Col2Im(a["shape"], tuple(a["kernel"]), a["stride"])),
})


def opdef(op: str) -> OpDef:
    """The :class:`OpDef` of ``op``; a clear error for an op the graph does not know."""
    try:
        return OPS[op]
    except KeyError:
        raise ValueError(f"unknown graph op {op!r}; known ops: {', '.join(sorted(OPS))}") \
            from None


def infer_shape(op: str, input_shapes, attrs) -> tuple:
    d = opdef(op)
    if d.arity is not None and len(input_shapes) != d.arity:
        raise ValueError(f"{op} takes {d.arity} input(s), got {len(input_shapes)}")
    return tuple(int(s) for s in d.infer([tuple(s) for s in input_shapes], attrs))


def reference(op: str, attrs: dict, *arrays):
    """Run ``op`` on NDArrays with its ``mlc.ops`` implementation."""
    return opdef(op).make(attrs).compute(*arrays)


def numpy_value(array) -> np.ndarray:
    return array.numpy() if hasattr(array, "numpy") else np.asarray(array)

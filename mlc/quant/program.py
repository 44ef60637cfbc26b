"""A traced model as a chain of steps that can run in float, fake-quant or integer mode.

:func:`mlc.quant.quantize_model` traces the model into an ``mlc.graph`` graph, folds its
batch norms (``graph.fold_constants`` then ``graph.fold_batch_norm``) and reads the graph
as a *chain*: each op reads the value the previous one made, plus constants. Two kinds of
step come out:

* :class:`QLinear`: ``matmul(x, W)``, then optionally a reshape that keeps the last axis
  (a conv's NHWC output), ``+ broadcast_to(b)`` and ``relu``: one integer kernel with a
  fused epilogue (:func:`mlc.quant.qops.qlinear`);
* :class:`Move`: ``pad``, ``im2col``, ``reshape``, ``permute``, and a lone ``relu``: steps that
  move or clamp values but compute nothing new, so they apply to int8 codes directly
  (padding writes the zero point: the code of the real 0; ReLU clamps at it).

Reshapes are made batch-independent (the leading axis becomes ``-1``), so the program
runs on any batch size. Anything else (residual adds, tanh, softmax inside the model)
is refused with the op's name: the chain is what the course's MLP and CNN need.
"""

from __future__ import annotations

import numpy as np

from .. import graph as G
from .affine import as_numpy

MOVE_OPS = ("pad", "im2col", "reshape", "permute", "relu")



class UnsupportedModelError(ValueError):
    """A model ``quantize_model`` cannot turn into an integer-only program (it handles
    chains of Linear/Conv layers with bias and ReLU); the message names the op."""

class Move:
    """A data-movement (or clamp) step; the same code runs on floats and on codes."""

    def __init__(self, node):
        self.op = node.op
        self.attrs = dict(node.attrs)
        self.name = node.name
        if self.op == "reshape":
            self.attrs["shape"] = (-1,) + tuple(node.shape[1:])

    def run(self, x: np.ndarray, zero=0):
        """``zero`` is what the real number 0 is in ``x``: 0.0, or the zero point of codes."""
        if self.op == "pad":
            return np.pad(x, self.attrs["axes"], constant_values=zero)
        if self.op == "reshape":
            return x.reshape(self.attrs["shape"])
        if self.op == "permute":
            return np.transpose(x, self.attrs["axes"])
        if self.op == "relu":
            return np.maximum(x, np.asarray(zero, dtype=x.dtype))
        # im2col: (N, H, W, C) -> (N, Ho, Wo, KH, KW, C)
        (kh, kw), s = self.attrs["kernel"], self.attrs["stride"]
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::s, ::s]
        return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3))

    def __repr__(self):
        return f"Move({self.op})"


class QLinear:
    """``y = relu?(reshape?(x @ W) + b)``; the quantized parameters are set by ``calibrate``."""

    def __init__(self, node, weight: np.ndarray):
        self.name = node.inputs[1].name
        self.weight = weight.astype(np.float32)           # (K, N), batch norm folded in
        self.bias = np.zeros(weight.shape[1], np.float32)
        self.relu = False
        self.reshape = None
        self.kind = "linear"

    @property
    def shape(self):
        return self.weight.shape

    def float_forward(self, x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32) @ self.weight
        if self.reshape is not None:
            y = y.reshape(self.reshape)
        y = y + self.bias
        return np.maximum(y, 0) if self.relu else y

    def __repr__(self):
        return (f"QLinear({self.name}: {self.shape[0]}->{self.shape[1]}"
                f"{', relu' if self.relu else ''})")


def build_chain(model, example) -> tuple[list, "G.Graph"]:
    """Trace ``model`` on ``example``, fold batch norm, and read the chain of steps."""
    g = G.trace(model, example)
    g = G.fold_batch_norm(G.fold_constants(g))
    g = G.eliminate_dead_code(g)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise UnsupportedModelError("quantize_model handles models with one input and one output")
    cur = g.inputs[0]
    steps: list = []
    open_layer = None            # the QLinear whose epilogue may still grow
    for n in g.nodes:
        if n.is_leaf:
            continue
        if n.op == "broadcast_to" and n.inputs[0].op == "constant":
            continue             # read by the add that uses it
        if cur not in n.inputs:
            raise UnsupportedModelError(
                f"quantize_model: %{n.name} = {n.op}(...) does not read the previous op's "
                "value; only chains of layers (like nn.Sequential) are supported")
        others = [x for x in n.inputs if x is not cur]
        if n.op == "matmul" and n.inputs[0] is cur and n.inputs[1].op == "constant":
            open_layer = QLinear(n, np.asarray(n.inputs[1].value))
            steps.append(open_layer)
        elif open_layer is not None and n.op == "reshape" and open_layer.reshape is None \
                and n.shape[-1] == cur.shape[-1] and not _has_bias_or_relu(open_layer):
            open_layer.reshape = (-1,) + tuple(n.shape[1:])
            open_layer.kind = "conv"
        elif open_layer is not None and n.op == "add" and len(others) == 1 \
                and _constant(others[0]) is not None and not _has_bias_or_relu(open_layer):
            b = np.asarray(_constant(others[0]), np.float32).reshape(-1)
            if b.size != open_layer.shape[1]:
                raise UnsupportedModelError(f"%{n.name}: the bias does not have one value per "
                                          "output channel")
            open_layer.bias = b
            open_layer._has_bias = True
        elif open_layer is not None and n.op == "relu" and not open_layer.relu:
            open_layer.relu = True
        elif n.op in MOVE_OPS and not others:
            steps.append(Move(n))
            open_layer = None
        else:
            raise UnsupportedModelError(
                f"quantize_model: cannot quantize %{n.name} = {n.op}(...); supported: "
                "matmul with a constant weight (+ reshape, + bias, + relu), " +
                ", ".join(MOVE_OPS))
        cur = n
    if not any(isinstance(s, QLinear) for s in steps):
        raise UnsupportedModelError("quantize_model: the model has no Linear or Conv layer")
    return steps, g


def _constant(node):
    """The value of a constant, or of ``broadcast_to(constant)``; else None."""
    if node.op == "constant":
        return node.value
    if node.op == "broadcast_to" and node.inputs[0].op == "constant":
        return node.inputs[0].value
    return None


def _has_bias_or_relu(layer: QLinear) -> bool:
    return layer.relu or getattr(layer, "_has_bias", False)


def float_forward(steps, x) -> np.ndarray:
    """The folded float model (batch norm folded), step by step, in numpy float32."""
    x = np.asarray(as_numpy(x), np.float32)
    for s in steps:
        x = s.float_forward(x) if isinstance(s, QLinear) else s.run(x, 0.0)
    return x

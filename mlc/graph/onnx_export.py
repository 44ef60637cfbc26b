"""``graph.to_onnx``: an mlc graph as an ONNX model, so other runtimes can run it too.

::

    model = graph.to_onnx(g)                  # an onnx.ModelProto, checked by onnx.checker
    onnx.save(model, "model.onnx")
    import onnxruntime as ort                 # the same graph, run by ONNX Runtime
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

Each graph op becomes the ONNX op(s) of the same meaning (table :data:`EXPORTERS`, one
entry per op); constants become initializers. Two ops need more than a rename:

* ``im2col`` (NHWC windows) has no ONNX op; it is exported as a ``Gather`` over the
  flattened image with a constant index table (which pixel lands in which window), so
  the exported model needs nothing but standard ops;
* mlc carries ONNX's ``bool`` as ``uint8`` (0/1), so a ``where``'s condition is
  ``Cast`` to bool on the way out, and comparisons are cast back to ``uint8``.

The quantized ops of :mod:`mlc.quant` (8-bit grids) are written in ONNX's **QDQ** form:
``quantize``/``dequantize`` are ``QuantizeLinear``/``DequantizeLinear``, and ``qlinear`` /
``qadd`` are their float meaning between a DequantizeLinear and a QuantizeLinear, which
QDQ-aware runtimes (ONNX Runtime, TensorRT) fuse back into integer kernels. ``wmatmul``
(4-bit group-wise weights) has no standard form and is refused.

The opset is 20 (``Gelu`` arrived in 20; ``LayerNormalization`` in 17). ``from_onnx``
reads what this writes, which the tests check as a round trip.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph

OPSET = 20

_SIMPLE = {"add": "Add", "multiply": "Mul", "divide": "Div", "power": "Pow", "maximum": "Max",
           "negate": "Neg", "exp": "Exp", "log": "Log", "relu": "Relu", "tanh": "Tanh",
           "sigmoid": "Sigmoid", "erf": "Erf", "gelu": "Gelu", "matmul": "MatMul",
           "equal": "Equal", "greater": "Greater", "less": "Less", "subtract": "Sub",
           "minimum": "Min"}
_SCALAR = {"add_scalar": "Add", "mul_scalar": "Mul", "divide_scalar": "Div",
           "power_scalar": "Pow", "maximum_scalar": "Max"}
_COMPARE = {"equal", "greater", "less"}


class _Writer:
    """Collects nodes and initializers; ``const`` names a fresh initializer."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.k = [], [], 0

    def fresh(self, base):
        self.k += 1
        return f"{base}__{self.k}"

    def const(self, value, base="c"):
        name = self.fresh(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, ins, out, **attrs):
        self.nodes.append(self.h.make_node(op, list(ins), [out], name=out, **attrs))
        return out


def _im2col_index(shape, kernel, stride):
    """For an NHWC image ``(h, w)``: the flat pixel of every window position."""
    _, h, w, _ = shape
    kh, kw = kernel
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    i = (np.arange(oh)[:, None, None, None] * stride + np.arange(kh)[None, None, :, None])
    j = (np.arange(ow)[None, :, None, None] * stride + np.arange(kw)[None, None, None, :])
    return (i * w + j).astype(np.int64)          # (oh, ow, kh, kw)


def _export_node(w, n, ins, out):
    op, a = n.op, n.attrs
    if op in _SIMPLE:
        onnx_op = _SIMPLE[op]
        if op in _COMPARE:
            tmp = w.node(onnx_op, ins, w.fresh(out))
            return w.node("Cast", [tmp], out, to=w.onnx.TensorProto.UINT8)
        return w.node(onnx_op, ins, out)
    if op in _SCALAR:
        c = w.const(np.asarray(a["scalar"], dtype=n.dtype), out + "_s")
        return w.node(_SCALAR[op], [ins[0], c], out)
    i64 = np.int64
    if op == "broadcast_to":
        return w.node("Expand", [ins[0], w.const(np.asarray(a["shape"], i64))], out)
    if op == "reshape":
        return w.node("Reshape", [ins[0], w.const(np.asarray(n.shape, i64))], out)
    if op == "permute":
        return w.node("Transpose", ins, out, perm=list(a["axes"]))
    if op in ("summation", "reduce_max", "reduce_mean"):
        axes = a.get("axes")
        axes = list(range(len(n.inputs[0].shape))) if axes is None else list(axes)
        if not axes:
            return w.node("Identity", ins, out)
        onnx_op = {"summation": "ReduceSum", "reduce_max": "ReduceMax",
                   "reduce_mean": "ReduceMean"}[op]
        return w.node(onnx_op, [ins[0], w.const(np.asarray(axes, i64))], out,
                      keepdims=int(bool(a.get("keepdims", False))))
    if op == "pad":
        lo, hi = zip(*a["axes"], strict=True)
        return w.node("Pad", [ins[0], w.const(np.asarray(lo + hi, i64))], out)
    if op == "crop":
        shape = n.inputs[0].shape
        starts = [lo for lo, _ in a["axes"]]
        ends = [s - hi for s, (_, hi) in zip(shape, a["axes"], strict=True)]
        return w.node("Slice", [ins[0], w.const(np.asarray(starts, i64)),
                                w.const(np.asarray(ends, i64))], out)
    if op == "flip":
        axes = list(a["axes"])
        return w.node("Slice", [ins[0], w.const(np.full(len(axes), -1, i64)),
                                w.const(np.full(len(axes), np.iinfo(i64).min, i64)),
                                w.const(np.asarray(axes, i64)),
                                w.const(np.full(len(axes), -1, i64))], out)
    if op == "im2col":
        nb, h, wd, c = n.inputs[0].shape
        flat = w.node("Reshape", [ins[0], w.const(np.asarray([nb, h * wd, c], i64))],
                      w.fresh(out))
        idx = w.const(_im2col_index(n.inputs[0].shape, a["kernel"], a["stride"]), out + "_i")
        return w.node("Gather", [flat, idx], out, axis=1)
    if op == "batch_norm":
        x, mean, var, weight, bias = ins
        eps = w.const(np.asarray(a["eps"], dtype=n.dtype))
        std = w.node("Sqrt", [w.node("Add", [var, eps], w.fresh(out))], w.fresh(out))
        norm = w.node("Div", [w.node("Sub", [x, mean], w.fresh(out)), std], w.fresh(out))
        return w.node("Add", [w.node("Mul", [norm, weight], w.fresh(out)), bias], out)
    if op == "softmax":
        return w.node("Softmax", ins, out, axis=int(a["axis"]))
    if op == "layer_norm":
        return w.node("LayerNormalization", ins, out, axis=-1, epsilon=float(a["eps"]))
    if op == "take":
        return w.node("Gather", ins, out, axis=0)
    if op == "concat":
        return w.node("Concat", ins, out, axis=int(a["axis"]))
    if op == "where":
        cond = w.node("Cast", [ins[0]], w.fresh(out), to=w.onnx.TensorProto.BOOL)
        return w.node("Where", [cond, ins[1], ins[2]], out)
    if op == "cast":
        to = w.h.np_dtype_to_tensor_dtype(np.dtype(n.dtype))
        return w.node("Cast", ins, out, to=to)
    if op == "slice":
        starts, stops = np.asarray(a["starts"], i64), np.asarray(a["stops"], i64)
        return w.node("Slice", [ins[0], w.const(starts), w.const(stops)], out)
    if op in _QDQ:
        return _QDQ[op](w, n, ins, out)
    return None


# -- the quantized ops of mlc.quant, in ONNX's QDQ form ---------------------------------------
def _grid(w, n, scale, zero, base):
    if n.attrs.get("bits") not in (None, 8):
        raise ValueError(f"to_onnx: %{n.name} uses {n.attrs['bits']}-bit codes; ONNX's "
                         f"QuantizeLinear stores int8 (8-bit grids only)")
    return (w.const(np.asarray(scale, np.float32), base + "_scale"),
            w.const(np.asarray(zero, np.int8), base + "_zero"))


def _dq(w, n, x, scale, zero, out):
    return w.node("DequantizeLinear", [x, *_grid(w, n, scale, zero, out)], out)


def _q(w, n, x, scale, zero, out):
    return w.node("QuantizeLinear", [x, *_grid(w, n, scale, zero, out)], out)


def _export_qlinear(w, n, ins, out):
    """``qlinear`` as DQ(a) @ DQ(w) + DQ(bias), ReLU, Q: the float meaning of the integer
    op, which a QDQ-aware runtime fuses back into an integer matmul. The requantization
    rounds in float there, so a code may differ by one from mlc's fixed-point result."""
    a, wq, s_w, bias = ins[:4]
    at = n.attrs
    x = _dq(w, n, a, at["s_in"], at["z_in"], w.fresh(out + "_a"))
    k, m = n.inputs[1].shape
    wz = w.const(np.zeros(m, np.int8), out + "_wzero")
    wf = w.node("DequantizeLinear", [wq, s_w, wz], w.fresh(out + "_w"), axis=1)
    y = w.node("MatMul", [x, wf], w.fresh(out + "_mm"))
    s_b = np.float32(at["s_in"]) * np.asarray(n.inputs[2].value, np.float32)
    bf = w.node("DequantizeLinear", [bias, w.const(s_b, out + "_bscale")], w.fresh(out + "_b"),
                axis=0)
    y = w.node("Add", [y, bf], w.fresh(out + "_add"))
    if at.get("relu"):
        y = w.node("Relu", [y], w.fresh(out + "_relu"))
    return _q(w, n, y, at["s_out"], at["z_out"], out)


def _export_qadd(w, n, ins, out):
    at = n.attrs
    a = _dq(w, n, ins[0], at["s_a"], at["z_a"], w.fresh(out + "_a"))
    b = _dq(w, n, ins[1], at["s_b"], at["z_b"], w.fresh(out + "_b"))
    y = w.node("Add", [a, b], w.fresh(out + "_add"))
    if at.get("relu"):
        y = w.node("Relu", [y], w.fresh(out + "_relu"))
    return _q(w, n, y, at["s_out"], at["z_out"], out)


_QDQ = {
    "quantize": lambda w, n, ins, out: _q(w, n, ins[0], n.attrs["scale"],
                                          n.attrs["zero_point"], out),
    "dequantize": lambda w, n, ins, out: _dq(w, n, ins[0], n.attrs["scale"],
                                             n.attrs["zero_point"], out),
    "qlinear": _export_qlinear,
    "qadd": _export_qadd,
    "observe": lambda w, n, ins, out: w.node("Identity", ins, out),
}


def to_onnx(g: Graph, name: str = "mlc_graph"):
    """``g`` as an ``onnx.ModelProto`` (opset :data:`OPSET`), checked by ``onnx.checker``.

    Raises ``ValueError`` naming the first node whose op has no ONNX form (``col2im``,
    a training-only op, for one).
    """
    from .frontend.onnx_load import _onnx

    onnx = _onnx()
    h = onnx.helper
    w = _Writer(onnx)

    def vinfo(n):
        return h.make_tensor_value_info(n.name, h.np_dtype_to_tensor_dtype(np.dtype(n.dtype)),
                                        list(n.shape))

    names: dict = {}
    for n in g.nodes:
        if n.op == "input":
            names[n] = n.name
        elif n.op == "constant":
            names[n] = n.name
            w.inits.append(onnx.numpy_helper.from_array(np.asarray(n.value, dtype=n.dtype),
                                                        n.name))
        else:
            out = _export_node(w, n, [names[x] for x in n.inputs], n.name)
            if out is None:
                raise ValueError(f"to_onnx: graph op {n.op!r} (node %{n.name}) has no ONNX "
                                 f"form")
            names[n] = out
    outputs, seen = [], set()
    for n in g.outputs:
        src = names[n]
        if n.is_leaf or src in seen:       # an ONNX output must be a node's own output
            src = w.node("Identity", [src], w.fresh(n.name + "_out"))
        seen.add(src)
        outputs.append(h.make_tensor_value_info(
            src, h.np_dtype_to_tensor_dtype(np.dtype(n.dtype)), list(n.shape)))
    used = {x for nd_ in w.nodes for x in nd_.input}     # a folded-away constant is left out
    w.inits = [t for t in w.inits if t.name in used]
    graph = h.make_graph(w.nodes, name, [vinfo(n) for n in g.inputs], outputs, w.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="mlc")
    model.ir_version = min(model.ir_version, 9)     # what current ONNX Runtimes accept
    onnx.checker.check_model(model, full_check=True)
    return model

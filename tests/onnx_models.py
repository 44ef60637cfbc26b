"""Small ONNX models written by hand with ``onnx.helper`` (seeded), for the ONNX tests.

* :func:`mlp`: two ``Gemm`` layers with ``transB=1`` (how PyTorch exports ``nn.Linear``);
* :func:`cnn`: NCHW conv, depthwise conv (``group`` = channels), batch norm, max and
  average pooling, global average pooling, ``Flatten`` and a ``Gemm``;
* :func:`transformer_fragment`: token ``Gather``, ``LayerNormalization``, batched
  ``MatMul`` attention with a causal ``Where`` mask and ``Softmax``, exact GELU through
  ``Erf``, ``ReduceMean`` and ``Concat``, with a ``Shape -> Gather -> Concat -> Reshape``
  chain as exporters write it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits, opset=18):
    g = helper.make_graph(nodes, "m", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    inits = {"w1": _w(rng, 32, 64), "b1": _w(rng, 32), "w2": _w(rng, 10, 32), "b2": _w(rng, 10)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [batch, 64])],
                  [helper.make_tensor_value_info("y", F, [batch, 10])], inits)


def cnn(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    c = 4
    inits = {"w1": _w(rng, c, 3, 3, 3), "b1": _w(rng, c), "wd": _w(rng, c, 1, 3, 3),
             "g": (1 + _w(rng, c)).astype(np.float32), "beta": _w(rng, c), "mu": _w(rng, c),
             "var": (1 + np.abs(_w(rng, c))).astype(np.float32),
             "wf": _w(rng, 5, c * 2 * 2), "bf": _w(rng, 5)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd"], ["c2"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "g", "beta", "mu", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["p2"], ["gap"]),
        helper.make_node("Add", ["p2", "gap"], ["p3"]),
        helper.make_node("Flatten", ["p3"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [batch, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F, [batch, 5])], inits)


def transformer_fragment(seq=6, vocab=16, d=8, heads=2, seed=0):
    rng = np.random.default_rng(seed)
    dh = d // heads
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    inits = {"emb": _w(rng, vocab, d), "gamma": (1 + _w(rng, d)).astype(np.float32),
             "beta": _w(rng, d), "wq": _w(rng, d, d), "wk": _w(rng, d, d), "wv": _w(rng, d, d),
             "mask": causal, "neg": np.array(-1e9, np.float32),
             "scale": np.array(1 / np.sqrt(dh), np.float32),
             "heads": np.array([heads, dh], np.int64), "zero": np.array([0], np.int64),
             "perm_idx": np.array(1, np.int64), "sqrt2": np.array(np.sqrt(2), np.float32),
             "one": np.array(1, np.float32), "half": np.array(0.5, np.float32),
             "dm": np.array([d], np.int64)}
    mk = helper.make_node
    nodes = [
        mk("Gather", ["emb", "ids"], ["e"]),                           # (1, T, d)
        mk("LayerNormalization", ["e", "gamma", "beta"], ["ln"], epsilon=1e-5),
        mk("MatMul", ["ln", "wq"], ["q"]), mk("MatMul", ["ln", "wk"], ["k"]),
        mk("MatMul", ["ln", "wv"], ["v"]),
        # the head split as exporters write it: Shape -> Gather -> Concat -> Reshape
        mk("Shape", ["q"], ["qs"]), mk("Gather", ["qs", "perm_idx"], ["t"]),
        mk("Unsqueeze", ["t", "zero"], ["t1"]),
        mk("Concat", ["zero", "t1", "heads"], ["hshape"], axis=0),
        mk("Reshape", ["q", "hshape"], ["q4"]), mk("Reshape", ["k", "hshape"], ["k4"]),
        mk("Reshape", ["v", "hshape"], ["v4"]),
        mk("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
        mk("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
        mk("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        mk("MatMul", ["qh", "kt"], ["s0"]), mk("Mul", ["s0", "scale"], ["s1"]),
        mk("Where", ["mask", "s1", "neg"], ["s2"]),
        mk("Softmax", ["s2"], ["a"], axis=-1),
        mk("MatMul", ["a", "vh"], ["o"]),
        mk("Transpose", ["o"], ["o2"], perm=[0, 2, 1, 3]),
        mk("Concat", ["zero", "t1", "dm"], ["oshape"], axis=0),
        mk("Reshape", ["o2", "oshape"], ["att"]),
        mk("Add", ["e", "att"], ["res"]),
        # exact GELU: x * 0.5 * (1 + erf(x / sqrt 2))
        mk("Div", ["res", "sqrt2"], ["g0"]), mk("Erf", ["g0"], ["g1"]),
        mk("Add", ["g1", "one"], ["g2"]), mk("Mul", ["res", "g2"], ["g3"]),
        mk("Mul", ["g3", "half"], ["gelu"]),
        mk("ReduceMean", ["gelu", "m_axes"], ["mean"], keepdims=1),
        mk("Concat", ["gelu", "mean"], ["y"], axis=-1),
    ]
    inits["m_axes"] = np.array([-1], np.int64)
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq])],
                  [helper.make_tensor_value_info("y", F, [1, seq, d + 1])], inits)


def reference_outputs(model, feeds):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)

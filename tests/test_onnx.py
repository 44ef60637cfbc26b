"""ONNX import and export: hand-built models against onnx.reference, untrusted files,
unsupported ops and attributes, to_onnx round trips, ONNX Runtime, PyTorch export."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnx_models as M  # noqa: E402
from mlc import graph  # noqa: E402
from mlc.models import digits_cnn, digits_mlp  # noqa: E402

RNG = np.random.default_rng(0)


def _check(model, feeds, target="python"):
    ref = M.reference_outputs(model, feeds)[0]
    g = graph.from_onnx(model)
    args = [feeds[n.name] for n in g.inputs]
    np.testing.assert_allclose(graph.interpret(g, *args), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(graph.build(g, target=target)(*args), ref, rtol=1e-4, atol=1e-4)
    return g


def test_mlp_with_gemm_transb_matches_reference():
    g = _check(M.mlp(), {"x": RNG.random((4, 64), dtype=np.float32)})
    assert [n.op for n in g.ops].count("matmul") == 2


def test_nchw_cnn_with_depthwise_conv_and_pooling_matches_reference():
    g = _check(M.cnn(), {"x": RNG.random((2, 3, 8, 8), dtype=np.float32)})
    assert {"im2col", "reduce_max", "summation"} <= {n.op for n in g.ops}


def test_transformer_fragment_matches_reference():
    ids = RNG.integers(0, 16, size=(1, 6)).astype(np.int64)
    g = _check(M.transformer_fragment(), {"ids": ids})
    ops = {n.op for n in g.ops}
    assert {"take", "layer_norm", "softmax", "where", "erf", "concat"} <= ops
    assert not any(n.op == "reshape" and n.inputs[0].op == "input" for n in g.ops)


@pytest.mark.parametrize("order", [0, 1])
def test_maxpool_indices_pick_the_first_max_of_each_window_in_either_storage_order(order):
    """Ties (a window of equal values) and padding: the index is that of the first max in
    the window's row-major scan, written row- or column-major, as onnx.reference does."""
    x = np.round(RNG.random((1, 2, 5, 4), dtype=np.float32) * 2).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[3, 2], pads=[1, 0, 1, 1],
                            strides=[2, 1], storage_order=order)
    model = helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 4]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [1, 2, 3, 4])]),
        opset_imports=[helper.make_opsetid("", 17)])
    from onnx.reference import ReferenceEvaluator

    want = ReferenceEvaluator(model).run(None, {"x": x})
    g = graph.from_onnx(model)
    for got in (graph.interpret(g, x), graph.build(g, target="python")(x)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_unsigned_sub_and_min_wrap_as_numpy_and_round_trip():
    """uint8 a - b below zero wraps (no negation of an unsigned value on the way), and the
    imported subtract and minimum export back as Sub and Min."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Min", ["d", "b"], ["y"])],
        "g", [helper.make_tensor_value_info(n, TensorProto.UINT8, [5]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [5])]),
        opset_imports=[helper.make_opsetid("", 17)])
    a = np.array([0, 3, 200, 255, 7], np.uint8)
    b = np.array([1, 2, 250, 0, 7], np.uint8)
    want = np.minimum(a - b, b)
    g = graph.from_onnx(model)
    np.testing.assert_array_equal(graph.interpret(g, a, b), want)
    np.testing.assert_array_equal(graph.build(g, target="python")(a, b), want)
    back = graph.from_onnx(graph.to_onnx(g))
    assert {n.op for n in back.ops} >= {"subtract", "minimum"}
    np.testing.assert_array_equal(graph.interpret(back, a, b), want)


def _one_node(node, opset, shape=(2, 3)):
    return helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))]),
        opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_op_names_op_node_and_opset():
    m = _one_node(helper.make_node("Hardmax", ["x"], ["y"], name="the_hardmax"), 17)
    with pytest.raises(graph.UnsupportedOpError, match=r"'Hardmax'.*'the_hardmax'.*opset 17"):
        graph.from_onnx(m)


def test_unsupported_attribute_value_names_attribute_and_node():
    m = _one_node(helper.make_node("Gelu", ["x"], ["y"], name="g1", approximate="sigmoid"), 20)
    with pytest.raises(graph.OnnxImportError, match=r"'g1'.*approximate='sigmoid'"):
        graph.from_onnx(m)


def test_shape_computed_at_run_time_is_refused_with_the_node():
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(graph.OnnxImportError, match=r"'r'.*known at import"):
        graph.from_onnx(m)
    g = graph.from_onnx(m, bind={"s": np.array([3, 2])})
    assert g.outputs[0].shape == (3, 2)


# -- untrusted files ------------------------------------------------------------------------
def _with_external(tmp_path, location, length=None):
    m = M.mlp()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"),
                 ("length", str(length if length is not None else 32 * 64 * 4))):
        e = t.external_data.add()
        e.key, e.value = k, v
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(m.SerializeToString())
    return path


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * (32 * 64 * 4))
    path = _with_external(tmp_path, "../secret.bin")
    with pytest.raises(graph.OnnxImportError, match="outside the model's folder"):
        graph.from_onnx(path)
    (tmp_path / "b").mkdir()
    absolute = _with_external(tmp_path / "b", os.path.abspath(tmp_path / "secret.bin"))
    with pytest.raises(graph.OnnxImportError, match="refused"):
        graph.from_onnx(absolute)


def test_external_data_inside_the_folder_loads_and_short_files_are_caught(tmp_path):
    path = _with_external(tmp_path, "w1.bin")
    w1 = M.mlp().graph.initializer[0]
    (path.parent / "w1.bin").write_bytes(numpy_helper.to_array(w1).tobytes())
    g = graph.from_onnx(path)
    np.testing.assert_array_equal(g.node("w1").value, numpy_helper.to_array(w1))
    (path.parent / "w1.bin").write_bytes(b"\0" * 100)
    with pytest.raises(graph.OnnxImportError, match="'w1'.*truncated or corrupt"):
        graph.from_onnx(path)


def test_declared_shape_is_checked_against_the_data_before_allocating():
    m = M.mlp()
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])            # 4 TiB declared, 8 KiB held
    with pytest.raises(graph.OnnxImportError, match="'w1'.*more than"):
        graph.from_onnx(m.SerializeToString())
    t.dims[0] = 64                               # plausible but wrong
    with pytest.raises(graph.OnnxImportError, match="'w1'.*holds 8192 bytes"):
        graph.from_onnx(m.SerializeToString())


def test_truncated_file_is_a_clear_error(tmp_path):
    data = M.mlp().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(graph.OnnxImportError, match="truncated or corrupt"):
        graph.from_onnx(path)


# -- export ---------------------------------------------------------------------------------
def test_to_onnx_round_trips_through_from_onnx():
    for make, x in ((M.mlp, RNG.random((4, 64), dtype=np.float32)),
                    (M.cnn, RNG.random((2, 3, 8, 8), dtype=np.float32))):
        g = graph.from_onnx(make())
        g2 = graph.from_onnx(graph.to_onnx(g))
        np.testing.assert_allclose(graph.interpret(g2, x), graph.interpret(g, x), rtol=1e-5,
                                   atol=1e-6)


def _session(ort, model):
    """An ONNX Runtime session on the CPU provider, one thread."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def test_onnx_runtime_runs_an_exported_traced_model():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model, x = digits_cnn(batch=3)
    g = graph.trace(model, x)
    exported = graph.to_onnx(g)
    sess = _session(ort, exported)
    got = sess.run(None, {g.inputs[0].name: x})[0]
    np.testing.assert_allclose(got, graph.interpret(g, x), rtol=1e-4, atol=1e-4)


def test_pytorch_export_compiles():
    torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch export "
                                "comparison is optional")
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.randn(2, 1, 8, 8)
    import io

    buf = io.BytesIO()
    try:                                 # the TorchScript exporter (dynamo= is torch >= 2.5)
        torch.onnx.export(net, (x,), buf, opset_version=17, dynamo=False)
    except TypeError:
        torch.onnx.export(net, (x,), buf, opset_version=17)
    g = graph.from_onnx(buf.getvalue())
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(graph.build(g, target="python")(x.numpy()), want, rtol=1e-4,
                               atol=1e-4)


def test_transformer_fragment_exports_round_trips_and_onnx_runtime_agrees():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    ids = RNG.integers(0, 16, size=(1, 6)).astype(np.int64)
    g = graph.from_onnx(M.transformer_fragment())
    exported = graph.to_onnx(g)
    want = graph.interpret(g, ids)
    np.testing.assert_allclose(graph.interpret(graph.from_onnx(exported), ids), want,
                               rtol=1e-5, atol=1e-6)
    sess = _session(ort, exported)
    np.testing.assert_allclose(sess.run(None, {"ids": ids})[0], want, rtol=1e-4, atol=1e-4)


def test_quantized_graph_exports_as_qdq_and_onnx_runtime_agrees_within_one_code():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from mlc import quant

    model, x = digits_mlp(batch=8)
    qm = quant.quantize_model(model, [x])
    exported = graph.to_onnx(qm.graph)
    ops = {n.op_type for n in exported.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    xb = x[: qm.graph.inputs[0].shape[0]]
    sess = _session(ort, exported)
    got = sess.run(None, {qm.graph.inputs[0].name: xb})[0]
    # ONNX Runtime requantizes in float, mlc in fixed point: a code may differ by one
    step = qm.graph.outputs[0].attrs["scale"]
    assert np.abs(got - qm(xb)).max() <= step * 1.001


def test_dynamic_batch_axis_becomes_the_batch_symbol():
    m = M.cnn()
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    g = graph.from_onnx(m)
    assert getattr(g, "batch_reason", None) is None
    x = RNG.random((5, 3, 8, 8), dtype=np.float32)          # imported at 2, run at 5
    np.testing.assert_allclose(graph.interpret(g, x), M.reference_outputs(m, {"x": x})[0],
                               rtol=1e-4, atol=1e-4)


def test_onnx_runtime_runs_an_exported_traced_transformer_block():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    import mlc
    from mlc.graph.examples import gpt_block

    model, _ = gpt_block()
    ids = RNG.integers(0, 20, size=(2, 5)).astype(np.int64)
    g = graph.trace(model, ids)
    exported = graph.to_onnx(g)
    sess = _session(ort, exported)
    with mlc.no_grad():
        want = model(mlc.Tensor(ids, dtype="int64", requires_grad=False)).numpy()
    np.testing.assert_allclose(sess.run(None, {g.inputs[0].name: ids})[0], want, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(graph.interpret(graph.from_onnx(exported), ids), want,
                               rtol=1e-4, atol=1e-4)


def test_a_converter_with_a_wrong_shape_is_caught_at_its_node(monkeypatch):
    from mlc.graph.frontend import onnx as frontend

    graph.from_onnx(M.mlp())             # the tables are filled
    wrong = [(6, lambda ctx: ctx.op("permute", ctx.input(0), axes=(1, 0)))]
    monkeypatch.setitem(frontend.CONVERTERS, "Relu", wrong)
    with pytest.raises(graph.OnnxImportError, match=r"'r'.*\(32, 4\).*shape inference says "
                                                    r"\(4, 32\)"):
        graph.from_onnx(M.mlp())


def test_a_huge_value_is_refused_before_it_is_made():
    # Expand of a small constant to a declared 2**40 elements: folding would allocate it
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "s")
    one = numpy_helper.from_array(np.ones((1, 1), np.float32), "one")
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Expand", ["one", "s"], ["big"], name="bomb"),
         helper.make_node("Add", ["x", "big"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 20, 1 << 20])],
        [shape, one]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(graph.OnnxImportError, match=r"'bomb'.*larger than"):
        graph.from_onnx(m)


def test_onnx_runtime_runs_the_exported_tiny_vit():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from mlc import models
    from mlc.autograd import Tensor

    model, x = models.tiny_vit(batch=3)
    g = graph.trace(model, Tensor(x, requires_grad=False))
    exported = graph.to_onnx(g)
    onnx.checker.check_model(exported)
    sess = _session(ort, exported)
    got = sess.run(None, {g.inputs[0].name: x})[0]
    np.testing.assert_allclose(got, graph.interpret(g, x), rtol=1e-4, atol=1e-4)
    eager = model(Tensor(x, requires_grad=False)).numpy()
    np.testing.assert_allclose(got, eager, rtol=1e-4, atol=1e-4)

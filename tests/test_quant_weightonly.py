"""Weight-only group-wise quantization: packing, bytes, the kernels on cpu() and cuda()."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import quant
from mlc.quant.routines import routines


def test_unpack4_is_the_same_routine_on_every_target():
    for byte in range(256):
        c0, c1 = routines("python").unpack4(np.uint8(byte))
        lo, hi = byte & 15, byte >> 4
        assert (c0, c1) == (lo - 16 if lo >= 8 else lo, hi - 16 if hi >= 8 else hi)


@pytest.mark.parametrize("bits", [4, 8])
def test_pack_weight_layout_and_round_trip(bits):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 5)).astype(np.float32)
    w[3, 2] = 9.0                               # an outlier spoils one group only
    gw = quant.pack_weight(w, bits=bits, group_size=16)
    q_max = (1 << (bits - 1)) - 1
    assert gw.codes.shape == ((32, 5) if bits == 4 else (64, 5))   # down each column
    assert gw.scales.shape == (4, 5) and gw.nbytes == gw.codes.nbytes + gw.scales.nbytes
    codes = gw.int_codes()
    assert codes.min() >= -q_max - 1 and codes.max() <= q_max
    if bits == 4:                  # two per byte, low nibble first: rows 0 and 1 in byte 0
        byte = gw.codes[0].astype(np.int16)
        assert (((byte & 15) ^ 8) - 8 == codes[0]).all()
        assert (((byte >> 4) ^ 8) - 8 == codes[1]).all()
    err = np.abs(gw.dequantize() - w)
    # each weight is within half a step of its own group's scale
    step = np.repeat(gw.scales, 16, axis=0)
    assert (err <= step / 2 + 1e-6).all()
    assert err[16:, 2].max() < err[:16, 2].max()      # the outlier's group is the coarse one


@pytest.mark.parametrize("device", [nd.cpu(), nd.cuda()], ids=lambda d: d.name)
@pytest.mark.parametrize("bits", [4, 8])
def test_wmatmul_equals_dequantized_matmul(device, bits):
    rng = np.random.default_rng(1)
    m, k, n = (2, 32, 3) if device.name == "cuda" else (7, 96, 33)
    w = rng.normal(size=(k, n)).astype(np.float32)
    x = rng.normal(size=(m, k)).astype(np.float32)
    gw = quant.pack_weight(w, bits=bits, group_size=32)
    want = quant.wmatmul(x, gw, device=nd.cpu_numpy())
    assert np.allclose(want, x @ gw.dequantize())
    got = quant.wmatmul(x, gw, device=device)
    assert got.shape == (m, n) and got.dtype == np.float32
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_int4_bytes_and_error_against_int8():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(256, 64)).astype(np.float32)
    g4 = quant.pack_weight(w, bits=4, group_size=32)
    g8 = quant.pack_weight(w, bits=8, group_size=32)
    assert g4.nbytes / w.nbytes == pytest.approx((0.5 + 4 / 32) / 4)
    assert g4.nbytes < 0.2 * w.nbytes < g8.nbytes
    e4 = np.abs(g4.dequantize() - w).mean()
    e8 = np.abs(g8.dequantize() - w).mean()
    assert e8 < e4 / 8                           # 16x finer grid, same groups


def test_bad_configs_name_the_problem():
    w = np.ones((48, 4), np.float32)
    with pytest.raises(ValueError, match="bits"):
        quant.pack_weight(w, bits=3)
    with pytest.raises(ValueError, match="does not divide K=48"):
        quant.pack_weight(w, bits=4, group_size=32)
    with pytest.raises(ValueError, match="even"):
        quant.pack_weight(w, bits=4, group_size=3)
    gw = quant.pack_weight(w, bits=4, group_size=16)
    with pytest.raises(ValueError, match="shapes do not match"):
        quant.wmatmul(np.ones((2, 40), np.float32), gw)
    with pytest.raises(TypeError, match="float32"):
        quant.wmatmul(np.ones((2, 48), np.float64), gw)
    with pytest.raises(TypeError, match="GroupWeight"):
        quant.wmatmul(np.ones((2, 48), np.float32), w)


def test_unpack_row_equals_unpack4_for_every_byte():
    row = np.arange(256, dtype=np.uint8)
    for target in ("python", "cpu"):
        wf = np.empty((2, 256), np.float32)
        routines(target).unpack_row4(wf, row)
        want = np.array([routines("python").unpack4(b) for b in row], np.float32).T
        assert np.array_equal(wf, want), target


def test_fp16_scales_are_safe_and_half_the_scale_bytes():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 48)).astype(np.float32)
    w[:32, 0] = 0.0                                    # an all-zero group
    w[32:, 1] *= 1e-7                                  # a group whose scale is subnormal
    g32 = quant.pack_weight(w, 4, 32)
    g16 = quant.pack_weight(w, 4, 32, scale_dtype="float16")
    assert g16.scales.dtype == np.float16 and g16.scales32.dtype == np.float32
    assert g32.nbytes - g16.nbytes == g16.scales.nbytes
    # the codes are the nearest codes for the scale as stored: within half a step of it
    step = np.repeat(g16.scales32, 32, axis=0)
    assert (np.abs(g16.dequantize() - w) <= step / 2 + 1e-7).all()
    assert g16.int_codes().min() >= -8 and g16.int_codes().max() <= 7
    # rounding the scale costs next to nothing against the 4-bit grid itself
    e16, e32 = (np.abs(g.dequantize() - w).mean() for g in (g16, g32))
    assert abs(e16 - e32) < 0.01 * e32
    x = rng.normal(size=(5, 64)).astype(np.float32)
    assert np.allclose(quant.wmatmul(x, g16), x @ g16.dequantize(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="float16's largest"):
        quant.pack_weight(np.full((32, 2), 1e6, np.float32), 4, 32, scale_dtype="float16")
    with pytest.raises(ValueError, match="scale_dtype"):
        quant.pack_weight(w, 4, 32, scale_dtype="bfloat16")


@pytest.mark.parametrize("bits", [4, 8])
def test_wmatmul_tiles_rows_and_columns_serial_and_parallel(bits):
    from mlc.quant.kernels_weightonly import MB, WB, wmatmul_parallel, wmatmul_serial

    rng = np.random.default_rng(4)
    m, k, n = 2 * MB + 3, 64, WB + 7                   # partial tiles on both axes
    w = rng.normal(size=(k, n)).astype(np.float32)
    x = rng.normal(size=(m, k)).astype(np.float32)
    gw = quant.pack_weight(w, bits, 32, scale_dtype="float16")
    want = x @ gw.dequantize()
    for kernel in (wmatmul_parallel, wmatmul_serial):
        out = np.full((m, n), np.nan, np.float32)
        kernel(x, gw.codes, gw.scales32, 32, bits, out)
        assert np.allclose(out, want, rtol=1e-4, atol=1e-4)


def _linear_graph(k, n, batch=3):
    from mlc import graph

    np.random.seed(0)
    lin = mlc.nn.Linear(k, n)
    return graph.trace(lin, np.ones((batch, k), np.float32)), lin


def test_quantize_weights_picks_a_group_that_divides_k_or_leaves_it():
    g8, _ = _linear_graph(8, 16)
    with pytest.raises(ValueError, match="does not divide K=8"):
        quant.quantize_weights(g8, 4, 32)
    wg = quant.quantize_weights(g8, 4, 32, strict=False, scale_dtype="float16")
    (node,) = [n for n in wg.ops if n.op == "wmatmul"]
    assert node.attrs["group_size"] == 8 and node.inputs[2].dtype == "float16"
    g7, _ = _linear_graph(7, 4)                          # odd K: no even group divides it
    assert "matmul" in [n.op for n in quant.quantize_weights(g7, 4, 32, strict=False).ops]


def test_quantize_tables_stores_tables_in_int8_and_keeps_vectors():
    from mlc import graph
    from mlc.quant.weightonly import is_table

    np.random.seed(1)
    emb = mlc.nn.Embedding(50, 16)
    ids = np.array([[3, 7, 49], [0, 1, 2]], np.int64)
    g = graph.trace(emb, ids)
    tg = quant.quantize_tables(g)
    ops = [n.op for n in tg.ops]
    take = next(n for n in tg.ops if n.op == "take")
    assert take.dtype == "int8" and ops.index("take") < ops.index("dequantize")  # rows first
    table = next(n for n in g.params if n.dtype == "float32")
    assert [n.nbytes for n in tg.params if n.dtype == "int8"] == [table.nbytes // 4]
    ref, got = graph.interpret(g, ids), graph.interpret(tg, ids)
    assert np.abs(got - ref).max() <= np.abs(table.value).max() / 254 + 1e-7
    assert np.allclose(graph.build(tg, target="cpu")(ids), got)
    bias = graph.Node("constant", (), {}, (1, 16), "float32", "b", np.ones((1, 16), np.float32))
    mask = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    assert not is_table(bias)
    assert not is_table(graph.Node("constant", (), {}, (4, 4), "float32", "m", mask))

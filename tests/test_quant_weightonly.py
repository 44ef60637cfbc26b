"""Weight-only group-wise quantization: packing, bytes, the kernels on cpu() and cuda()."""

import numpy as np
import pytest

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

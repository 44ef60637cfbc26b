"""mlc.quant.fixedpoint: requantization bit-exact with gemmlowp's definitions.

The reference (mlc/quant/reference.py) uses Python ints and exact fractions; the numpy
and Numba implementations must agree with it on every input, edge cases first.
"""

import numpy as np
import pytest

from mlc import quant
from mlc.quant import reference as R
from mlc.quant.fixedpoint import rdbpot_nb, requantize_array_nb, requantize_nb, srdhm_nb

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
EDGE_A = [0, 1, -1, 2, -2, 3, -3, 1 << 30, -(1 << 30), I32_MAX, I32_MIN, I32_MIN + 1,
          I32_MAX - 1, 12345, -12345, 1 << 15, -(1 << 15)]
EDGE_B = [0, 1, -1, I32_MAX, I32_MIN, 1 << 30, (1 << 30) + 1, 1 << 29, -(1 << 30), 3, -3]


def test_srdhm_edges():
    a = np.array([x for x in EDGE_A for _ in EDGE_B], np.int32)
    b = np.array([y for _ in EDGE_A for y in EDGE_B], np.int32)
    got = quant.saturating_rounding_doubling_high_mul(a, b)
    for x, y, g in zip(a.tolist(), b.tolist(), got.tolist(), strict=True):
        assert g == R.srdhm(x, y), (x, y)
        assert int(srdhm_nb(np.int32(x), np.int32(y))) == g
    assert quant.saturating_rounding_doubling_high_mul(I32_MIN, I32_MIN) == I32_MAX


def test_srdhm_ties_round_up():
    # a * b / 2^31 = +-0.5 and +-1.5 exactly: gemmlowp's nudge and truncating division
    # send ties up (as ARM's VQRDMULH), so -0.5 -> 0 and -1.5 -> -1
    assert R.srdhm(1, 1 << 30) == 1 and R.srdhm(-1, 1 << 30) == 0
    assert R.srdhm(3, 1 << 30) == 2 and R.srdhm(-3, 1 << 30) == -1
    assert R.srdhm(-1, 3 << 29) == -1       # -0.75, not a tie: nearest
    a = np.array([1, -1, 3, -3], np.int32)
    assert quant.saturating_rounding_doubling_high_mul(a, 1 << 30).tolist() == [1, 0, 2, -1]
    assert [int(srdhm_nb(np.int32(x), np.int32(1 << 30))) for x in a] == [1, 0, 2, -1]


def test_rdbpot_edges_and_negative_ties():
    xs = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, 8, -8, I32_MAX, I32_MIN, I32_MIN + 1]
    for e in [0, 1, 2, 3, 5, 16, 30, 31]:
        got = quant.rounding_divide_by_pot(np.array(xs, np.int32), e)
        for x, g in zip(xs, got.tolist(), strict=True):
            assert g == R.rdbpot(x, e), (x, e)
            assert int(rdbpot_nb(np.int32(x), np.int32(e))) == g
    # -6 / 4 = -1.5 -> -2 (away from zero); -5 / 4 = -1.25 -> -1; 6 / 4 -> 2
    assert quant.rounding_divide_by_pot(np.array([-6, -5, 6, -2], np.int32), 2).tolist() == \
        [-2, -1, 2, -1]
    with pytest.raises(ValueError):
        quant.rounding_divide_by_pot(1, 32)


def test_quantize_multiplier_edges():
    for m in [0.5, 0.75, 0.999999, 1 - 2**-33, 1.0, 1.5, 3.99, 1e-3, 0.3, 2**-31, 1e-5, 1e-12,
              0.0, 2**-32]:
        m0, shift = quant.quantize_multiplier(m)
        assert (m0, shift) == R.quantize_multiplier(m), m
        if m0:
            assert (1 << 30) <= m0 < (1 << 31)
            assert abs(m0 * 2.0 ** (shift - 31) - m) <= 2.0 ** (shift - 32)
    # rounding carries to 2^31: becomes 2^30 with shift + 1
    assert quant.quantize_multiplier(1 - 2**-33) == (1 << 30, 1)
    assert quant.quantize_multiplier(0.0) == (0, 0)
    with pytest.raises(ValueError):
        quant.quantize_multiplier(-0.5)
    m0, sh = quant.quantize_multiplier(np.array([0.25, 0.001]))
    assert m0.dtype == np.int32 and sh.tolist() == [-1, -9]


def _ref_requant(acc, m0, shift, zp, lo=-128, hi=127, relu=False):
    return np.array([R.requantize(int(a), int(m), int(s), zp, lo, hi, relu)
                     for a, m, s in zip(acc, m0, shift, strict=True)])


def test_requantize_edges():
    accs = [0, 1, -1, 63, 64, 65, -63, -64, -65, 127, -128, I32_MAX, I32_MIN, 1 << 20,
            -(1 << 20), 3 << 10, -(3 << 10)]
    for m in [0.5, 0.25, 2**-7, 0.0078125 * 1.5, 0.999, 1.0, 2.0, 3.7, 1e-6, 2**-31]:
        m0, shift = quant.quantize_multiplier(m)
        for zp in [0, -128, 17, 127]:
            for relu in (False, True):
                acc = np.array(accs, np.int32)
                got = quant.requantize(acc, m0, shift, zp, relu=relu)
                want = _ref_requant(acc, [m0] * len(acc), [shift] * len(acc), zp, relu=relu)
                assert got.tolist() == want.tolist(), (m, zp, relu)
                assert got.dtype == np.int8


def test_requantize_random_bit_exact():
    rng = np.random.default_rng(0)
    n = 4000
    acc = np.concatenate([rng.integers(I32_MIN, I32_MAX, n // 2, dtype=np.int64),
                          rng.integers(-(1 << 20), 1 << 20, n // 2)]).astype(np.int32)
    mult = np.exp(rng.uniform(np.log(1e-7), np.log(8.0), n))
    pairs = [quant.quantize_multiplier(float(m)) for m in mult]
    m0 = np.array([p[0] for p in pairs], np.int32)
    shift = np.array([p[1] for p in pairs], np.int32)
    zp = 5
    got = quant.requantize(acc, m0, shift, zp)
    want = _ref_requant(acc, m0, shift, zp)
    assert (got == want).all()
    got_u8 = quant.requantize(acc, m0, shift, 128, dtype="uint8", relu=True)
    assert (got_u8 == _ref_requant(acc, m0, shift, 128, 0, 255, True)).all()
    # the Numba kernel used inside the integer kernels agrees too
    out = np.empty((1, n), np.int8)
    requantize_array_nb(acc.reshape(1, n), m0, shift, zp, -128, 127, out)
    assert (out[0] == want).all()
    assert all(requantize_nb(int(a), int(m), int(s), zp, -128, 127) == w
               for a, m, s, w in list(zip(acc, m0, shift, want, strict=True))[:200])


def test_requantize_is_close_to_the_real_product():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 16), 1 << 16, 5000).astype(np.int32)
    m0, shift = quant.quantize_multiplier(0.0013)
    got = quant.requantize(acc, m0, shift, 0, dtype="int8").astype(np.int64)
    want = np.clip(np.round(acc * 0.0013), -128, 127)
    assert np.abs(got - want).max() <= 1


def test_requantize_checks_the_accumulator_type():
    with pytest.raises(TypeError, match="int32"):
        quant.requantize(np.zeros(3, np.int64), 1 << 30, 0, 0)

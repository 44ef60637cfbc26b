"""mlc.quant: affine quantization (qparams, quantize/dequantize) and the observers."""

import numpy as np
import pytest

from mlc import quant


def test_qrange_types_and_bits():
    assert quant.qrange("int8") == (-128, 127)
    assert quant.qrange("uint8") == (0, 255)
    assert quant.qrange("int8", num_bits=4) == (-8, 7)
    assert quant.qrange("uint8", num_bits=4) == (0, 15)
    with pytest.raises(ValueError, match="dtype"):
        quant.qrange("int16")
    with pytest.raises(ValueError, match="num_bits"):
        quant.qrange("int8", num_bits=9)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("lo,hi", [(-1.3, 2.7), (0.2, 5.0), (-4.0, -0.5), (0.0, 0.0)])
def test_zero_is_exactly_representable(dtype, lo, hi):
    s, z = quant.qparams(lo, hi, dtype)
    q_min, q_max = quant.qrange(dtype)
    assert q_min <= z <= q_max and isinstance(z, int) and s > 0
    assert quant.quantize(np.zeros(3), s, z, dtype).tolist() == [z] * 3
    assert quant.dequantize(np.array([z], dtype), s, z)[0] == 0.0


def test_asymmetric_uses_the_whole_grid():
    s, z = quant.qparams(-1.0, 3.0, "uint8")
    q = quant.quantize(np.array([-1.0, 3.0]), s, z, "uint8")
    assert q[0] <= 1 and q[1] >= 254


def test_symmetric_zero_points_and_scale():
    s, z = quant.qparams(-0.5, 2.54, "int8", symmetric=True)
    assert z == 0 and s == pytest.approx(2.54 / 127)
    s, z = quant.qparams(-0.5, 2.54, "uint8", symmetric=True)
    assert z == 128
    assert quant.quantize(np.array([-2.54, 2.54]), *quant.qparams(-2.54, 2.54, "int8", True)
                          ).tolist() == [-127, 127]


def test_round_trip_error_is_at_most_half_a_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000).astype(np.float32)
    for dtype, sym in [("int8", False), ("int8", True), ("uint8", False)]:
        s, z = quant.qparams(x.min(), x.max(), dtype, sym)
        err = np.abs(quant.dequantize(quant.quantize(x, s, z, dtype), s, z) - x)
        assert err.max() <= s / 2 + 1e-6


def test_fake_quantize_is_idempotent_and_on_the_grid():
    x = np.linspace(-3, 3, 101)
    s, z = quant.qparams(-2, 2.5, "int8")
    y = quant.fake_quantize(x, s, z)
    assert np.allclose(quant.fake_quantize(y, s, z), y)
    assert np.allclose((y / s) - np.round(y / s), 0, atol=1e-4)
    assert y.max() <= 2.5 + s and y.min() >= -2 - s   # clipped at the range


def test_fewer_bits_more_error():
    x = np.random.default_rng(1).standard_normal(5000)
    errs = [quant.quantization_error(x, *quant.qparams(x.min(), x.max(), num_bits=b), num_bits=b)
            for b in (8, 6, 4, 2)]
    assert errs == sorted(errs)
    assert quant.sqnr(x, x) == float("inf")


def test_per_channel():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 4)) * np.array([0.01, 0.1, 1.0, 10.0])
    amax = np.abs(w).max(axis=0)
    s, z = quant.qparams(-amax, amax, "int8", symmetric=True)
    assert s.shape == (4,) and s.dtype == np.float32 and z.dtype == np.int32
    q = quant.quantize(w, s, z, axis=1)
    pc = quant.dequantize(q, s, z, axis=1)
    st, zt = quant.qparams(-amax.max(), amax.max(), "int8", symmetric=True)
    pt = quant.fake_quantize(w, st, zt)
    assert quant.sqnr(w[:, 0], pc[:, 0]) > quant.sqnr(w[:, 0], pt[:, 0]) + 20
    with pytest.raises(ValueError, match="per-channel"):
        quant.quantize(w, s[:3], z[:3], axis=1)
    with pytest.raises(ValueError, match="axis"):
        quant.quantize(w, s, z)
    with pytest.raises(ValueError, match="out of range"):
        quant.quantize(w, s, z, axis=2)


def test_qparams_errors():
    with pytest.raises(ValueError, match="greater"):
        quant.qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        quant.qparams(float("inf"), 1.0)
    with pytest.raises(ValueError, match="dtype"):
        quant.qparams(-1, 1, dtype="float16")


# -- observers ---------------------------------------------------------------------------


def test_minmax_observer():
    obs = quant.MinMaxObserver()
    for lo, hi in [(-1, 2), (-3, 1), (0, 0.5)]:
        assert obs(np.array([lo, hi], np.float32)) is not None
    assert obs.range() == (-3.0, 2.0)
    assert obs.qparams() == quant.qparams(-3, 2)


def test_moving_average_observer():
    obs = quant.MovingAverageMinMaxObserver(averaging_constant=0.5)
    obs(np.array([-2.0, 2.0]))
    obs(np.array([0.0, 4.0]))
    assert obs.range() == (-1.0, 3.0)
    with pytest.raises(ValueError, match="averaging_constant"):
        quant.MovingAverageMinMaxObserver(averaging_constant=0)


def test_percentile_observer_clips_outliers():
    x = np.concatenate([np.random.default_rng(3).uniform(-1, 1, 10_000), [100.0]])
    obs = quant.PercentileObserver(percentile=99.9)
    obs(x)
    lo, hi = obs.range()
    assert -1.01 < lo < -0.9 and 0.9 < hi < 1.01


@pytest.mark.parametrize("cls", [quant.MinMaxObserver, quant.MovingAverageMinMaxObserver,
                                 quant.PercentileObserver])
def test_per_channel_observers(cls):
    x = np.random.default_rng(4).standard_normal((200, 3)) * np.array([1.0, 5.0, 0.1])
    obs = cls(symmetric=True, axis=1)
    obs(x)
    s, z = obs.qparams()
    assert s.shape == (3,) and (z == 0).all()
    assert s[1] > s[0] > s[2]
    with pytest.raises(ValueError, match="channels"):
        obs(np.zeros((5, 4)))


def test_histogram_observer_beats_minmax_with_outliers():
    # at 4 bits the rounding step is coarse: clipping the Gaussian's rare tails pays
    rng = np.random.default_rng(5)
    x = rng.standard_normal(40_000)
    h = quant.HistogramObserver(num_bits=4)
    m = quant.MinMaxObserver(num_bits=4)
    for part in np.array_split(x, 4):   # the range widens between batches: re-binning
        h(part)
        m(part)
    lo, hi = h.range()
    assert x.min() * 0.8 < lo < -1.5 and 1.5 < hi < x.max() * 0.8
    e_h = quant.quantization_error(x, *h.qparams(), num_bits=4)
    e_m = quant.quantization_error(x, *m.qparams(), num_bits=4)
    assert e_h < 0.7 * e_m
    assert h.histogram.sum() == pytest.approx(x.size)


def test_histogram_observer_keeps_a_clean_range():
    x = np.random.default_rng(6).uniform(0, 1, 50_000)
    h = quant.HistogramObserver()
    h(x)
    lo, hi = h.range()
    assert lo == 0 or lo < 0.02
    assert hi > 0.97


def test_observer_errors():
    with pytest.raises(RuntimeError, match="no data"):
        quant.MinMaxObserver().qparams()
    with pytest.raises(ValueError, match="dtype"):
        quant.MinMaxObserver(dtype="int4")
    with pytest.raises(ValueError, match="out of range"):
        quant.MinMaxObserver(axis=3)(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="per-tensor"):
        quant.HistogramObserver(axis=0)
    with pytest.raises(ValueError, match="empty"):
        quant.MinMaxObserver()(np.zeros(0))
    with pytest.raises(ValueError, match="unknown observer"):
        quant.make_observer("kl")
    assert isinstance(quant.make_observer("histogram"), quant.HistogramObserver)


def test_observers_accept_tensors_and_ndarrays():
    import mlc
    import mlc.ndarray as nd

    obs = quant.MinMaxObserver()
    obs(mlc.Tensor(np.array([-1.0, 1.0], np.float32), requires_grad=False))
    obs(nd.array(np.array([2.0], np.float32), device=nd.cpu_numpy()))
    assert obs.range() == (-1.0, 2.0)

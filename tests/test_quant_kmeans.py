"""k-means (codebook) quantization: never worse than the uniform grid it starts from."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlc import quant

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def _uniform_mse(x, bits):
    s, z = quant.qparams(float(x.min()), float(x.max()), "int8", num_bits=bits)
    return float(np.mean((x.astype(np.float64) - quant.fake_quantize(x, s, z, num_bits=bits)) ** 2))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=finite), st.integers(2, 6))
def test_kmeans_error_never_exceeds_uniform_with_the_same_levels(x, bits):
    kw = quant.kmeans_quantize(x, bits)
    err = float(np.mean((x.astype(np.float64) - kw.dequantize()) ** 2))
    assert err <= _uniform_mse(x, bits) * (1 + 1e-6) + 1e-12
    h = kw.history
    assert all(h[i + 1] <= h[i] * (1 + 1e-12) + 1e-300 for i in range(len(h) - 1))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(1, 200), elements=finite), st.integers(2, 5))
def test_codes_point_at_the_nearest_level_of_a_sorted_codebook(x, bits):
    kw = quant.kmeans_quantize(x, bits)
    cb = kw.codebook.astype(np.float64)
    assert cb.size == 2 ** bits and np.all(np.diff(cb) >= 0)
    assert kw.codes.shape == x.shape and kw.codes.dtype == np.uint8
    dist = np.abs(x.astype(np.float64)[:, None] - cb[None, :])
    np.testing.assert_allclose(dist[np.arange(x.size), kw.codes], dist.min(1), rtol=0, atol=0)


def test_uniform_levels_are_the_affine_grid_and_the_first_step():
    x = np.random.default_rng(0).standard_normal(1000)
    lv = quant.uniform_levels(x, 3)
    s, z = quant.qparams(x.min(), x.max(), num_bits=3)
    np.testing.assert_array_equal(lv, quant.dequantize(np.arange(-4, 4), s, z))
    kw = quant.kmeans_quantize(x, 3, iters=0)          # no Lloyd step: the uniform grid
    assert kw.history[0] == pytest.approx(_uniform_mse(x, 3), rel=1e-6)


def test_kmeans_beats_uniform_on_bell_shaped_weights_and_counts_bytes():
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    for bits in (2, 4):
        kw = quant.kmeans_quantize(w, bits)
        gain = quant.sqnr(w, kw.dequantize()) - 10 * np.log10(np.mean(w.astype(np.float64) ** 2)
                                                              / _uniform_mse(w, bits))
        assert gain > 1.0                                  # dB, on normal data
        assert kw.nbytes == 64 * 32 * bits // 8 + 4 * 2 ** bits
        assert kw.shape == w.shape


@pytest.mark.parametrize("bad, exc", [(np.array([]), ValueError),
                                      (np.array([1.0, np.nan]), ValueError),
                                      (np.array(["a"]), TypeError)])
def test_bad_tensors_are_refused(bad, exc):
    with pytest.raises(exc):
        quant.kmeans_quantize(bad, 4)


def test_bad_bits_and_iters_are_refused():
    with pytest.raises(ValueError, match="num_bits"):
        quant.kmeans_quantize(np.ones(4), 9)
    with pytest.raises(ValueError, match="iters"):
        quant.kmeans_quantize(np.ones(4), 2, iters=-1)

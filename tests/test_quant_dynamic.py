"""Dynamic quantization: run-time activation ranges, the exact int32 path, reduce_range."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mlc
import mlc.ndarray as nd
from mlc import nn, quant

finite = st.floats(-100, 100, allow_nan=False, width=32)
rows = arrays(np.float32, st.tuples(st.integers(1, 6), st.just(12)), elements=finite)
W = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(rows, st.sampled_from(["tensor", "row"]), st.booleans())
def test_dequantized_input_is_within_half_a_step(x, granularity, reduce_range):
    s, z = quant.dynamic_qparams(x, granularity, reduce_range)
    bits = 7 if reduce_range else 8
    axis = None if granularity == "tensor" else 0
    q = quant.quantize(x, s, z, "uint8", axis=axis, num_bits=bits)
    assert q.max() <= (127 if reduce_range else 255)
    s_col = np.asarray(s, np.float64).reshape(-1, 1) if axis == 0 else s
    err = np.abs(quant.dequantize(q, s, z, axis=axis) - x.astype(np.float64))
    assert np.all(err <= s_col / 2 * (1 + 1e-5) + 1e-6)     # the range is x's own: no clipping


@settings(max_examples=40, deadline=None)
@given(rows, st.sampled_from(["tensor", "row"]), st.booleans())
def test_the_accumulator_is_the_exact_integer_product_and_the_output_its_scaling(
        x, granularity, reduce_range):
    dl = quant.DynamicLinear(W, np.arange(5, dtype=np.float32), granularity, reduce_range)
    q_x, s_x, z_x, acc = dl.accumulate(x)
    z = np.asarray(z_x, np.int64).reshape(-1, 1)
    exact = (q_x.astype(np.int64) - z) @ dl.w_q.astype(np.int64)
    np.testing.assert_array_equal(acc, exact)
    want = exact * np.asarray(s_x, np.float64).reshape(-1, 1) * dl.s_w + np.arange(5)
    np.testing.assert_allclose(dl(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max() + 1e-6)


@settings(max_examples=40, deadline=None)
@given(rows)
def test_output_error_within_the_rounding_bound(x):
    dl = quant.DynamicLinear(W)
    s_x, _ = quant.dynamic_qparams(x)
    # x_hat = x + dx, w_hat = w + dw, |dx| <= s_x / 2, |dw| <= s_w / 2 (no clipping anywhere)
    bound = (s_x / 2 * np.abs(W).sum(0) + dl.s_w / 2 * np.abs(x).sum(1, keepdims=True)
             + W.shape[0] * s_x * dl.s_w / 4)
    assert np.all(np.abs(dl(x) - x.astype(np.float64) @ W) <= bound * (1 + 1e-4) + 1e-4)


@settings(max_examples=30, deadline=None)
@given(rows, rows)
def test_per_row_output_of_a_row_does_not_depend_on_its_batch(x, other):
    dl = quant.DynamicLinear(W, granularity="row")
    np.testing.assert_array_equal(dl(np.concatenate([x, other]))[:len(x)], dl(x))


def test_per_tensor_output_depends_on_the_batch():
    dl = quant.DynamicLinear(W)
    x = np.random.default_rng(2).standard_normal((1, 12)).astype(np.float32)
    assert not np.array_equal(dl(np.concatenate([x, 50 * x]))[:1], dl(x))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8).flatmap(lambda m: st.tuples(
    arrays(np.uint8, 2 * m, elements=st.integers(0, 127)),
    arrays(np.int8, 2 * m, elements=st.integers(-128, 127)))))
def test_seven_bit_activations_never_saturate_vpmaddubsw(ab):
    a, b = ab
    exact = a.astype(np.int32) * b.astype(np.int32)
    np.testing.assert_array_equal(quant.maddubs(a, b), exact[0::2] + exact[1::2])


def test_eight_bit_activations_can_saturate():
    a, b = np.array([255, 255, 200, 1], np.uint8), np.array([127, 127, -128, -128], np.int8)
    assert quant.maddubs(a, b).tolist() == [32767, -25728]
    with pytest.raises(TypeError):
        quant.maddubs(b, a)
    with pytest.raises(ValueError):
        quant.maddubs(a[:3], a[:3].astype(np.int8))


def test_quantize_dynamic_swaps_every_linear_and_keeps_the_float_model():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    x = np.random.default_rng(3).standard_normal((4, 12)).astype(np.float32)
    with mlc.no_grad():
        ref = model(mlc.Tensor(x, requires_grad=False)).numpy()
        dq = quant.quantize_dynamic(model, granularity="row")
        got = dq(mlc.Tensor(x, requires_grad=False)).numpy()
    assert sum(isinstance(m, quant.dynamic.DynamicModule) for m in dq.modules) == 2
    assert isinstance(model.modules[0], nn.Linear)              # the float model untouched
    assert quant.sqnr(ref, got) > 30
    hand = quant.DynamicLinear(model.modules[0].weight.numpy(), model.modules[0].bias.numpy(),
                               "row")
    with mlc.no_grad():
        first = dq.modules[0](mlc.Tensor(x, requires_grad=False)).numpy()
    np.testing.assert_array_equal(first, hand(x))


@pytest.mark.parametrize("call, exc", [
    (lambda: quant.DynamicLinear(W, granularity="channel"), ValueError),
    (lambda: quant.DynamicLinear(W, reduce_range="yes"), TypeError),
    (lambda: quant.DynamicLinear(np.ones(3)), ValueError),
    (lambda: quant.DynamicLinear(W, bias=np.ones(4)), ValueError),
    (lambda: quant.DynamicLinear(W)(np.ones((2, 11), np.float32)), ValueError),
    (lambda: quant.DynamicLinear(W)(np.full((1, 12), np.nan, np.float32)), ValueError),
    (lambda: quant.quantize_dynamic(nn.ReLU()), ValueError),
    (lambda: quant.quantize_dynamic(W), TypeError),
])
def test_bad_input_is_refused_with_a_clear_error(call, exc):
    with pytest.raises(exc):
        call()


def test_device_is_kept():
    lin = nn.Linear(12, 3, device=nd.cpu())
    dq = quant.quantize_dynamic(nn.Sequential(lin))
    with mlc.no_grad():
        y = dq(mlc.Tensor(np.ones((2, 12), np.float32), device=nd.cpu(), requires_grad=False))
    assert y.device == nd.cpu() and y.shape == (2, 3)

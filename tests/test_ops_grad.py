"""Every op's gradient against central differences (float64), on random shapes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlc.ndarray as nd
from mlc import ops
from gradcheck_util import check_gradients

R = np.random.default_rng(0)


def rn(*shape):
    return R.standard_normal(shape)


def pos(*shape):
    return R.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Random values with |x| >= 0.2 (kinks of relu/maximum stay out of eps's reach)."""
    x = R.uniform(0.2, 2.0, shape)
    return x * R.choice([-1.0, 1.0], shape)


# (name, function, inputs): each row is one gradient check
CASES = [
    ("add", lambda a, b: a + b, [rn(2, 3), rn(2, 3)]),
    ("add_broadcast", lambda a, b: ops.add(a, b), [rn(3, 1, 4), rn(2, 1)]),
    ("add_scalar", lambda a: ops.add_scalar(a, 1.5), [rn(4)]),
    ("sub_rsub", lambda a, b: (a - b) + (2.0 - a), [rn(2, 2), rn(2)]),
    ("multiply", lambda a, b: a * b, [rn(3, 2), rn(3, 2)]),
    ("multiply_broadcast", lambda a, b: ops.multiply(a, b), [rn(2, 3, 1), rn(1, 4)]),
    ("mul_scalar", lambda a: ops.mul_scalar(a, -3.0), [rn(2, 3)]),
    ("divide", lambda a, b: a / b, [rn(2, 3), away_from_zero(2, 3)]),
    ("divide_broadcast", lambda a, b: ops.divide(a, b), [rn(2, 3), away_from_zero(3)]),
    ("divide_scalar", lambda a: ops.divide_scalar(a, 4.0), [rn(5)]),
    ("rtruediv", lambda a: 2.0 / a, [away_from_zero(4)]),
    ("power_scalar_3", lambda a: a ** 3, [rn(2, 3)]),
    ("power_scalar_neg", lambda a: ops.power_scalar(a, -2), [away_from_zero(4)]),
    ("power_scalar_half", lambda a: ops.power_scalar(a, 0.5), [pos(3, 2)]),
    ("power", lambda a, b: a ** b, [pos(2, 3), rn(2, 3)]),
    ("negate", lambda a: -a, [rn(3)]),
    ("log", ops.log, [pos(2, 4)]),
    ("exp", ops.exp, [rn(2, 4)]),
    ("relu", ops.relu, [away_from_zero(3, 4)]),
    ("tanh", ops.tanh, [rn(3, 4)]),
    ("sigmoid", ops.sigmoid, [rn(3, 4) * 3]),
    ("maximum", lambda a, b: ops.maximum(a, b), [rn(3, 4), rn(3, 4) + 0.5]),
    ("maximum_scalar", lambda a: ops.maximum(a, 0.1), [away_from_zero(3, 4) + 0.1]),
    ("transpose", lambda a: ops.transpose(a), [rn(2, 3, 4)]),
    ("transpose_axes", lambda a: ops.transpose(a, (0, 2)), [rn(2, 3, 4)]),
    ("permute", lambda a: ops.permute(a, (2, 0, 1)), [rn(2, 3, 4)]),
    ("reshape", lambda a: ops.reshape(a, (3, -1)), [rn(2, 3, 2)]),
    ("reshape_of_view", lambda a: ops.reshape(ops.transpose(a), (6,)), [rn(2, 3)]),
    ("broadcast_to", lambda a: ops.broadcast_to(a, (2, 3, 4)), [rn(3, 1)]),
    ("summation_all", lambda a: ops.summation(a), [rn(2, 3, 4)]),
    ("summation_axis", lambda a: ops.summation(a, 1), [rn(2, 3, 4)]),
    ("summation_axes", lambda a: ops.summation(a, (0, 2)), [rn(2, 3, 4)]),
    ("summation_keepdims", lambda a: ops.summation(a, (-1,), keepdims=True), [rn(2, 3)]),
    ("matmul", lambda a, b: a @ b, [rn(3, 4), rn(4, 2)]),
    ("matmul_batched", lambda a, b: a @ b, [rn(2, 3, 4), rn(2, 4, 5)]),
    ("matmul_batch_broadcast", lambda a, b: a @ b, [rn(2, 1, 3, 4), rn(3, 4, 2)]),
    ("matmul_3d_2d", lambda a, b: a @ b, [rn(2, 3, 4), rn(4, 2)]),
    ("matmul_2d_3d", lambda a, b: a @ b, [rn(3, 4), rn(2, 4, 2)]),
    ("logsumexp", lambda a: ops.logsumexp(a, (1,)), [rn(3, 4)]),
    ("logsumexp_axes", lambda a: ops.logsumexp(a, (0, 2)), [rn(2, 3, 2)]),
    ("logsumexp_all", lambda a: ops.logsumexp(a), [rn(2, 3)]),
    ("log_softmax", lambda a: ops.log_softmax(a, -1), [rn(3, 4)]),
    ("softmax", lambda a: ops.softmax(a, 0), [rn(3, 4)]),
    ("stack", lambda a, b, c: ops.stack([a, b, c], 1), [rn(2, 3), rn(2, 3), rn(2, 3)]),
    ("split", lambda a: sum((ops.exp(t) * (i + 1) for i, t in enumerate(ops.split(a, 1))),
                            start=ops.split(a, 1)[0] * 0), [rn(2, 3, 2)]),
    ("split_stack", lambda a: ops.stack(list(ops.split(a, 0)), 1), [rn(3, 2)]),
    ("flip", lambda a: ops.flip(a, (0, 2)), [rn(2, 3, 2)]),
    ("pad", lambda a: ops.pad(a, ((1, 0), (2, 1))), [rn(2, 3)]),
    ("crop", lambda a: ops.crop(a, ((1, 0), (0, 2))), [rn(3, 4)]),
    ("im2col", lambda a: ops.im2col(a, (2, 2), 1), [rn(1, 3, 3, 2)]),
    ("col2im", lambda c: ops.col2im(c, (1, 4, 4, 1), (2, 2), 2), [rn(1, 2, 2, 2, 2, 1)]),
    ("conv", lambda x, w: ops.conv(x, w), [rn(2, 4, 4, 2), rn(3, 3, 2, 3)]),
    ("conv_stride_pad", lambda x, w: ops.conv(x, w, stride=2, padding=1),
     [rn(1, 5, 5, 2), rn(3, 3, 2, 2)]),
]


@pytest.mark.parametrize("name,f,inputs", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_central_differences(name, f, inputs):
    check_gradients(f, *inputs)


# A subset on the Numba device: the gradients do not depend on the device, but every op's
# compute must run there too.
NUMBA_CASES = ["add_broadcast", "divide", "power_scalar_half", "log", "exp", "relu",
               "sigmoid", "summation_axes", "matmul_batch_broadcast", "logsumexp_axes",
               "split_stack", "flip", "pad", "conv_stride_pad"]


@pytest.mark.parametrize("name", NUMBA_CASES)
def test_gradient_on_numba_cpu(name):
    _, f, inputs = next(c for c in CASES if c[0] == name)
    check_gradients(f, *inputs, device=nd.cpu())


# ---------------------------------------------------------------------------------------
# random shapes
# ---------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)


@st.composite
def broadcastable_pair(draw):
    """Two shapes that broadcast: drop leading axes and set some axes to 1."""
    out = draw(shapes)
    a = tuple(1 if draw(st.booleans()) else n for n in out)
    b = tuple(1 if draw(st.booleans()) else n for n in out)
    b = b[draw(st.integers(0, len(b) - 1)):]
    return a, b


@settings(max_examples=12, deadline=None)
@given(pair=broadcastable_pair(), seed=st.integers(0, 2**16),
       op=st.sampled_from(["add", "multiply", "divide", "maximum"]))
def test_binary_ops_broadcast_random_shapes(pair, seed, op):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(pair[0])
    b = rng.uniform(0.5, 2.0, pair[1]) * rng.choice([-1, 1], pair[1])
    if op == "maximum":  # keep ties out of reach of the finite difference
        b = b + np.where(b > 0, 0.1, -0.1)
    out = check_gradients(getattr(ops, op), a, b)
    assert out.shape == np.broadcast_shapes(a.shape, b.shape)


@settings(max_examples=12, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), data=st.data())
def test_reductions_over_random_axes(shape, seed, data):
    axes = tuple(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    keepdims = data.draw(st.booleans())
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    out = check_gradients(lambda a: ops.summation(a, axes, keepdims=keepdims), x)
    np.testing.assert_allclose(out.numpy(), x.sum(axis=axes, keepdims=keepdims))
    out = check_gradients(lambda a: ops.logsumexp(a, axes, keepdims=keepdims), x)
    m = x.max(axis=axes, keepdims=True)
    ref = np.log(np.exp(x - m).sum(axis=axes, keepdims=True)) + m
    np.testing.assert_allclose(out.numpy(), ref if keepdims else ref.reshape(out.shape))


@settings(max_examples=10, deadline=None)
@given(batch=st.lists(st.integers(1, 2), max_size=2).map(tuple),
       nkm=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       seed=st.integers(0, 2**16), drop=st.booleans())
def test_matmul_random_batches(batch, nkm, seed, drop):
    n, k, m = nkm
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch + (n, k))
    b = rng.standard_normal(((1,) * len(batch) if drop else batch) + (k, m))
    out = check_gradients(ops.matmul, a, b)
    np.testing.assert_allclose(out.numpy(), a @ b)


@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=3).map(tuple),
       seed=st.integers(0, 2**16), data=st.data())
def test_shape_ops_random(shape, seed, data):
    x = np.random.default_rng(seed).standard_normal(shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    out = check_gradients(lambda a: ops.permute(a, perm), x)
    np.testing.assert_allclose(out.numpy(), x.transpose(perm))
    axes = tuple(data.draw(st.sets(st.integers(0, len(shape) - 1))))
    out = check_gradients(lambda a: ops.flip(a, axes), x)
    np.testing.assert_allclose(out.numpy(), np.flip(x, axes))
    pads = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in shape)
    out = check_gradients(lambda a: ops.pad(a, pads), x)
    np.testing.assert_allclose(out.numpy(), np.pad(x, pads))

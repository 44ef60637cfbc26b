"""The convolution: im2col windows, its adjoint col2im, and conv against a direct loop."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mlc
import mlc.ndarray as nd
from mlc import ops


def conv_reference(x, w, stride, padding):
    """The definition:
    out[n, i, j, o] = sum_{di, dj, c} x[n, i*s + di, j*s + dj, c] * w[di, dj, c, o]."""
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, h, wd, _ = x.shape
    k, _, _, c_out = w.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, ho, wo, c_out))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2), hw=st.integers(3, 6), c_in=st.integers(1, 3),
       c_out=st.integers(1, 3), k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2),
       padding=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_conv_matches_definition(n, hw, c_in, c_out, k, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, hw, hw, c_in))
    w = rng.standard_normal((k, k, c_in, c_out))
    out = ops.conv(mlc.Tensor(x, dtype="float64", device=nd.cpu_numpy()),
                   mlc.Tensor(w, dtype="float64", device=nd.cpu_numpy()), stride, padding)
    np.testing.assert_allclose(out.numpy(), conv_reference(x, w, stride, padding), rtol=1e-10)


@pytest.mark.parametrize("device", [nd.cpu(), nd.cpu_numpy()], ids=lambda d: d.name)
def test_col2im_is_the_adjoint_of_im2col(device):
    # <im2col(x), y> == <x, col2im(y)> for all x, y: col2im is the transpose of im2col
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 3))
    for k, s in [(2, 1), (3, 2), (1, 1)]:
        cols = ops.im2col(mlc.Tensor(x, dtype="float64", device=device), (k, k), s)
        y = rng.standard_normal(cols.shape)
        back = ops.col2im(mlc.Tensor(y, dtype="float64", device=device), x.shape, (k, k), s)
        assert back.shape == x.shape
        np.testing.assert_allclose((cols.numpy() * y).sum(), (x * back.numpy()).sum())


def test_im2col_windows():
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    cols = ops.im2col(mlc.Tensor(x, dtype="float64"), (2, 2), 2).numpy()
    assert cols.shape == (1, 2, 2, 2, 2, 1)
    np.testing.assert_array_equal(cols[0, 1, 0, :, :, 0], [[8, 9], [12, 13]])


def test_conv_errors_name_shapes():
    x = mlc.Tensor(np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"3 channels|expects 3"):
        ops.conv(x, mlc.Tensor(np.ones((3, 3, 3, 1))))
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        ops.conv(mlc.Tensor(np.ones((4, 4, 2))), mlc.Tensor(np.ones((3, 3, 2, 1))))
    with pytest.raises(ValueError, match="does not fit"):
        ops.conv(x, mlc.Tensor(np.ones((5, 5, 2, 1))))

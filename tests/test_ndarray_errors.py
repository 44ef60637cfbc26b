"""Bad input raises a clear error in Python, before any kernel runs, naming what is wrong."""

import re

import numpy as np
import pytest

import mlc.ndarray as nd

DEVICES = [pytest.param(d, id=d.name) for d in nd.all_devices() if d.enabled()]


@pytest.fixture(params=DEVICES)
def a(request):
    return nd.array(np.arange(12, dtype=np.float32).reshape(3, 4), device=request.param)


def test_shape_mismatch_names_both_shapes(a):
    b = nd.array(np.ones((2, 4), np.float32), device=a.device)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 4\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3,\)"):
        a * nd.array([1, 2, 3], device=a.device)


def test_impossible_reshape(a):
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        a.reshape((5,))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, -1\)"):
        a.reshape((5, -1))
    with pytest.raises(ValueError, match="only one dimension may be -1"):
        a.reshape((-1, -1))
    with pytest.raises(ValueError, match=r"non-contiguous.*\(4, 3\).*compact\(\)"):
        a.permute((1, 0)).reshape((12,))


def test_impossible_broadcast(a):
    with pytest.raises(ValueError, match=r"\(3, 4\) to \(3, 5\).*axis 1"):
        a.broadcast_to((3, 5))
    with pytest.raises(ValueError, match=r"\(3, 4\) to \(4,\)"):
        a.broadcast_to((4,))


def test_bad_permutations(a):
    with pytest.raises(ValueError, match=r"\(0, 0\) are not a permutation"):
        a.permute((0, 0))
    with pytest.raises(IndexError, match="axis 2 is out of range"):
        a.permute((0, 2))
    with pytest.raises(ValueError, match="needs 2 axes"):
        a.permute((0,))


def test_index_out_of_range(a):
    with pytest.raises(IndexError, match=r"index 3 is out of bounds for axis 0 with size 3"):
        a[3]
    with pytest.raises(IndexError, match=r"index -5 is out of bounds for axis 1 with size 4"):
        a[0, -5]
    with pytest.raises(IndexError, match="too many indices.*shape \\(3, 4\\)"):
        a[0, 0, 0]
    with pytest.raises(IndexError, match="only integers, slices"):
        a[1.5]


def test_reduction_axes(a):
    with pytest.raises(IndexError, match="axis 2 is out of range.*2 dimensions"):
        a.sum(axis=2)
    with pytest.raises(ValueError, match=r"repeated axis in \(0, -2\)"):
        a.max(axis=(0, -2))


def test_matmul_shapes(a):
    b = nd.array(np.ones((3, 2), np.float32), device=a.device)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 2\) are not aligned: 4.*!= 3"):
        a @ b
    x = nd.array(np.ones((2, 3, 4), np.float32), device=a.device)
    y = nd.array(np.ones((3, 4, 2), np.float32), device=a.device)
    with pytest.raises(ValueError, match=r"batch axes of shapes \(2, 3, 4\) and \(3, 4, 2\)"):
        x @ y


def test_as_strided_out_of_buffer(a):
    with pytest.raises(ValueError, match=r"reaches positions 0..15, outside the buffer of 12"):
        a.as_strided((4, 4), (4, 1))


def test_setitem_shape_mismatch(a):
    with pytest.raises(ValueError, match=r"input of shape \(3,\) into the view of shape \(4,\)"):
        a[0] = nd.array([1, 2, 3], device=a.device)
    with pytest.raises(ValueError, match=r"scalar 300 is out of range for int8"):
        nd.zeros((2,), "int8", a.device)[0] = 300


def test_dtypes(a):
    with pytest.raises(TypeError, match="dtype complex64 is not supported"):
        a.astype("complex64")
    with pytest.raises(TypeError, match="dtype bool is not supported"):
        nd.empty((2,), "bool", a.device)      # mlc carries bool as uint8
    i = nd.array([1, 2], dtype="int32", device=a.device)
    with pytest.raises(TypeError, match="sqrt needs a float array, got int32"):
        i.sqrt()
    with pytest.raises(ValueError, match="negative power"):
        i ** -1
    with pytest.raises(ValueError, match="negative integer powers"):
        i ** nd.array([1, -1], dtype="int32", device=a.device)
    with pytest.raises(TypeError):
        a + "x"


def test_mixing_devices(a):
    other = nd.cpu_numpy() if a.device != nd.cpu_numpy() else nd.cpu()
    b = nd.array(np.ones((3, 4), np.float32), device=other)
    msg = re.escape(f"different devices: {a.device!r} and {other!r}")
    with pytest.raises(ValueError, match=msg):
        a + b
    with pytest.raises(ValueError, match="different devices"):
        a @ b.permute((1, 0))
    with pytest.raises(ValueError, match="different devices"):
        a[0] = b[0]


@pytest.mark.parametrize("device", ["cpu_numpy", "cpu"])
def test_setitem_into_a_broadcast_view_is_refused(device):
    dev = getattr(nd, device)()
    b = nd.array(np.arange(3, dtype=np.float32), device=dev).broadcast_to((4, 3))
    with pytest.raises(ValueError, match="broadcast view: axis 0"):
        b[:, 1] = 5.0
    with pytest.raises(ValueError, match="stride 0"):
        b[:, :] = nd.array(np.zeros((4, 3), np.float32), device=dev)
    b[2, :] = 7.0  # one row of it is the original row: no index aliases another
    assert (b.numpy() == 7.0).all()

"""float16 storage in NDArray: conversion at the kernel boundary, float32 arithmetic.

Every result is compared with numpy computing in float32 on the float16 values and
rounding the result to float16 once (what "fp16 storage, fp32 compute" means).
"""

import numpy as np
import pytest

import mlc.ndarray as nd

DEVICES = [nd.cpu(), nd.cpu_numpy(), nd.cuda()]


def _f16(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float16)


def _exact(got: nd.NDArray, want32: np.ndarray):
    out = got.numpy()
    assert got.dtype == "float16" and out.dtype == np.float16
    np.testing.assert_array_equal(out, want32.astype(np.float16))


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_storage_and_conversion(device):
    x = _f16((3, 4))
    a = nd.array(x, dtype="float16", device=device)
    assert a.dtype == "float16" and a.numpy().dtype == np.float16
    np.testing.assert_array_equal(a.numpy(), x)
    assert nd.array(x, dtype=None, device=device).dtype == "float16"  # kept from numpy
    b = nd.array(x.astype(np.float32), device=device).astype("float16")
    np.testing.assert_array_equal(b.numpy(), x)
    np.testing.assert_array_equal(a.astype("float32").numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(a.astype("int32").numpy(), x.astype(np.int32))
    # views and writes move float16 values unchanged
    np.testing.assert_array_equal(a[1:, ::2].numpy(), x[1:, ::2])
    np.testing.assert_array_equal(a.permute((1, 0)).compact().numpy(), x.T)
    a[0, :] = 2.5
    x[0, :] = 2.5
    np.testing.assert_array_equal(a.numpy(), x)
    # bytes: half of float32
    assert a.numpy().nbytes * 2 == a.astype("float32").numpy().nbytes
    # rounding on the way in: 1 + 2^-11 is not a float16
    assert nd.array([1 + 2 ** -11], dtype="float16", device=device).numpy()[0] == 1.0


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_arithmetic_in_float32_rounded_once(device):
    x, y = _f16((4, 5), 1), _f16((4, 5), 2)
    a = nd.array(x, dtype="float16", device=device)
    b = nd.array(y, dtype="float16", device=device)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    _exact(a + b, x32 + y32)
    _exact(a * b, x32 * y32)
    _exact(a / 3.0, x32 / np.float32(3.0))
    _exact(a.maximum(b), np.maximum(x32, y32))
    _exact(a.exp(), np.exp(x32))
    _exact(a.abs().sqrt(), np.sqrt(np.abs(x32)))
    assert (a >= b).dtype == "float16"
    np.testing.assert_array_equal((a >= b).numpy(), (x >= y).astype(np.float16))
    # broadcasting and mixing with float32 (numpy's promotion: float32)
    _exact(a + nd.array(y[:1], dtype="float16", device=device).broadcast_to((4, 5)),
           x32 + y32[:1])
    assert (a + nd.array(y, device=device)).dtype == "float32"


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_reductions_and_matmul_accumulate_in_float32(device):
    x, w = _f16((6, 40), 3), _f16((40, 5), 4)
    a = nd.array(x, dtype="float16", device=device)
    b = nd.array(w, dtype="float16", device=device)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    np.testing.assert_allclose(a.sum(axis=1).numpy().astype(np.float32), x32.sum(axis=1),
                               rtol=1e-3, atol=1e-3)
    assert a.sum(axis=1).dtype == "float16"
    _exact(a.max(axis=0), x32.max(axis=0))
    got = a @ b
    assert got.dtype == "float16"
    np.testing.assert_allclose(got.numpy().astype(np.float32), x32 @ w32, rtol=2e-3, atol=2e-3)


def test_float16_elementwise_matches_across_devices():
    x = _f16((7, 9), 5)
    outs = [(nd.array(x, dtype="float16", device=d) * 1.5 + 0.25).numpy() for d in DEVICES]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_bad_dtypes_still_clear():
    with pytest.raises(TypeError, match="not supported"):
        nd.array([1.0], dtype="bool")
    with pytest.raises(TypeError, match="not supported"):
        nd.array([1.0], dtype="float16").astype("complex64")
    with pytest.raises(TypeError, match="not supported"):
        nd.empty((2,), dtype="complex128")

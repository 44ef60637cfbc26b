"""The wider integer dtypes (int16, uint16, uint32, uint64), the narrow storage floats
(bfloat16, float8 and float4 formats of ``ml_dtypes``) and the storage-only 4- and 2-bit
integers in NDArray, on every device.

Integers compute in their own type and wrap as numpy does. The storage floats compute in
float32 (as float16 does): each result equals numpy computing in float32 on the stored
values and rounding once to the storage format.
"""

import numpy as np
import pytest

import mlc.ndarray as nd

DEVICES = [nd.cpu(), nd.cpu_numpy(), nd.cuda()]
INTS = ["int16", "uint16", "uint32", "uint64"]
STORAGE_INTS = list(nd.shapes.STORAGE_INT_DTYPES)
STORAGE = [d for d in nd.shapes.STORAGE_DTYPES if d != "float16" and d not in STORAGE_INTS]


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the simulator's numpy scalars
@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)                # wrap too
@pytest.mark.parametrize("dtype", INTS)
def test_integer_dtypes_compute_in_their_own_type(device, dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (3, 5)).astype(dtype)
    y = rng.integers(1, 200, (3, 5)).astype(dtype)
    a, b = nd.array(x, dtype=dtype, device=device), nd.array(y, dtype=dtype, device=device)
    for got, want in [(a + b, x + y), (a * b, x * y), (a - b, x - y),   # unsigned wraps
                      (a.maximum(b), np.maximum(x, y)), (a.minimum(b), np.minimum(x, y)),
                      (a.sum(axis=1), x.sum(axis=1, dtype=dtype)), (a.max(axis=0), x.max(0)),
                      (a @ b.permute((1, 0)), x @ y.T), (a[:, 1::2].compact(), x[:, 1::2]),
                      ((a >= b), (x >= y).astype(dtype))]:
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(a.astype("float32").numpy(), x.astype(np.float32))
    assert (a + 1).dtype == dtype                              # python scalars are weak


@pytest.mark.parametrize("dtype", INTS)
def test_integer_dtypes_refuse_bad_input(dtype):
    a = nd.zeros((2,), dtype, nd.cpu())
    top = np.iinfo(dtype).max
    with pytest.raises(ValueError, match=f"scalar {top + 1} is out of range for {dtype}"):
        a[0] = top + 1
    if dtype.startswith("uint"):
        with pytest.raises(ValueError, match=f"scalar -1 is out of range for {dtype}"):
            a + (-1)
    with pytest.raises(TypeError, match="exp needs a float array"):
        a.exp()


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", STORAGE)
def test_storage_floats_compute_in_float32_and_round_once(device, dtype):
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(dtype)
    x32 = x.astype(np.float32)
    a = nd.array(x, dtype=None, device=device)                 # the dtype kept from numpy
    assert a.dtype == dtype and a.numpy().dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a.numpy(), x)
    np.testing.assert_array_equal(a.permute((1, 0)).compact().numpy(), x.T)
    for got, want in [(a * 1.5, x32 * 1.5), ((a + a).exp(), np.exp(x32 + x32)),
                      (a.sum(axis=1), x32.sum(axis=1)), (a @ a.permute((1, 0)), x32 @ x32.T)]:
        assert got.dtype == dtype
        # one rounding to the storage format; a float32 sum in another order may round
        # differently from numpy's, which moves the result by at most one storage step
        np.testing.assert_allclose(got.numpy().astype(np.float32),
                                   want.astype(dtype).astype(np.float32),
                                   rtol=float(np.finfo(dtype).eps), atol=1e-6)
    back = nd.array(x32, device=device).astype(dtype)          # float32 -> storage rounds
    np.testing.assert_array_equal(back.numpy(), x)


def test_storage_float_overflow_is_what_ml_dtypes_gives():
    """No saturation in the conversion itself: e4m3fn has no infinity, so an overflow is
    NaN; e5m2 has one (ONNX's saturating Cast clips before converting)."""
    big = nd.array([1e6, -1e6], device=nd.cpu())
    assert np.isnan(big.astype("float8_e4m3fn").numpy().astype(np.float32)).all()
    np.testing.assert_array_equal(big.astype("float8_e5m2").numpy().astype(np.float32),
                                  [np.inf, -np.inf])


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", STORAGE_INTS)
def test_narrow_integers_are_storage_only(device, dtype):
    """Conversions to and from them are ml_dtypes' (what ONNX's reference does), views
    and copies move them unchanged, and arithmetic on them is refused by name."""
    x = np.arange(-9.0, 9.0, 1.5, dtype=np.float32).reshape(3, 4)
    a = nd.array(x, device=device).astype(dtype)
    want = x.astype(dtype)
    assert a.dtype == dtype
    np.testing.assert_array_equal(a.numpy(), want)
    np.testing.assert_array_equal(a.permute((1, 0)).compact().numpy(), want.T)
    np.testing.assert_array_equal(a.astype("int8").numpy(), want.astype(np.int8))
    a[0, 0] = 1                                                # a write that fits
    assert a.numpy()[0, 0] == 1
    with pytest.raises(ValueError, match=f"scalar 100 is out of range for {dtype}"):
        a[0, 0] = 100
    for what, f in (("add", lambda: a + a), ("mul", lambda: a * 2), ("sum", lambda: a.sum()),
                    ("neg", lambda: -a), ("mul", lambda: a @ a.permute((1, 0)))):
        with pytest.raises(TypeError, match=f"{what} on {dtype}: {dtype} is a storage format"):
            f()

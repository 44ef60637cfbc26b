"""CUDA-specific behaviour: data stays on the device, results do not depend on the grid,
and the kernels the interface does not reach (naive matmul). Runs in Numba's simulator
when there is no GPU, on tiny arrays."""

import numpy as np
import pytest

import mlc.ndarray as nd

pytestmark = pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA and no simulator")


@pytest.fixture
def bc():
    return nd.cuda().mod


def test_data_stays_on_the_device(bc):
    a = nd.array(np.arange(6, dtype=np.float32).reshape(2, 3), device=nd.cuda())
    b = (a * 2 + 1).permute((1, 0)).compact().sum(axis=0)
    for x in (a, b):
        assert isinstance(x.handle, bc.Array)
        # a device array (DeviceNDArray on a GPU, FakeCUDAArray in the simulator)
        assert not isinstance(x.handle.array, np.ndarray)
        assert hasattr(x.handle.array, "copy_to_host")
    np.testing.assert_array_equal(b.numpy(), (np.arange(6).reshape(2, 3) * 2 + 1).sum(axis=1))
    assert b.to(nd.cpu()).device == nd.cpu()


@pytest.mark.parametrize("threads,blocks,tile", [(1, 1, 1), (4, 3, 2), (8, 1, 3)])
def test_results_do_not_depend_on_the_grid(bc, monkeypatch, threads, blocks, tile):
    """Grid-stride loops: a grid much smaller than the data gives the same answers."""
    monkeypatch.setattr(bc, "THREADS", threads)
    monkeypatch.setattr(bc, "MAX_BLOCKS", blocks)
    monkeypatch.setattr(bc, "TILE", tile)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    y = rng.standard_normal((7, 3)).astype(np.float32)
    a, b = nd.array(x, device=nd.cuda()), nd.array(y, device=nd.cuda())
    np.testing.assert_allclose((a @ b).numpy(), x @ y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.sum(axis=1).numpy(), x.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.max(axis=0).numpy(), x.max(axis=0))
    np.testing.assert_array_equal(a.permute((1, 0)).compact().numpy(), x.T)
    np.testing.assert_allclose((a + 1).exp().numpy(), np.exp(x + 1), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_naive_matmul_kernel(bc, dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(-100, 100, (2, 3, 4)).astype(dtype)
    y = rng.integers(-100, 100, (2, 4, 5)).astype(dtype)
    out_dtype = "int32" if dtype == "int8" else dtype
    a, b = nd.array(x, dtype=dtype, device=nd.cuda()), nd.array(y, dtype=dtype, device=nd.cuda())
    out = nd.empty((2, 3, 5), out_dtype, nd.cuda())
    bc.matmul_naive(a.handle, b.handle, out.handle, 3, 4, 5, 2)
    want = x.astype(out_dtype) @ y.astype(out_dtype)
    np.testing.assert_array_equal(out.numpy(), want)


# The simulator computes with numpy scalars, which warn on inf/nan; a GPU does not.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_special_values_match_numpy():
    x = np.array([0.0, -1.0, np.inf, -np.inf, np.nan, 100.0, -200.0, 1e-30], np.float32)
    a = nd.array(x, device=nd.cuda())
    with np.errstate(all="ignore"):
        for name in ("log", "sqrt", "exp", "tanh"):
            got = getattr(a, name)().numpy()
            np.testing.assert_allclose(got, getattr(np, name)(x), rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal((a / 0.0).numpy(), x / np.float32(0))

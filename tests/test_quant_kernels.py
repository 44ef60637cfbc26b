"""mlc.quant integer kernels: int8 matmul with zero-point offsets, fused requantize, conv.

cpu() (Numba) and cuda() (Numba-CUDA; the simulator here, so tiny shapes) are checked
bit for bit against plain int64 numpy arithmetic (cpu_numpy()).
"""

import platform

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import ops, quant

DEVICES = [nd.cpu(), nd.cuda()]


def _case(rng, m, k, n, a_dtype):
    lo, hi = quant.qrange(a_dtype)
    a = rng.integers(lo, hi + 1, (m, k)).astype(a_dtype)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    return a, w


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("a_dtype,za,zw", [("int8", 0, 0), ("int8", -7, 0), ("uint8", 131, 3),
                                           ("int8", 5, "per-column")])
def test_qmatmul_offsets_exact(device, a_dtype, za, zw):
    rng = np.random.default_rng(0)
    m, k, n = (5, 19, 7) if device.name == "cuda" else (37, 70, 29)
    a, w = _case(rng, m, k, n, a_dtype)
    if zw == "per-column":
        zw = rng.integers(-10, 10, n)
    want = (a.astype(np.int64) - za) @ (w.astype(np.int64) - np.asarray(zw))
    got = quant.qmatmul(a, w, za, zw, device=device)
    assert got.dtype == np.int32 and (got == want).all()
    assert (quant.qmatmul(a, w, za, zw, device=nd.cpu_numpy()) == want).all()


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
@pytest.mark.parametrize("relu", [False, True])
def test_qlinear_fused_epilogue_matches_reference(device, relu):
    rng = np.random.default_rng(1)
    m, k, n = (4, 24, 6) if device.name == "cuda" else (33, 64, 40)
    a, w = _case(rng, m, k, n, "int8")
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    m0, shift = quant.quantize_multiplier(rng.uniform(1e-4, 3e-3, n))
    args = (a, w, 3, bias, m0, shift, -4)
    want = quant.qlinear(*args, relu=relu, device=nd.cpu_numpy())
    got = quant.qlinear(*args, relu=relu, device=device)
    assert got.dtype == np.int8 and (got == want).all()
    if relu:
        assert want.min() >= -4
    # the reference is requantize() of the offset-corrected accumulator
    acc = (a.astype(np.int64) - 3) @ w.astype(np.int64) + bias
    assert (want == quant.requantize(acc.astype(np.int32), m0, shift, -4, relu=relu)).all()


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_qconv2d_matches_float_conv_of_the_codes(device):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (1 if device.name == "cuda" else 2, 6, 6, 3)).astype(np.int8)
    w = rng.integers(-127, 128, (3, 3, 3, 4)).astype(np.int8)
    za = 9
    # padding writes the zero point: the real 0
    acc = quant.qconv2d(x, w, za, None, 1 << 30, 0, 0, stride=2, padding=1, device=device)
    m0, shift = 1 << 30, 1                  # M = 1: the codes are the accumulators, saturated
    real = ops.conv(mlc.Tensor(x.astype(np.float32) - za, requires_grad=False),
                    mlc.Tensor(w.astype(np.float32), requires_grad=False),
                    stride=2, padding=1).numpy()
    want = np.clip(np.rint(real / 2), -128, 127)   # M = 2^30 * 2^(0-31) = 1/2
    assert acc.shape == (x.shape[0], 3, 3, 4)
    assert np.abs(acc.astype(np.int64) - want).max() <= 1
    exact = quant.qconv2d(x, w, za, None, m0, shift, 0, stride=2, padding=1,
                          device=nd.cpu_numpy())
    got = quant.qconv2d(x, w, za, None, m0, shift, 0, stride=2, padding=1, device=device)
    assert (got == exact).all()


def test_validation_before_any_kernel():
    a = np.zeros((4, 8), np.int8)
    w = np.zeros((8, 3), np.int8)
    with pytest.raises(TypeError, match="int8 or uint8"):
        quant.qmatmul(a.astype(np.float32), w)
    with pytest.raises(ValueError, match="do not match"):
        quant.qmatmul(np.zeros((4, 7), np.int8), w)
    with pytest.raises(TypeError, match="weights must be int8"):
        quant.qmatmul(a, w.astype(np.uint8))
    with pytest.raises(ValueError, match="zero point"):
        quant.qmatmul(a, w, za=300)
    with pytest.raises(ValueError, match="shape"):
        quant.qlinear(a, w, 0, np.zeros(4, np.int32), 1 << 30, 0, 0)
    with pytest.raises(TypeError, match="int32"):
        quant.qlinear(a, w, 0, np.zeros(3, np.int64), 1 << 30, 0, 0)
    with pytest.raises(ValueError, match="shift"):
        quant.qlinear(a, w, 0, None, 1 << 30, 40, 0)
    with pytest.raises(ValueError, match="unknown device"):
        quant.qmatmul(a, w, device="tpu")
    with pytest.raises(ValueError, match="does not match"):
        quant.qconv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((3, 3, 3, 1), np.int8), 0,
                      None, 1 << 30, 0, 0)


def test_packed_weight_and_large_values_do_not_overflow():
    rng = np.random.default_rng(3)
    a = np.full((3, 512), -128, np.int8)
    w = np.full((512, 2), -127, np.int8)
    pw = quant.PackedWeight(w)
    assert pw.wt.shape == (2, 512) and pw.colsum.tolist() == [-127 * 512] * 2
    assert (quant.qmatmul(a, pw) == 128 * 127 * 512).all()
    u = rng.integers(0, 256, (4, 512)).astype(np.uint8)
    assert (quant.qmatmul(u, w, 255) == (u.astype(np.int64) - 255) @ w.astype(np.int64)).all()


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 300, 9), (5, 17, 3), (131, 100, 67),
                                   (70, 129, 65)])
def test_blocked_cpu_kernel_edges_exact(m, k, n):
    """Tile and padding edges (rows not a multiple of 4, K of 16, N of 2 or 4), the
    few-rows kernel on int8 codes (m = 1), -128 codes, uint8 inputs."""
    rng = np.random.default_rng(m * 1000 + k)
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    w[0] = -128
    zw = rng.integers(-5, 6, n)
    for a_dtype, za in (("int8", -128), ("uint8", 255)):
        a, _ = _case(rng, m, k, n, a_dtype)
        a[:, 0] = quant.qrange(a_dtype)[0]
        want = (a.astype(np.int64) - za) @ (w.astype(np.int64) - zw)
        assert (quant.qmatmul(a, w, za, zw) == want.astype(np.int32)).all()
        bias = rng.integers(-5000, 5000, n).astype(np.int32)
        m0, shift = quant.quantize_multiplier(rng.uniform(1e-5, 1e-3, n))
        args = (a, w, za, bias, m0, shift, 3)
        assert (quant.qlinear(*args, zw=zw, relu=True)
                == quant.qlinear(*args, zw=zw, relu=True, device=nd.cpu_numpy())).all()


@pytest.mark.parametrize("m,k,n", [(1, 17, 5), (2, 64, 8), (3, 40, 9), (70, 33, 67)])
def test_every_build_of_the_cpu_kernels_is_exact(m, k, n):
    """The threaded, serial and few-rows builds, called directly (the checked API picks
    one by size), each bit for bit the int64 reference; kernels_cpu.qlinear picks the
    rows kernel for a few rows and the threads only for a large product."""
    from mlc.quant import kernels_cpu as K
    from mlc.quant.qops import _pack_input

    rng = np.random.default_rng(m + k)
    a, w = _case(rng, m, k, n, "int8")
    w[0, 0], a[0, 0] = -128, -128
    za, zw = 3, rng.integers(-4, 5, n).astype(np.int32)
    pw = quant.PackedWeight(w, zw)
    a16, rowsum = _pack_input(a)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    m0, shift = quant.quantize_multiplier(rng.uniform(1e-4, 1e-2, n))
    acc = (a.astype(np.int64) - za) @ (w.astype(np.int64) - zw)
    want = quant.requantize((acc + bias).astype(np.int32), m0, shift, -5, "int8", True)
    head = (a16, None, np.int32(za), pw.zero_point, pw.colsum, rowsum, k)
    tail = (bias, m0, shift, np.int32(-5), np.int32(-5), np.int32(127))
    builds = [(K.qlinear_kernel, pw.wt16), (K.qlinear_serial, pw.wt16), (K.qlinear_rows, pw.wt8)]
    for kernel, panel in builds:
        out = np.full((m, n), 99, np.int8)
        kernel(*head[:1], panel, *head[2:], *tail, out)
        assert (out == want).all(), kernel.__name__
    for kernel in (K.qgemm_kernel, K.qgemm_serial):
        out = np.zeros((m, n), np.int32)
        kernel(a16, pw.wt16, *head[2:], out)
        assert (out == acc).all(), kernel.__name__
    assert K.qlinear(1, 4096, 4096) is K.qlinear_rows
    assert K.qlinear(m, n, k) in (K.qlinear_rows, K.qlinear_serial)   # small: no threads
    from mlc.perf.threads import limit_threads

    with limit_threads(1):
        assert K.qlinear(512, 4096, 4096) is K.qlinear_serial
        assert K.qgemm(512, 4096, 4096) is K.qgemm_serial


def test_serial_and_threaded_builds_keep_their_own_cache_entries():
    """Numba's disk cache keys a function by name and bytecode, not by ``parallel=``: two
    builds of one Python function shared an entry, and the serial build of the int8 ViT
    ran the threaded code. Each build is a function of its own, with its own index."""
    from mlc.quant import kernels_cpu as K

    builds = [K.qlinear_kernel, K.qlinear_serial, K.qlinear_rows, K.qgemm_kernel,
              K.qgemm_serial]
    assert len({f.py_func.__code__ for f in builds}) == len(builds)
    assert len({f._cache._cache_file._index_path for f in builds}) == len(builds)
    assert K.qlinear_kernel.targetoptions.get("parallel")
    assert not K.qlinear_serial.targetoptions.get("parallel")


def test_plain_reference_loop_matches():
    from mlc.quant.kernels_cpu import qmatmul_kernel

    rng = np.random.default_rng(4)
    a, w = _case(rng, 9, 33, 5, "int8")
    out = np.empty((9, 5), np.int32)
    qmatmul_kernel(a, np.ascontiguousarray(w.T), out)
    assert (out == a.astype(np.int64) @ w.astype(np.int64)).all()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
def test_llvm_emits_the_int16_multiply_add():
    from mlc.quant.kernels_cpu import core_instructions

    found = core_instructions()
    assert found["vpmaddwd"] + found["vpdpwssd"] > 0, found

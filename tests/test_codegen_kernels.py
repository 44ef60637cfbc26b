"""The code the graph compiler generates for its hot kernels: float32 erf without libm
(GELU's loop vectorizes) and the small-matmul schedules, checked for numerics on every
target against numpy, on the odd shapes (one row, a width that is no multiple of the
tile, a reduction of length one)."""

import math

import numpy as np
import pytest

from mlc import te, tir


def erf_func(dtype):
    x = te.placeholder((64,), dtype, name="x")
    y = te.compute((64,), lambda i: te.erf(x[i]), name="y")
    return te.create_prim_func([x, y])


@pytest.mark.parametrize("target", ["python", "cpu"])
def test_float32_erf_is_the_modules_own_rational_function(target):
    mod = tir.build(erf_func("float32"), target)
    assert "erf_f32(x[i])" in mod.source and "math.erf" not in mod.source
    x = np.concatenate([np.linspace(-6, 6, 58), [0.0, 1e-30, -1e-7, 3.9, -4.5, 30.0]])
    x = x.astype(np.float32)
    y = np.empty_like(x)
    mod(x, y)
    ref = np.array([math.erf(float(v)) for v in x])
    assert np.abs(y - ref).max() < 5e-7                  # a few float32 ulps
    assert y[58] == 0 and abs(y[59] - 1.1283792e-30) < 1e-36   # odd: erf(x) ~ 2x/sqrt(pi)
    assert np.all(np.abs(y) <= 1)


def test_float64_erf_and_the_cuda_target_keep_math_erf():
    assert "math.erf(x[i])" in tir.build(erf_func("float64"), "cpu").source
    sch = tir.Schedule(erf_func("float32"))
    i0, i1 = sch.split(sch.get_loops(sch.get_block("y"))[0], factors=[None, 32])
    sch.bind(i0, "blockIdx.x")
    sch.bind(i1, "threadIdx.x")
    mod = tir.build(sch, "cuda")
    assert "erf_f32" not in mod.source
    x = np.linspace(-3, 3, 64).astype(np.float32)
    y = np.empty_like(x)
    mod(x, y)
    np.testing.assert_allclose(y, [math.erf(float(v)) for v in x], atol=1e-6)

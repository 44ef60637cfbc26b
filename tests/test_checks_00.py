"""The checks of unit 00 (welcome): the reference gets full marks, and the wrong answers
a student writes get 0: saxpy as numpy's whole-array expression under a Numba
decorator, under a decorator that only looks like Numba's, or around a loop that does
nothing, a loop that returns float64, writes into y or stops one element short; the
roofline's time as a sum or as the faster limit, a bound decided by the op alone, and
intensities that miscount FLOPs or bytes, divide as integers or assume float32."""

import numpy as np
from numba import njit

from check_util import check_runner


@njit
def saxpy(a, x, y):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]
    return out


run, fails = check_runner({"saxpy": saxpy})


def test_reference_gets_full_marks():
    rec = run("welcome.saxpy")
    assert rec["score"] == rec["max_score"], rec


def test_numpy_expression_under_njit_scores_zero():
    @njit
    def saxpy(a, x, y):
        return a * x + y

    fails("welcome.saxpy", "explicit loop", saxpy=saxpy)


def test_plain_numpy_under_a_dummy_decorator_scores_zero():
    def njit(f):  # looks like Numba's to a reader of the source, compiles nothing
        return f

    @njit
    def saxpy(a, x, y):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = a * x[i] + y[i]
        return out

    fails("welcome.saxpy", "compiled by Numba", saxpy=saxpy)


def test_loop_that_does_nothing_scores_zero():
    @njit
    def saxpy(a, x, y):
        out = a * x + y
        for i in range(1):  # noqa: B007 - the wrong answer under test
            pass
        return out

    fails("welcome.saxpy", "explicit loop", saxpy=saxpy)


def test_float64_result_scores_zero():
    @njit
    def saxpy(a, x, y):
        out = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = a * x[i] + y[i]
        return out

    fails("welcome.saxpy", "float32", saxpy=saxpy)


# ---- matmul_intensity and the roofline -------------------------------------------------------

def matmul_intensity(n, k, m, bytes_per_element=4):
    return 2 * n * k * m / ((n * k + k * m + n * m) * bytes_per_element)


def roofline_time(flops, nbytes, peak_flops, bandwidth):
    return max(flops / peak_flops, nbytes / bandwidth)


def bound_by(flops, nbytes, peak_flops, bandwidth):
    return "compute" if flops / peak_flops >= nbytes / bandwidth else "memory"


run2, fails2 = check_runner({"matmul_intensity": matmul_intensity,
                             "roofline_time": roofline_time, "bound_by": bound_by})


def test_roofline_references_get_full_marks():
    for ex in ("welcome.matmul_intensity", "welcome.roofline_time"):
        rec = run2(ex)
        assert rec["score"] == rec["max_score"], rec


def test_bound_by_from_the_op_alone_scores_zero():
    """Both once scored full marks: the visible cases' machine has its ridge at 5 FLOP/byte
    and their ops sit far on either side of it."""
    fails2("welcome.roofline_time", "bound_by(1e+06, 4e+06",
           bound_by=lambda f, b, p, w: "compute" if f > b else "memory")
    fails2("welcome.roofline_time", "bound_by(1e+06, 4e+06",
           bound_by=lambda f, b, p, w: "compute" if f / b >= 5 else "memory")


def test_roofline_time_and_intensity_mistakes_score_zero():
    fails2("welcome.roofline_time", "roofline_time(2e+09",
           roofline_time=lambda f, b, p, w: f / p + b / w)  # no overlap
    fails2("welcome.matmul_intensity", "matmul_intensity(1024",  # one FLOP per product
           matmul_intensity=lambda n, k, m, b=4: n * k * m / ((n * k + k * m + n * m) * b))
    fails2("welcome.matmul_intensity", "expected 170.66667, got 256",  # C is never written
           matmul_intensity=lambda n, k, m, b=4: 2 * n * k * m / ((n * k + k * m) * b))
    fails2("welcome.matmul_intensity", "matmul_intensity(1024",  # each product loads A and B
           matmul_intensity=lambda n, k, m, b=4: 2 * n * k * m / (2 * n * k * m * b))


def test_saxpy_into_y_or_short_of_the_last_element_scores_zero():
    @njit
    def saxpy(a, x, y):  # the BLAS habit: y is the output
        for i in range(x.shape[0]):
            y[i] = a * x[i] + y[i]
        return y

    fails("welcome.saxpy", "x and y are left unchanged", "new array", saxpy=saxpy)

    @njit
    def saxpy_short(a, x, y):  # one iteration short
        out = np.zeros_like(x)
        for i in range(x.shape[0] - 1):
            out[i] = a * x[i] + y[i]
        return out

    fails("welcome.saxpy", "with 1 elements", "got [0.]", saxpy=saxpy_short)


def test_integer_division_fixed_element_size_or_the_faster_limit_scores_zero():
    fails2("welcome.matmul_intensity", "expected 170.66667, got 170.",
           matmul_intensity=lambda n, k, m, b=4: 2 * n * k * m // ((n * k + k * m + n * m) * b))
    fails2("welcome.matmul_intensity", "matmul_intensity(128, 256, 512, 2)",  # float32 always
           matmul_intensity=lambda n, k, m, b=4: 2 * n * k * m / ((n * k + k * m + n * m) * 4))
    fails2("welcome.roofline_time", "expected 0.02, got 5.e-05",  # the faster of the two
           roofline_time=lambda f, b, p, w: min(f / p, b / w))

"""The checks of unit 00 (welcome): the reference gets full marks, and the wrong answers
a student writes get 0: saxpy as numpy's whole-array expression under a Numba
decorator, under a decorator that only looks like Numba's, or around a loop that does
nothing, and a loop that returns float64."""

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

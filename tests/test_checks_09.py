"""The checks of unit 09 (quantization).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: a range not widened to contain 0,
a zero point left as a float, the wrong symmetric scale, no floor for the scale; rounding
ties up instead of to even, converting before clamping, a dequantize computed in uint8
that wraps; ``round`` (half to even) for m0, a forgotten carry to 2^31, a shift off by
one; ties of the doubling high multiply sent away from zero, numpy's flooring shift for
C's truncating division, no saturation of INT32_MIN * INT32_MIN, a float requantization,
a missing clamp or saturating left shift; an int8 matmul that overflows or misses one of
the offset terms; observers that forget earlier batches, start the average from 0 or
weigh it the wrong way. The judges are also handed forged observations and must fail
them cleanly; an untouched stub hears only "not implemented yet", with no hint; a
notebook that imports mlc.quant scores nothing. The audit of issue 20 adds observers that
keep four bytes a batch, row sums from a float mean, and more slips of each exercise.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner

from mlc.grading.checks import quantization, quantization_int
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester

ROOT = Path(__file__).resolve().parents[1]
IDS = ["quantization.qparams", "quantization.quantize", "quantization.observer",
       "quantization.quantize_multiplier", "quantization.requantize", "quantization.qmatmul"]
POINTS = 13


# ---- the reference solutions (as in solutions/09_quantization.ipynb) ---------------------------

EPS = float(np.finfo(np.float32).eps)
QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def qparams(min_val, max_val, dtype="int8", symmetric=False):
    q_min, q_max = QRANGE[dtype]
    if min_val > max_val:
        raise ValueError(f"min_val {min_val} is greater than max_val {max_val}")
    lo, hi = min(float(min_val), 0.0), max(float(max_val), 0.0)
    if symmetric:
        zero_point = 0 if dtype == "int8" else 128
        scale = max(max(-lo, hi) / (q_max - zero_point), EPS)
    else:
        scale = max((hi - lo) / (q_max - q_min), EPS)
        zero_point = int(np.clip(q_min - np.rint(lo / scale), q_min, q_max))
    return float(np.float32(scale)), zero_point


def quantize(x, scale, zero_point, dtype="int8"):
    q_min, q_max = QRANGE[dtype]
    q = np.rint(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, q_min, q_max).astype(dtype)


def dequantize(q, scale, zero_point):
    return (scale * (np.asarray(q, np.float64) - zero_point)).astype(np.float32)


class MinMaxObserver:
    def __init__(self, dtype="int8", symmetric=False):
        self.dtype, self.symmetric = dtype, symmetric
        self.min_val = self.max_val = None

    def update(self, x):
        lo, hi = float(np.min(x)), float(np.max(x))
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val, self.max_val = min(self.min_val, lo), max(self.max_val, hi)

    def range(self):
        return self.min_val, self.max_val

    def qparams(self):
        if self.min_val is None:
            raise RuntimeError("no data observed yet")
        return qparams(self.min_val, self.max_val, self.dtype, self.symmetric)


class MovingAverageObserver(MinMaxObserver):
    def __init__(self, dtype="int8", symmetric=False, averaging_constant=0.01):
        super().__init__(dtype, symmetric)
        self.averaging_constant = averaging_constant

    def update(self, x):
        lo, hi = float(np.min(x)), float(np.max(x))
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = self.averaging_constant
            self.min_val += c * (lo - self.min_val)
            self.max_val += c * (hi - self.max_val)


def quantize_multiplier(real_multiplier):
    if real_multiplier == 0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)        # M = q * 2**shift, q in [0.5, 1)
    m0 = int(math.floor(q * (1 << 31) + 0.5))     # half-way cases away from zero
    if m0 == 1 << 31:                             # q rounded up to 1.0
        m0, shift = m0 // 2, shift + 1
    return m0, shift


def saturating_rounding_doubling_high_mul(a, b):
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))   # C's division truncates toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_pot(x, exponent):
    x = np.asarray(x, np.int64)
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> exponent) + (remainder > threshold)).astype(np.int32)


def requantize(acc, m0, shift, zero_point, dtype="int8"):
    q_min, q_max = QRANGE[dtype]
    x = np.asarray(acc, np.int64)
    if shift > 0:
        x = np.clip(x << shift, INT32_MIN, INT32_MAX)
    x = saturating_rounding_doubling_high_mul(x, m0)
    x = rounding_divide_by_pot(x, max(-shift, 0)).astype(np.int64) + zero_point
    return np.clip(x, q_min, q_max).astype(dtype)


def qmatmul(a, w, za, zw):
    a32, w32 = a.astype(np.int32), w.astype(np.int32)
    zw = np.asarray(zw, np.int32)
    k = a.shape[1]
    core = a32 @ w32                                    # the int8 x int8 -> int32 product
    row = a32.sum(axis=1, keepdims=True)                # (M, 1)
    col = w32.sum(axis=0, keepdims=True)                # (1, N)
    return (core - zw * row - za * col + k * za * zw).astype(np.int32)


REFERENCE = {name: globals()[name] for name in (
    "qparams", "quantize", "dequantize", "MinMaxObserver", "MovingAverageObserver",
    "quantize_multiplier", "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "requantize", "qmatmul")}
_run, _fails = check_runner(REFERENCE)


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = _run(ex_id)
    assert rec["score"] == rec["max_score"] > 0, rec["message"]


def test_points_add_up():
    assert sum(get(i).points for i in IDS) == POINTS
    assert all(get(i).notebook == "09_quantization" for i in IDS)


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_hears_only_not_implemented(ex_id):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    class Stub:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError("your code here")

    names = {n: (Stub if n[0].isupper() else stub) for n in get(ex_id).needs}
    rec = _run(ex_id, **names)
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == ""


def test_a_notebook_that_imports_the_library_scores_nothing():
    from mlc import quant

    for cell in ("from mlc.quant import qparams", "import mlc.quant as q",
                 "from mlc import quant", "import mlc\nx = mlc.quant.qparams"):
        rec = _run("quantization.qparams", qparams=lambda *a, **k: quant.qparams(*a, **k),
                   In=["import numpy as np", cell])
        assert rec["score"] == 0 and "imports mlc.quant" in rec["message"], (cell, rec)
    # a mere mention in a string or a comment is fine
    assert _run("quantization.qparams", In=["# mlc.quant is the library", "s = 'mlc.quant'"]
                )["score"] == 2


# ---- qparams ----------------------------------------------------------------------------------

def qparams_variant(widen=True, round_z=True, int_z=True, sym_div=None, eps=True, check=True):
    def qp(min_val, max_val, dtype="int8", symmetric=False):
        q_min, q_max = QRANGE[dtype]
        if check and min_val > max_val:
            raise ValueError("min > max")
        lo, hi = (min(min_val, 0.0), max(max_val, 0.0)) if widen else (min_val, max_val)
        if symmetric:
            z = 0 if dtype == "int8" else 128
            scale = max(-lo, hi) / (sym_div or (q_max - z))
        else:
            scale = (hi - lo) / (q_max - q_min)
            if eps:
                scale = max(scale, EPS)
            z = q_min - lo / scale if scale else q_min
            if round_z:
                z = np.clip(np.rint(z), q_min, q_max)
            z = int(z) if int_z else float(z)
        return float(np.float32(max(scale, EPS) if eps else scale)), z
    return qp


@pytest.mark.parametrize("kwargs, fragment", [
    ({"widen": False}, "the grid covers the range widened to contain 0"),
    ({"round_z": False, "int_z": False}, "expected an integer, got float"),
    ({"int_z": False}, "is the float"),
    ({"sym_div": 128}, "symmetric=True): the grid covers"),
    ({"sym_div": 127.5}, "symmetric=True): the scale"),
    ({"eps": False}, "the scale is positive"),
    ({"check": False}, "expected ValueError to be raised"),
])
def test_qparams_mistakes(kwargs, fragment):
    _fails("quantization.qparams", fragment, qparams=qparams_variant(**kwargs))


def test_qparams_uint8_symmetric_zero_point():
    def qp(min_val, max_val, dtype="int8", symmetric=False):
        if symmetric and dtype == "uint8":   # zero point 0 for uint8 too: half the grid unused
            amax = max(-min(min_val, 0.0), max_val)
            return amax / 255, 0
        return qparams(min_val, max_val, dtype, symmetric)
    _fails("quantization.qparams", "'uint8', symmetric=True", "covers the range", qparams=qp)


# ---- quantize / dequantize -----------------------------------------------------------------------

def test_quantize_mistakes():
    def round_up(x, scale, zero_point, dtype="int8"):
        q_min, q_max = QRANGE[dtype]
        return np.clip(np.floor(np.asarray(x, np.float64) / scale + 0.5) + zero_point,
                       q_min, q_max).astype(dtype)

    def wraps(x, scale, zero_point, dtype="int8"):
        return (np.rint(np.asarray(x, np.float64) / scale) + zero_point).astype(
            np.int64).astype(dtype)

    def int64(x, scale, zero_point, dtype="int8"):
        return quantize(x, scale, zero_point, dtype).astype(np.int64)

    _fails("quantization.quantize", "a tie", quantize=round_up)
    _fails("quantization.quantize", "outside the int8 grid", quantize=wraps)
    _fails("quantization.quantize", "the result is int8", quantize=int64)


def test_quantize_in_float32_scores_zero():
    """The statement asks for float64; float32 division once scored full marks, as no case
    had a value where the two round to different integers."""
    def in_float32(x, scale, zero_point, dtype="int8"):
        q_min, q_max = QRANGE[dtype]
        q = np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
        return np.clip(q, q_min, q_max).astype(dtype)

    _fails("quantization.quantize", "next to a half-way point", "float32",
           quantize=in_float32)


def test_dequantize_mistakes():
    def in_uint8(q, scale, zero_point):
        return (scale * (q - zero_point)).astype(np.float32)  # q - z wraps in q's dtype

    def float64(q, scale, zero_point):
        return scale * (np.asarray(q, np.float64) - zero_point)

    _fails("quantization.quantize", "dequantize: every int8 code, scale 0.03, zero point 100",
           "at q = -128", dequantize=in_uint8)
    _fails("quantization.quantize", "the result is float32", dequantize=float64)


# ---- the observer ---------------------------------------------------------------------------

class LastBatch(MinMaxObserver):
    def update(self, x):
        self.min_val, self.max_val = float(np.min(x)), float(np.max(x))


class FromZero(MovingAverageObserver):
    def update(self, x):
        if self.min_val is None:
            self.min_val = self.max_val = 0.0
        c = self.averaging_constant
        self.min_val += c * (float(np.min(x)) - self.min_val)
        self.max_val += c * (float(np.max(x)) - self.max_val)


class Backwards(MovingAverageObserver):
    def update(self, x):
        if self.min_val is None:
            self.min_val, self.max_val = float(np.min(x)), float(np.max(x))
            return
        c = self.averaging_constant
        self.min_val = c * self.min_val + (1 - c) * float(np.min(x))
        self.max_val = c * self.max_val + (1 - c) * float(np.max(x))


class NoGuard(MinMaxObserver):
    def qparams(self):
        return qparams(self.min_val, self.max_val, self.dtype, self.symmetric)


def test_observer_mistakes():
    _fails("quantization.observer", "one with an outlier 9.5", "of 3", MinMaxObserver=LastBatch)
    _fails("quantization.observer", "moving average (c = 0.1)", "after batch 1 of 5",
           MovingAverageObserver=FromZero)
    _fails("quantization.observer", "after batch 2 of 5", MovingAverageObserver=Backwards)
    _fails("quantization.observer", "expected RuntimeError, got TypeError",
           MinMaxObserver=NoGuard)


# ---- quantize_multiplier ----------------------------------------------------------------------

def multiplier_variant(rnd=None, carry=True, shift_off=0):
    def qm(m):
        if m == 0:
            return 0, 0
        q, shift = math.frexp(m)
        m0 = rnd(q * (1 << 31)) if rnd else int(math.floor(q * (1 << 31) + 0.5))
        if carry and m0 == 1 << 31:
            m0, shift = m0 // 2, shift + 1
        return int(m0), shift + shift_off
    return qm


@pytest.mark.parametrize("kwargs, fragment", [
    ({"rnd": round}, "quantize_multiplier(0.5000000002328306): (m0, shift)"),
    ({"carry": False}, "m0 fits in an int32"),
    ({"shift_off": -1}, "is M to 31 bits"),
    ({"rnd": math.floor}, "(m0, shift)"),
])
def test_quantize_multiplier_mistakes(kwargs, fragment):
    _fails("quantization.quantize_multiplier", fragment,
           quantize_multiplier=multiplier_variant(**kwargs))


def test_quantize_multiplier_normalised():
    def unnormalised(m):              # m0 = round(M * 2^31), shift 0: few significant bits
        return (int(round(m * 2**31)), 0) if m else (0, 0)
    _fails("quantization.quantize_multiplier", "m0 lies in [2^30, 2^31)",
           quantize_multiplier=unnormalised)


# ---- requantize -------------------------------------------------------------------------------

def srdhm_away(a, b):                     # ties away from zero: "often said", not gemmlowp
    ab = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    high = np.sign(ab) * ((np.abs(ab) + (1 << 30)) >> 31)
    sat = (np.asarray(a) == INT32_MIN) & (np.asarray(b) == INT32_MIN)
    return np.where(sat, INT32_MAX, high).astype(np.int32)


def srdhm_floor(a, b):                    # numpy's >> floors where C's / truncates
    ab = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    sat = (np.asarray(a) == INT32_MIN) & (np.asarray(b) == INT32_MIN)
    return np.where(sat, INT32_MAX, t >> 31).astype(np.int32)


def srdhm_unsaturated(a, b):
    ab = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    return np.where(t >= 0, t >> 31, -((-t) >> 31)).astype(np.int32)


def rdbpot_even(x, exponent):
    return np.rint(np.asarray(x, np.float64) / 2.0**exponent).astype(np.int32)


def rdbpot_floor(x, exponent):
    return (np.asarray(x, np.int64) >> exponent).astype(np.int32)


def requantize_float(acc, m0, shift, zero_point, dtype="int8"):
    q_min, q_max = QRANGE[dtype]
    y = np.rint(np.asarray(acc, np.float64) * m0 * 2.0 ** (shift - 31)) + zero_point
    return np.clip(y, q_min, q_max).astype(dtype)


def requantize_unclamped(acc, m0, shift, zero_point, dtype="int8"):
    x = np.asarray(acc, np.int64)
    if shift > 0:
        x = np.clip(x << shift, INT32_MIN, INT32_MAX)
    x = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m0), max(-shift, 0))
    return (x.astype(np.int64) + zero_point).astype(dtype)


def requantize_no_left_shift(acc, m0, shift, zero_point, dtype="int8"):
    q_min, q_max = QRANGE[dtype]
    x = saturating_rounding_doubling_high_mul(acc, m0).astype(np.int64)
    x = (x << max(shift, 0)) if shift > 0 else rounding_divide_by_pot(x, -shift)
    return np.clip(np.asarray(x, np.int64) + zero_point, q_min, q_max).astype(dtype)


def requantize_int32(acc, m0, shift, zero_point, dtype="int8"):
    return requantize(acc, m0, shift, zero_point, dtype).astype(np.int32)


@pytest.mark.parametrize("names, fragment", [
    ({"saturating_rounding_doubling_high_mul": srdhm_away}, "exactly half-way"),
    ({"saturating_rounding_doubling_high_mul": srdhm_floor}, "doubling_high_mul"),
    ({"saturating_rounding_doubling_high_mul": srdhm_unsaturated}, "a = -2147483648, "
     "b = -2147483648"),
    ({"rounding_divide_by_pot": rdbpot_even}, "exactly half-way"),
    ({"rounding_divide_by_pot": rdbpot_floor}, "rounding_divide_by_pot(x, 1)"),
    ({"requantize": requantize_float}, "requantize:"),
    ({"requantize": requantize_unclamped}, "requantize: edge accumulators"),
    ({"requantize": requantize_no_left_shift}, "M = 3.7"),
    ({"requantize": requantize_int32}, "the codes are int8"),
])
def test_requantize_mistakes(names, fragment):
    _fails("quantization.requantize", fragment, **names)


def test_requantize_float_rounding_fails_on_ties():
    # double rounding (high mul, then the shift) is what gemmlowp does; one float rounding
    # differs on a tie of the random cases or the 1/16 ones
    msg = _fails("quantization.requantize", "requantize:", requantize=requantize_float)
    assert "expected" in msg and "got" in msg


# ---- qmatmul ----------------------------------------------------------------------------------

def qmatmul_variant(widen=True, const=True, row=True, col=True):
    def qm(a, w, za, zw):
        if not widen:
            return (a @ w).astype(np.int32)     # int8 @ int8 overflows in int8
        a32, w32 = a.astype(np.int32), w.astype(np.int32)
        zw = np.asarray(zw, np.int32)
        out = a32 @ w32
        if row:
            out = out - zw * a32.sum(axis=1, keepdims=True)
        if col:
            out = out - za * w32.sum(axis=0, keepdims=True)
        if const:
            out = out + a.shape[1] * za * zw
        return out.astype(np.int32)
    return qm


@pytest.mark.parametrize("kwargs, fragment", [
    ({"widen": False}, "int8 6 x 7 @ 7 x 5"),
    ({"const": False}, "a constant term"),
    ({"row": False}, "the row sums of a"),
    ({"col": False}, "the column sums of w"),
])
def test_qmatmul_mistakes(kwargs, fragment):
    _fails("quantization.qmatmul", fragment, qmatmul=qmatmul_variant(**kwargs))


def test_qmatmul_int64_result_and_scalar_only_zw():
    def int64(a, w, za, zw):
        return qmatmul(a, w, za, zw).astype(np.int64)

    def mean_zw(a, w, za, zw):
        return qmatmul(a, w, za, int(np.mean(zw)))
    _fails("quantization.qmatmul", "the result is int32", qmatmul=int64)
    _fails("quantization.qmatmul", "one zw per column", qmatmul=mean_zw)


# ---- forged observations ----------------------------------------------------------------------

FORGED = [None, "x", 3, [1], [1, 2, 3], {"ok": 1}, [float("nan"), 0], [0.1, True],
          [0.1, "3"], np.zeros(3), [[1, 2], [3, 4]], {"ranges": "x"},
          {"ranges": [[1, 2]] * 99, "qparams": [1, 0]}, {"ranges": [["a", "b"]] * 3},
          np.zeros((2, 2), np.complex128), np.zeros(5, bool), np.zeros((0,), np.int8),
          np.full(289, np.nan), {"raised": None, "mro": []}, {"raised": "x", "mro": "x"}]


@pytest.mark.parametrize("ex_id", IDS)
def test_judges_fail_forged_observations_cleanly(ex_id):
    ex = get(ex_id)
    for case in ex.check.cases():
        for obs in FORGED:
            with pytest.raises(CheckFailed):
                ex.check.judge(case, obs, _Tester())


def test_cases_are_plain_and_hide_nothing_needed():
    from mlc.grading.wire import public, roundtrip

    for ex_id in IDS:
        for case in get(ex_id).check.cases():
            assert roundtrip(public(case)).keys() == case.keys()


def test_hints_are_nudges():
    for ex_id in IDS:
        hint = get(ex_id).hint
        assert hint and "def " not in hint and "np.rint(" not in hint and ">> 31" not in hint


def test_modules_stay_small():
    for mod in (quantization, quantization_int):
        assert len(Path(mod.__file__).read_text().splitlines()) <= 400


# ---- the notebooks ------------------------------------------------------------------------------

def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "09_quantization.ipynb")
    assert (report.score, report.max_score) == (POINTS, POINTS), report.results


def test_released_notebook_gets_zero(graded):
    report = graded(ROOT / "exercises" / "09_quantization.ipynb")
    assert report.max_score == POINTS and report.score == 0, report.results
    assert all("not implemented" in r.message or "not defined" in r.message
               for r in report.results), [r.message for r in report.results]


# ---- wrong answers that matched the visible cases (issue 20) ----------------------------------

def test_qmatmul_in_float32_blas_scores_zero():
    def qmatmul(a, w, za, zw):
        af = a.astype(np.float32) - np.float32(za)
        wf = w.astype(np.float32) - np.asarray(zw, np.float32)
        return (af @ wf).astype(np.int32)

    _fails("quantization.qmatmul", "values differ", qmatmul=qmatmul)


def test_qmatmul_in_float64_scores_zero():
    def qmatmul(a, w, za, zw):
        return np.rint((a - float(za)) @ (w - np.asarray(zw, "f8"))).astype(np.int32)

    _fails("quantization.qmatmul", "computes in integers only", qmatmul=qmatmul)


def test_qmatmul_int64_without_the_expansion_scores_zero():
    def qmatmul(a, w, za, zw):
        a64 = a.astype(np.int64) - za
        w64 = w.astype(np.int64) - np.asarray(zw, np.int64)
        return (a64 @ w64).astype(np.int32)

    _fails("quantization.qmatmul", "the expansion", "shifted values", qmatmul=qmatmul)


def test_qmatmul_float32_accumulation_loses_large_sums():
    """Even without the source rule, float32's 24-bit mantissa loses the large-K case."""
    rec = _run("quantization.qmatmul")
    assert rec["score"] == rec["max_score"]
    check = get("quantization.qmatmul").check
    case = next(c for c in check.cases() if "float32" in c["what"])
    got = ((case["a"].astype(np.float32) - case["za"])
           @ (case["w"].astype(np.float32) - case["zw"])).astype(np.int32)
    with pytest.raises(CheckFailed, match="values differ"):
        check.judge(case, got, _Tester())


def test_requantize_in_long_double_scores_zero():
    # exact on every visible and hidden value: long double's 64-bit mantissa holds the
    # 62-bit product, and both roundings are copied; only the source says it is not integers
    def requantize(acc, m0, shift, zero_point, dtype="int8"):
        q_min, q_max = QRANGE[dtype]
        x = np.asarray(acc, np.longdouble)
        if shift > 0:
            x = np.clip(x * 2 ** shift, INT32_MIN, INT32_MAX)
        high = np.floor(x * m0 / np.longdouble(2 ** 31) + 0.5)       # ties up
        q = high / np.longdouble(2 ** max(-shift, 0))
        q = np.sign(q) * np.floor(np.abs(q) + 0.5)                     # ties away from zero
        return np.clip(q + zero_point, q_min, q_max).astype(dtype)

    _fails("quantization.requantize", "computes in integers only",
           requantize=requantize)


def test_requantize_helper_with_true_division_scores_zero():
    def rounding_divide_by_pot(x, exponent):
        x = np.asarray(x, np.int64)
        return (np.sign(x) * np.floor(np.abs(x) / 2 ** exponent + 0.5)).astype(np.int32)

    _fails("quantization.requantize", "computes in integers only",
           rounding_divide_by_pot=rounding_divide_by_pot)


def test_qparams_float64_scale_scores_zero():
    def qparams(min_val, max_val, dtype="int8", symmetric=False):
        s, z = REFERENCE["qparams"](min_val, max_val, dtype, symmetric)
        lo, hi = min(min_val, 0.0), max(max_val, 0.0)
        q_min, q_max = QRANGE[dtype]
        if not symmetric:
            s = max((hi - lo) / (q_max - q_min), EPS)
        return s, z

    _fails("quantization.qparams", "rounded to float32", qparams=qparams)


class StoresBatches(MinMaxObserver):
    def __init__(self, dtype="int8", symmetric=False):
        super().__init__(dtype, symmetric)
        self.seen = []

    def update(self, x):
        self.seen.append(np.asarray(x).copy())
        everything = np.concatenate([b.reshape(-1) for b in self.seen])
        self.min_val, self.max_val = float(everything.min()), float(everything.max())


class KeepsEveryBatchsRange(MovingAverageObserver):
    def __init__(self, dtype="int8", symmetric=False, averaging_constant=0.01):
        super().__init__(dtype, symmetric, averaging_constant)
        self.lows, self.highs = [], []

    def update(self, x):
        super().update(x)
        self.lows.append(float(np.min(x)))
        self.highs.append(float(np.max(x)))


def test_observer_that_stores_every_batch_scores_zero():
    _fails("quantization.observer", "keeps something per batch", MinMaxObserver=StoresBatches)


def test_observer_that_keeps_every_batchs_range_scores_zero():
    _fails("quantization.observer", "keeps something per batch",
           MovingAverageObserver=KeepsEveryBatchsRange)


# ---- the audit's wrong answers (issue 20, second pass) ------------------------------------------

class KeepsEveryRangeInAnArray(MinMaxObserver):
    """Four bytes a batch each for min and max: 380 batches grew 3 KB, under the slack."""

    def __init__(self, dtype="int8", symmetric=False):
        super().__init__(dtype, symmetric)
        self.ranges = np.zeros((0, 2), np.float32)

    def update(self, x):
        row = np.array([[np.min(x), np.max(x)]], np.float32)
        self.ranges = np.concatenate([self.ranges, row])
        self.min_val, self.max_val = (float(self.ranges[:, 0].min()),
                                      float(self.ranges[:, 1].max()))


class AppendsEachBatchsMin(MovingAverageObserver):
    def update(self, x):
        super().update(x)
        self.mins = np.append(getattr(self, "mins", np.zeros(0, np.float32)),
                              np.float32(np.min(x)))


def test_observer_that_keeps_four_bytes_a_batch_scores_zero():
    _fails("quantization.observer", "MinMaxObserver keeps no more memory", "bytes per batch",
           MinMaxObserver=KeepsEveryRangeInAnArray)
    _fails("quantization.observer", "MovingAverageObserver keeps no more memory",
           MovingAverageObserver=AppendsEachBatchsMin)


def test_observer_stream_that_grows_stops_early():
    """A stream that copies every batch stops at the first count past the slack (feeding
    it all 2020 batches would take seconds: each update concatenates everything)."""
    held = quantization._retained("x", StoresBatches())["held"]
    assert len(held) == 2 and held[1] - held[0] > quantization.MEMORY_SLACK


def test_qmatmul_with_row_sums_from_a_float_mean_scores_zero():
    # a.mean(1) * K is the row sum to within float rounding: it matched every case
    def qmatmul(a, w, za, zw):
        a32, w32 = a.astype(np.int32), w.astype(np.int32)
        zw = np.asarray(zw, np.int32)
        k = a.shape[1]
        row = a.mean(axis=1, keepdims=True) * k
        col = w.mean(axis=0, keepdims=True) * k
        return (a32 @ w32 - zw * row - za * col + k * za * zw).astype(np.int32)

    _fails("quantization.qmatmul", "computes in integers only", "it uses mean",
           qmatmul=qmatmul)


def _qparams_zero_point(rule):
    def qp(min_val, max_val, dtype="int8", symmetric=False):
        if symmetric:
            return qparams(min_val, max_val, dtype, symmetric)
        scale, _ = qparams(min_val, max_val, dtype, symmetric)
        lo, hi = min(min_val, 0.0), max(max_val, 0.0)
        return scale, int(np.clip(rule(lo, hi, scale, *QRANGE[dtype]), *QRANGE[dtype]))
    return qp


def _quantize_rounding(rnd):
    def quantize(x, scale, zero_point, dtype="int8"):
        q = rnd(np.asarray(x, np.float64) / scale) + zero_point
        return np.clip(q, *QRANGE[dtype]).astype(dtype)
    return quantize


class EmaAsCumulativeMean(MovingAverageObserver):
    def update(self, x):
        self.n = getattr(self, "n", 0) + 1
        lo, hi = float(np.min(x)), float(np.max(x))
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:   # 1 / n in place of the constant c
            self.min_val += (lo - self.min_val) / self.n
            self.max_val += (hi - self.max_val) / self.n


class StartsAtZero(MinMaxObserver):
    def __init__(self, dtype="int8", symmetric=False):
        super().__init__(dtype, symmetric)
        self.min_val = self.max_val = 0.0   # the range then always contains 0

    def qparams(self):
        return qparams(self.min_val, self.max_val, self.dtype, self.symmetric)


def _requantize_with(rdbpot=None, left=None):
    def requantize(acc, m0, shift, zero_point, dtype="int8"):
        x = np.asarray(acc, np.int64)
        if shift > 0:
            x = left(x, shift) if left else np.clip(x << shift, INT32_MIN, INT32_MAX)
        x = saturating_rounding_doubling_high_mul(x, m0)
        x = (rdbpot or rounding_divide_by_pot)(x, max(-shift, 0)).astype(np.int64)
        return np.clip(x + zero_point, *QRANGE[dtype]).astype(dtype)
    return requantize


def _qmatmul_in(dtype, rows=lambda a: a.sum(axis=1, keepdims=True)):
    def qmatmul(a, w, za, zw):
        a_, w_ = a.astype(dtype), w.astype(dtype)
        zw = np.asarray(zw, dtype)
        out = a_ @ w_ - zw * rows(a_) - za * w_.sum(axis=0, keepdims=True) + a.shape[1] * za * zw
        return out.astype(np.int32)
    return qmatmul


@pytest.mark.parametrize("ex_id, fragments, names", [
    ("quantization.qparams", ["the grid covers"],                       # int() truncates
     {"qparams": _qparams_zero_point(lambda lo, hi, s, q0, q1: int(q0 - lo / s))}),
    ("quantization.qparams", ["the zero point: expected"],          # counted from the top
     {"qparams": _qparams_zero_point(lambda lo, hi, s, q0, q1: q1 - np.rint(hi / s))}),
    ("quantization.quantize", ["x / scale = 4.857"], {"quantize": _quantize_rounding(np.trunc)}),
    ("quantization.quantize", ["a tie"], {"quantize": _quantize_rounding(
        lambda r: np.sign(r) * np.floor(np.abs(r) + 0.5))}),
    ("quantization.observer", ["moving average (c = 0.1)", "after batch 2 of 5"],
     {"MovingAverageObserver": EmaAsCumulativeMean}),
    ("quantization.observer", ["all-negative", "after batch 1 of 3"],
     {"MinMaxObserver": StartsAtZero}),
    ("quantization.quantize_multiplier", ["(m0, shift)"], {"quantize_multiplier":
                                                            multiplier_variant(rnd=math.ceil)}),
    ("quantization.quantize_multiplier", ["expected (1073741824, 1), got (2147483647, 0)"],
     {"quantize_multiplier": lambda m: (min(multiplier_variant(carry=False)(m)[0],
                                            INT32_MAX), multiplier_variant(carry=False)(m)[1])}),
    ("quantization.requantize", ["rounding_divide_by_pot(x, 1)", "exactly half-way"],
     {"rounding_divide_by_pot": lambda x, e: ((np.asarray(x, np.int64) + ((1 << e) >> 1))
                                              >> e).astype(np.int32)}),
    ("quantization.requantize", ["M = 3.7 (a left shift first, saturating)"],
     {"requantize": _requantize_with(left=lambda x, s: (x << s).astype(np.int32))}),
    ("quantization.qmatmul", ["int8 6 x 7 @ 7 x 5", "values differ"],
     {"qmatmul": _qmatmul_in(np.int16)}),
    ("quantization.qmatmul", ["za = -7, zw = 3", "depends only on the row"],
     {"qmatmul": _qmatmul_in(np.int32, rows=lambda a: a.sum())}),
])
def test_more_wrong_answers_score_zero(ex_id, fragments, names):
    _fails(ex_id, *fragments, **names)

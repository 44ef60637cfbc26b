"""Unit 09, quantization (2 of 2): integer-only arithmetic.

* ``quantization.quantize_multiplier``: ``quantize_multiplier(M)`` -> ``(m0, shift)`` on
  hidden multipliers (the carry to 2^31, an exact tie of ``m0``, M >= 1, tiny M), judged
  against ``mlc.quant.quantize_multiplier``.
* ``quantization.requantize``: ``saturating_rounding_doubling_high_mul``,
  ``rounding_divide_by_pot`` and ``requantize`` on hidden int32 vectors: edges (INT32_MIN,
  INT32_MAX), exact ties of both rounding steps, negatives, saturation, left shifts,
  random vectors; bit-exact with ``mlc.quant`` (itself tested against gemmlowp's
  definitions in Python ints, ``mlc/quant/reference.py``).
* ``quantization.qmatmul``: ``qmatmul(a, w, za, zw)``, the int32 ``(a - za) @ (w - zw)``
  on hidden int8/uint8 codes, per-tensor and per-column weight zero points, large K.
"""

from __future__ import annotations

import ast

import numpy as np

from ..registry import Check, call, exercise, need
from .quantization import NB, QRANGE, array, as_int, no_library, pair

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


# ---- quantize_multiplier -----------------------------------------------------------------------

MULTIPLIERS = [0.5, 0.75, 0.3, 1e-3, 0.0123, 2.5e-5, 1e-9, 0.999, 1 - 2**-33, 1.0, 1.5, 3.99,
               0.5 + 2**-32, 0.75 + 2**-32, 1.5 + 2**-31, 0.0]


@exercise("quantization.quantize_multiplier", points=2, notebook=NB,
          needs=("quantize_multiplier",),
          hint="split M into a fraction in [1/2, 1) and a power of two (math.frexp); the "
               "fraction times 2^31, rounded (half-way cases away from zero), is m0; mind "
               "the one fraction that rounds up to 2^31, which does not fit in an int32",
          rebuilds=("mlc.quant.fixedpoint:quantize_multiplier",
                    "mlc.quant.reference:quantize_multiplier"))
class _QuantizeMultiplier(Check):
    def cases(self):
        return [{"what": f"quantize_multiplier({m!r})", "m": m} for m in MULTIPLIERS]

    def observe(self, ns, case):
        out = call(case["what"], need(ns, "quantize_multiplier"), case["m"])
        return list(out) if isinstance(out, tuple) else out

    def judge(self, case, obs, t):
        from ... import quant

        what, m = case["what"], case["m"]
        m0, shift = pair(obs, what, ("m0", "shift"))
        m0, shift = as_int(m0, f"{what}: m0"), as_int(shift, f"{what}: shift")
        r0, rs = quant.quantize_multiplier(m)
        if m == 0.0:
            t.equal((m0, shift), (0, 0), f"{what}: a zero multiplier is (0, 0)")
            return
        t.true(m0 < 1 << 31, f"{what}: m0 fits in an int32",
               f"m0 = {m0} = 2^31 does not: renormalise it")
        t.true(1 << 30 <= m0, f"{what}: m0 lies in [2^30, 2^31)",
               f"m0 = {m0} keeps fewer than 31 significant bits")
        approx = m0 * 2.0 ** (shift - 31)
        t.true(abs(approx - m) <= 2.0 ** (shift - 31),
               f"{what}: m0 * 2^(shift - 31) is M to 31 bits",
               f"m0 = {m0}, shift = {shift} give {approx!r}")
        t.equal((m0, shift), (r0, rs), f"{what}: (m0, shift)")


# ---- requantize --------------------------------------------------------------------------------

EDGE_A = [0, 1, -1, 2, -2, 3, -3, 1 << 30, -(1 << 30), I32_MAX, I32_MIN, I32_MIN + 1,
          I32_MAX - 1, 12345, -12345, 1 << 15, -(1 << 15)]
EDGE_B = [0, 1, -1, I32_MAX, I32_MIN, 1 << 30, (1 << 30) + 1, 1 << 29, -(1 << 30), 3, -3]
POT_X = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, 8, -8, 12, -12, I32_MAX, I32_MIN,
         I32_MIN + 1]


def _i32(v) -> np.ndarray:
    return np.array(v, dtype=np.int64).astype(np.int32)


def _requantize_cases():
    rng = np.random.default_rng(12)
    edges = _i32([0, 1, -1, 63, 64, 65, -63, -64, -65, 127, -128, I32_MAX, I32_MIN, 1 << 20,
                  -(1 << 20), 3 << 10, -(3 << 10)])
    ties = _i32(np.arange(-40, 41))                     # every tie of both steps at M = 1/16
    big = _i32(rng.integers(I32_MIN, I32_MAX, 300, endpoint=True))
    small = _i32(rng.integers(-(1 << 20), 1 << 20, 300))
    out = []
    for m, z, d in [(0.5, 0, "int8"), (0.0078125 * 1.5, 0, "int8"), (0.003, -5, "int8"),
                    (2.0 ** -31, 0, "int8"), (0.999, 0, "uint8")]:
        out.append((f"edge accumulators, M = {m:g}, zero point {z}, {d}", edges, m, z, d))
    out.append(("accumulators -40..40 at M = 1/16 (m0 = 2^30, shift = -3): exact ties",
                ties, 1 / 16, 0, "int8"))
    out.append(("accumulators -40..40 at M = 1/16, zero point 7, uint8", ties, 1 / 16, 7,
                "uint8"))
    out.append(("edge accumulators, M = 3.7 (a left shift first, saturating)", edges, 3.7, 0,
                "int8"))
    out.append(("accumulators -40..40, M = 3.7 (a left shift first)", ties, 3.7, -9, "int8"))
    out.append(("edge accumulators, M = 2.0, zero point 100, uint8", edges, 2.0, 100, "uint8"))
    for i, m in enumerate(rng.uniform(1e-5, 1e-2, 3)):
        out.append((f"300 random accumulators in +-2^20, M = {m:.4g}, zero point {i - 1}",
                    small, float(m), i - 1, "int8"))
    out.append(("300 random int32 accumulators, M = 1e-6, zero point 3", big, 1e-6, 3, "int8"))
    out.append(("300 random int32 accumulators, M = 0.37, uint8, zero point 128", big, 0.37,
                128, "uint8"))
    return out


@exercise("quantization.requantize", points=3, notebook=NB,
          needs=("saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
                 "requantize"),
          hint="integers only, in int64 where a product needs it: the doubling high multiply "
               "rounds its half-way cases upwards (gemmlowp's nudge, then C's division, "
               "which truncates toward zero; numpy's >> floors), RoundingDivideByPOT rounds "
               "them away from zero, a positive shift is a saturating left shift done first, "
               "and the result saturates to the output type (lecture section 5)",
          rebuilds=("mlc.quant.fixedpoint:requantize",
                    "mlc.quant.fixedpoint:saturating_rounding_doubling_high_mul",
                    "mlc.quant.fixedpoint:rounding_divide_by_pot",
                    "mlc.quant.fixedpoint:multiply_by_quantized_multiplier",
                    "mlc.quant.reference:requantize"))
class _Requantize(Check):
    def cases(self):
        a = [x for x in EDGE_A for _ in EDGE_B]
        b = [y for _ in EDGE_A for y in EDGE_B]
        out = [{"what": "saturating_rounding_doubling_high_mul on every pair of edge values",
                "fn": "srdhm", "a": _i32(a), "b": _i32(b)},
               {"what": "saturating_rounding_doubling_high_mul on exact ties "
                        "(a * b / 2^31 = +-0.5, +-1.5, +-2.5)",
                "fn": "srdhm", "a": _i32([1, -1, 3, -3, 5, -5]), "b": _i32([1 << 30] * 6)}]
        for e in (0, 1, 2, 3, 5, 16, 30, 31):
            out.append({"what": f"rounding_divide_by_pot(x, {e}) on edge values and ties",
                        "fn": "rdbpot", "x": _i32(POT_X), "e": e})
        for what, acc, m, z, d in _requantize_cases():
            from ... import quant

            m0, shift = quant.quantize_multiplier(m)
            out.append({"what": f"requantize: {what}", "fn": "requantize", "acc": acc,
                        "m0": int(m0), "shift": int(shift), "zp": z, "dtype": d})
        return out

    def observe(self, ns, case):
        fn, what = case["fn"], case["what"]
        if fn == "srdhm":
            f = need(ns, "saturating_rounding_doubling_high_mul")
            return call(what, f, case["a"].copy(), case["b"].copy())
        if fn == "rdbpot":
            return call(what, need(ns, "rounding_divide_by_pot"), case["x"].copy(), case["e"])
        return call(what, need(ns, "requantize"), case["acc"].copy(), case["m0"],
                    case["shift"], case["zp"], dtype=case["dtype"])

    def judge(self, case, obs, t):
        from ... import quant

        fn, what = case["fn"], case["what"]
        got = array(obs, what)
        if fn == "srdhm":
            want = quant.saturating_rounding_doubling_high_mul(case["a"], case["b"])
            inputs = lambda i: f"a = {case['a'][i]}, b = {case['b'][i]}"  # noqa: E731
            exact = lambda i: int(case["a"][i]) * int(case["b"][i]) / 2**31  # noqa: E731
        elif fn == "rdbpot":
            want = quant.rounding_divide_by_pot(case["x"], case["e"])
            inputs = lambda i: f"x = {case['x'][i]}, exponent {case['e']}"  # noqa: E731
            exact = lambda i: int(case["x"][i]) / 2 ** case["e"]  # noqa: E731
        else:
            want = quant.requantize(case["acc"], case["m0"], case["shift"], case["zp"],
                                    case["dtype"])
            t.equal(str(got.dtype), case["dtype"], f"{what}: the codes are {case['dtype']}")
            inputs = lambda i: (f"acc = {case['acc'][i]}, m0 = {case['m0']}, "  # noqa: E731
                                f"shift = {case['shift']}, zero point {case['zp']}")
            exact = lambda i: (int(case["acc"][i]) * case["m0"]  # noqa: E731
                               * 2.0 ** (case["shift"] - 31) + case["zp"])
        if got.dtype.kind not in "iu":
            t.fail(f"{what}: expected an integer array, got dtype {got.dtype}")
        t.equal(got.shape, want.shape, f"{what}: the shape")
        bad = np.flatnonzero(got.astype(np.int64) != want.astype(np.int64))
        if bad.size:
            i = int(bad[0])
            x = exact(i)
            note = " (exactly half-way)" if abs(abs(x) % 1 - 0.5) < 1e-12 else ""
            if fn == "requantize":
                q_min, q_max = QRANGE[case["dtype"]]
                if not q_min <= round(x) <= q_max:
                    note = f" (outside the {case['dtype']} range)"
            t.fail(f"{what}: {len(bad)} of {got.size} values differ; the first at {inputs(i)} "
                   f"(the exact real value is {x:.6g}{note}): expected {int(want[i])}, got "
                   f"{int(got.reshape(-1)[i])}")
        t.passed.append(f"{what}: bit-exact")

    def inspect(self, src, t):
        no_library(src, t)
        integer_only(src, t, ("saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
                              "requantize"))


# ---- qmatmul -----------------------------------------------------------------------------------

def _qmatmul_cases():
    rng = np.random.default_rng(13)

    def i8(*shape):
        return rng.integers(-128, 128, shape).astype(np.int8)

    def u8(*shape):
        return rng.integers(0, 256, shape).astype(np.uint8)

    k = 1024
    return [
        ("int8 6 x 7 @ 7 x 5, zero points 0 and 0", i8(6, 7), i8(7, 5), 0, 0),
        ("uint8 4 x 9 @ int8 9 x 3, za = 128, zw = 0", u8(4, 9), i8(9, 3), 128, 0),
        ("int8 5 x 8 @ 8 x 4, za = -7, zw = 3", i8(5, 8), i8(8, 4), -7, 3),
        ("int8 3 x 6 @ 6 x 5, za = 5, one zw per column", i8(3, 6), i8(6, 5), 5,
         np.array([0, -3, 7, 1, -128], np.int32)),
        ("uint8 7 x 16 @ int8 16 x 6, za = 37, one zw per column", u8(7, 16), i8(16, 6), 37,
         rng.integers(-20, 20, 6).astype(np.int32)),
        ("1 x 1 @ 1 x 1, za = -128, zw = 127", np.array([[127]], np.int8),
         np.array([[-128]], np.int8), -128, 127),
        (f"uint8 2 x {k} of 0 @ int8 {k} x 3 of -128, za = 255, zw = 127 (large sums)",
         np.zeros((2, k), np.uint8), np.full((k, 3), -128, np.int8), 255, 127),
        (f"int8 4 x {k} @ {k} x 8, za = 3, zw = -2", i8(4, k), i8(k, 8), 3, -2),
        ("uint8 3 x 2048 of 200..255 @ int8 2048 x 4 of 100..127, za = 0, zw = -128 (sums "
         "near 10^8, past float32's exact integers)",
         rng.integers(200, 256, (3, 2048)).astype(np.uint8),
         rng.integers(100, 128, (2048, 4)).astype(np.int8), 0, -128),
    ]


@exercise("quantization.qmatmul", points=2, notebook=NB, needs=("qmatmul",),
          hint="int8 products and sums overflow int8 (and int16): widen before multiplying. "
               "With the expansion, every term of (a - za)(w - zw) summed over k is needed: "
               "the plain product, one in the row sums of a, one in the column sums of w and "
               "a constant; a per-column zw is one value per output column",
          rebuilds=("mlc.quant.qops:qmatmul",))
class _Qmatmul(Check):
    def cases(self):
        return [{"what": f"qmatmul: {w}", "a": a, "w": w_, "za": za, "zw": zw}
                for w, a, w_, za, zw in _qmatmul_cases()]

    def observe(self, ns, case):
        zw = case["zw"]
        zw = zw.copy() if isinstance(zw, np.ndarray) else zw
        return call(case["what"], need(ns, "qmatmul"), case["a"].copy(), case["w"].copy(),
                    case["za"], zw)

    def judge(self, case, obs, t):
        what = case["what"]
        got = array(obs, what)
        a = case["a"].astype(np.int64) - case["za"]
        zw = np.asarray(case["zw"], np.int64)
        want = a @ (case["w"].astype(np.int64) - zw)
        t.equal(str(got.dtype), "int32", f"{what}: the result is int32")
        t.equal(got.shape, want.shape, f"{what}: the shape")
        diff = got.astype(np.int64) - want
        if diff.any():
            i, j = (int(v) for v in np.argwhere(diff)[0])
            note = ""
            if (diff == diff.flat[0]).all():
                note = " Your result is off by the same amount everywhere: a constant term."
            elif (diff == diff[:, :1]).all():
                note = " The error depends only on the row: a term in the row sums of a."
            elif (diff == diff[:1, :]).all():
                note = " The error depends only on the column: a term in the column sums of w."
            t.fail(f"{what}: {int((diff != 0).sum())} of {diff.size} values differ; at [{i}, "
                   f"{j}] expected {int(want[i, j])}, got {int(got[i, j])}.{note}")
        t.passed.append(f"{what}: exact")

    def inspect(self, src, t):
        no_library(src, t)
        integer_only(src, t, ("qmatmul",))
        d = src.definition("qmatmul")
        problem = _expansion_problem(d.tree) if d is not None else None
        t.true(problem is None, "qmatmul multiplies the codes themselves and adds the offset "
               "terms (the expansion)", problem or "")


# ---- reading the source: integers only, and the expansion ------------------------------------

_FLOAT_NAMES = {"float", "float16", "float32", "float64", "float128", "longdouble", "double",
                "half", "single", "float_", "longfloat", "floating", "Fraction", "Decimal"}
# calls that compute in floating point whatever the input (a mean times K is a row sum
# that float rounding can leave one below the integer, for the final cast to truncate)
_FLOAT_CALLS = {"rint", "round", "around", "floor", "ceil", "trunc", "fix", "ldexp", "frexp",
                "exp2", "divide", "true_divide", "mean", "average", "nanmean", "std", "var",
                "sqrt", "exp", "log", "log2", "power", "float_power", "reciprocal"}


def _float_use(tree) -> str | None:
    """The first floating-point operation in ``tree``, in words, or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _FLOAT_NAMES:
            return f"it names {node.id}"
        if isinstance(node, ast.Attribute) and node.attr in _FLOAT_NAMES | _FLOAT_CALLS:
            return f"it uses {node.attr}"
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value.lower().lstrip("<>=|") in {"f", "f2", "f4", "f8", "f16", "d", "g"}
                | {n.lower() for n in _FLOAT_NAMES}):
            return f"it names the float type {node.value!r}"
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            return f"it uses the float constant {node.value!r}"
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
            return "it divides with / (true division gives floats; use >> or //)"
    return None


def integer_only(src, t, names) -> None:
    """The definitions of ``names`` (and the notebook functions they call) use integer
    arithmetic only: an integer kernel's result must not depend on float rounding (a
    float64 or long double version matches on most inputs, which is why it is read)."""
    for name in names:
        problem, where = None, name
        for d in src.reachable(name, skip=[n for n in names if n != name]):
            problem, where = _float_use(d.tree), d.name
            if problem:
                break
        t.true(problem is None, f"{name} computes in integers only",
               f"{where}: {problem}. The exercise is integer-only arithmetic, as an int8 "
               f"accelerator does it: widen to int64 where a product needs it"
               if problem else "")


def _expansion_problem(fn) -> str | None:
    """Why ``fn`` (qmatmul) is not gemmlowp's expansion, or None: it must multiply matrices
    whose operands are not differences (the codes themselves, ``a @ w``), and take the row
    and column sums the offset terms need."""
    shifted = set()  # names bound to a difference: a_ = a - za
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and any(isinstance(v, ast.BinOp) and isinstance(
                v.op, ast.Sub) for v in ast.walk(node.value)):
            shifted |= {tg.id for tg in node.targets if isinstance(tg, ast.Name)}

    def is_shifted(e):
        return any((isinstance(v, ast.BinOp) and isinstance(v.op, ast.Sub))
                   or (isinstance(v, ast.Name) and v.id in shifted) for v in ast.walk(e))

    products = []
    for node in ast.walk(fn):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            products.append([node.left, node.right])
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("matmul", "dot", "tensordot", "einsum", "inner"):
                products.append([a for a in node.args if not isinstance(a, ast.Constant)])
    if not products:
        return "no matrix product (@, np.matmul, np.dot) was found: the core of qmatmul is a @ w"
    if all(any(is_shifted(o) for o in ops) for ops in products):
        return ("every matrix product multiplies shifted values, (a - za) @ (w - zw): the "
                "expansion multiplies the codes as they are, a @ w (what the int8 units do), "
                "and corrects with the row sums of a, the column sums of w and a constant")
    calls = {getattr(n.func, "attr", getattr(n.func, "id", "")) for n in ast.walk(fn)
             if isinstance(n, ast.Call)}
    if not calls & {"sum", "einsum"}:
        return ("no sums of a's rows or w's columns: the offset terms za * colsum(w) and "
                "zw * rowsum(a) are what make a @ w exact")
    return None

"""Unit 09, quantization (1 of 2): the affine map and calibration.

* ``quantization.qparams``: ``qparams(min_val, max_val, dtype, symmetric)`` on hidden
  ranges (ReLU-only, all-negative, not containing 0, degenerate, symmetric int8/uint8),
  judged against ``mlc.quant.qparams``: an integer zero point inside the type's range, a
  grid that covers the range, then the exact values.
* ``quantization.quantize``: ``quantize`` and ``dequantize`` on hidden tensors with exact
  ties (round half to even), saturation, uint8 zero points that wrap in uint8 arithmetic.
* ``quantization.observer``: ``MinMaxObserver`` and ``MovingAverageObserver`` fed hidden
  streams of batches, judged after every batch against ``mlc.quant``'s observers; a stream
  of 2020 batches must leave no more memory held than 20 (nothing kept per batch).

The integer-only arithmetic (``quantize_multiplier``, ``requantize``, ``qmatmul``) is in
:mod:`.quantization_int`. Every reference is the grader's own ``mlc.quant``; the student's
code runs only in ``observe``. The notebook may not import ``mlc.quant`` (the exercise is
to write these pieces), which :func:`no_library` reads off the notebook's source.
"""

from __future__ import annotations


import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need, raised
from ..source import cell_label

NB = "09_quantization"
QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}


# ---- shared by both modules ----------------------------------------------------------------------

def no_library(src, t) -> None:
    cells = src.cells_using("mlc.quant")
    t.true(not cells, "the notebook does not use mlc.quant",
           f"code {cell_label(cells[0]) if cells else 'cell'} imports mlc.quant: the exercise "
           "is to write these pieces yourself (the lecture uses the library; this notebook "
           "may not)")


def as_int(v, what: str) -> int:
    """``v`` if it is an integer (a Python int on the wire), else a clear failure."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise CheckFailed(f"{what}: expected an integer, got {type(v).__name__} {v!r}")
    return v


def as_float(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CheckFailed(f"{what}: expected a number, got {type(v).__name__} {v!r}")
    return float(v)


def pair(obs, what: str, names=("scale", "zero_point")) -> tuple:
    if not (isinstance(obs, (list, tuple)) and len(obs) == 2):
        raise CheckFailed(f"{what}: expected a pair ({names[0]}, {names[1]}), got "
                          f"{type(obs).__name__}")
    return obs[0], obs[1]


def array(obs, what: str) -> np.ndarray:
    if not isinstance(obs, np.ndarray):
        raise CheckFailed(f"{what}: expected a numpy array, got {type(obs).__name__}")
    return obs


# ---- qparams -------------------------------------------------------------------------------------

def judge_qparams(obs, lo, hi, dtype, symmetric, what, t):
    """One ``(scale, zero_point)`` against the library's, failing with the first reason."""
    from ... import quant

    s_ref, z_ref = quant.qparams(lo, hi, dtype, symmetric)
    s, z = pair(obs, what)
    s = as_float(s, f"{what}: the scale")
    if isinstance(z, float) and float(z).is_integer():
        t.fail(f"{what}: the zero point is the float {z!r}; it must be an integer (a Python "
               "int or numpy integer), the code the real number 0 maps to")
    z = as_int(z, f"{what}: the zero point")
    q_min, q_max = QRANGE[dtype]
    t.true(q_min <= z <= q_max, f"{what}: the zero point lies in [{q_min}, {q_max}]",
           f"got {z}: the real 0 must be one of the {dtype} codes")
    t.true(np.isfinite(s) and s > 0, f"{what}: the scale is positive", f"got {s!r}")
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    grid = (s * (q_min - z), s * (q_max - z))
    tol = 0.5 * s + 1e-5 * max(abs(lo0), abs(hi0))   # the zero point is rounded
    t.true(grid[0] <= lo0 + tol and grid[1] >= hi0 - tol,
           f"{what}: the grid covers the range widened to contain 0, [{lo0:g}, {hi0:g}]",
           f"your grid spans [{grid[0]:.6g}, {grid[1]:.6g}], more than half a step short")
    t.close(s, s_ref, f"{what}: the scale", rtol=1e-6, atol=0)
    t.true(float(np.float32(s)) == s, f"{what}: the scale is rounded to float32",
           f"got {s!r}, which float32 cannot hold: a quantized model stores its scales in "
           f"float32, and the integer path must use the same value")
    t.equal(z, z_ref, f"{what}: the zero point")


@exercise("quantization.qparams", points=2, notebook=NB, needs=("qparams",),
          hint="the range must first contain 0 (widen it), and the zero point is the integer "
               "code of the real 0, rounded from -min / scale then offset by q_min; for "
               "symmetric, the zero point is fixed and the scale stretches the larger of "
               "|min| and |max| over the codes on one side of it (lecture section 2)",
          rebuilds=("mlc.quant.affine:qparams",))
class _Qparams(Check):
    def cases(self):
        ranges = [(-1.0, 1.0, "int8", False), (0.0, 6.0, "uint8", False),
                  (0.0, 6.0, "int8", False), (-3.7, 0.2, "uint8", False),
                  (-1e-3, 7.3, "uint8", False), (0.5, 4.0, "int8", False),
                  (-4.0, -0.5, "int8", False), (-0.3, 2.5, "int8", True),
                  (-0.3, 2.5, "uint8", True), (-5.0, 1.0, "int8", True),
                  (0.0, 0.0, "int8", False), (-0.61, 0.37, "uint8", False)]
        out = [{"what": f"qparams({lo}, {hi}, {d!r}, symmetric={s})", "args": [lo, hi, d, s]}
               for lo, hi, d, s in ranges]
        out.append({"what": "qparams(2.0, 1.0) (min > max) raises ValueError",
                    "args": [2.0, 1.0, "int8", False], "raises": True})
        return out

    def observe(self, ns, case):
        fn = need(ns, "qparams")
        lo, hi, dtype, sym = case["args"]
        if case.get("raises"):
            return raised(fn, lo, hi, dtype=dtype, symmetric=sym)
        out = call(case["what"], fn, lo, hi, dtype=dtype, symmetric=sym)
        return list(out) if isinstance(out, tuple) else out

    def judge(self, case, obs, t):
        if case.get("raises"):
            t.raised(obs, ValueError, case["what"])
            return
        lo, hi, dtype, sym = case["args"]
        judge_qparams(obs, lo, hi, dtype, sym, case["what"], t)

    def inspect(self, src, t):
        no_library(src, t)


# ---- quantize / dequantize ---------------------------------------------------------------------

def _quantize_cases():
    rng = np.random.default_rng(9)
    x = rng.standard_normal(200).astype(np.float32)
    ties = (np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -3.5, 0.0, 7.25]) * 0.25
            ).astype(np.float32)
    sat = np.array([-100.0, 100.0, 1e6, -1e6, 12.7, -12.9, 0.0], np.float32)
    relu = rng.uniform(0, 6, (4, 5)).astype(np.float32)
    neg = rng.uniform(-3, 1, 50).astype(np.float32)
    return [
        ("200 normal values, scale 0.05, zero point 3, int8", x, 0.05, 3, "int8"),
        ("exact ties (x / scale = k + 1/2), scale 0.25, zero point 0, int8", ties, 0.25, 0,
         "int8"),
        ("exact ties with an odd zero point, scale 0.25, zero point -3, int8", ties, 0.25, -3,
         "int8"),
        ("values far outside the grid (saturation), scale 0.1, zero point -5, int8", sat, 0.1,
         -5, "int8"),
        ("a 4 x 5 ReLU output, scale 6/255, zero point 0, uint8", relu, 6 / 255, 0, "uint8"),
        ("values in [-3, 1], scale 4/255, zero point 191, uint8", neg, 4 / 255, 191, "uint8"),
        ("values far outside the grid, scale 0.02, zero point 128, uint8", sat, 0.02, 128,
         "uint8"),
        ("values a few float32 steps from half-way points, scale 0.1, zero point 0, int8",
         _near_ties(0.1), 0.1, 0, "int8"),
    ]


def _near_ties(scale: float, n: int = 40) -> np.ndarray:
    """float32 values next to (k + 1/2) * scale, half of them where x / scale computed in
    float32 rounds to the other integer than in float64 (the exercise asks for float64)."""
    rng = np.random.default_rng(hidden_seed(9))
    k = rng.integers(-120, 120, 50 * n)
    x = ((k + 0.5) * scale).astype(np.float32)
    x = x + (rng.integers(-3, 4, x.size) * np.spacing(np.abs(x))).astype(np.float32)
    flips = np.rint(x.astype(np.float64) / scale) != np.rint(x / np.float32(scale))
    return np.concatenate([x[flips][:n // 2], x[~flips][:n // 2]])


def _dequantize_cases():
    rng = np.random.default_rng(10)
    all_i8 = np.arange(-128, 128, dtype=np.int8)
    all_u8 = np.arange(256, dtype=np.int64).astype(np.uint8)
    return [
        ("every int8 code, scale 0.1, zero point 0", all_i8, 0.1, 0),
        ("every int8 code, scale 0.03, zero point 100", all_i8, 0.03, 100),
        ("every uint8 code, scale 0.02, zero point 200", all_u8, 0.02, 200),
        ("a 3 x 4 int8 array, scale 0.5, zero point -7",
         rng.integers(-128, 128, (3, 4)).astype(np.int8), 0.5, -7),
    ]


@exercise("quantization.quantize", points=2, notebook=NB, needs=("quantize", "dequantize"),
          hint="divide in float, round (the course rounds half-way cases to the even "
               "integer, as np.rint does), add the zero point, and clamp to the type's "
               "range before converting to it; when dequantizing, take care which integer "
               "type q - zero_point is computed in",
          rebuilds=("mlc.quant.affine:quantize", "mlc.quant.affine:dequantize"))
class _Quantize(Check):
    def cases(self):
        out = [{"what": f"quantize: {w}", "fn": "quantize", "x": x, "scale": s, "zp": z,
                "dtype": d} for w, x, s, z, d in _quantize_cases()]
        out += [{"what": f"dequantize: {w}", "fn": "dequantize", "q": q, "scale": s, "zp": z}
                for w, q, s, z in _dequantize_cases()]
        return out

    def observe(self, ns, case):
        if case["fn"] == "quantize":
            fn = need(ns, "quantize")
            return call(case["what"], fn, case["x"].copy(), case["scale"], case["zp"],
                        dtype=case["dtype"])
        fn = need(ns, "dequantize")
        return call(case["what"], fn, case["q"].copy(), case["scale"], case["zp"])

    def judge(self, case, obs, t):
        from ... import quant

        what = case["what"]
        got = np.asarray(obs) if isinstance(obs, (list, np.ndarray)) else obs
        if not isinstance(got, np.ndarray) or got.dtype.kind not in "biuf":
            t.fail(f"{what}: expected a numpy array, got {type(obs).__name__}")
        if case["fn"] == "dequantize":
            want = quant.dequantize(case["q"], case["scale"], case["zp"])
            t.equal(str(got.dtype), "float32", f"{what}: the result is float32")
            t.equal(got.shape, want.shape, f"{what}: the shape")
            bad = np.flatnonzero(~np.isclose(got, want, rtol=1e-6, atol=1e-6))
            if bad.size:
                i = int(bad[0])
                t.fail(f"{what}: at q = {case['q'].reshape(-1)[i]}, expected "
                       f"{want.reshape(-1)[i]:.6g}, got {got.reshape(-1)[i]:.6g}")
            t.passed.append(f"{what}: the values")
            return
        x, s, z, dtype = case["x"], case["scale"], case["zp"], case["dtype"]
        want = quant.quantize(x, s, z, dtype)
        t.equal(str(got.dtype), dtype, f"{what}: the result is {dtype}")
        t.equal(got.shape, want.shape, f"{what}: the shape")
        bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
        if bad.size:
            i = int(bad[0])
            r = float(np.float64(x.reshape(-1)[i]) / np.float64(s))
            note = ""
            if abs(r - np.floor(r) - 0.5) < 1e-9:
                note = " (a tie: x / scale is exactly half-way between two integers)"
            elif not QRANGE[dtype][0] <= np.rint(r) + z <= QRANGE[dtype][1]:
                note = f" (outside the {dtype} grid)"
            elif abs(r - np.floor(r) - 0.5) < 1e-5:
                note = (" (next to a half-way point, where x / scale computed in float32 "
                        "rounds the other way)")
            t.fail(f"{what}: at x = {x.reshape(-1)[i]:.6g} (x / scale = {r:.6g}), expected "
                   f"code {want.reshape(-1)[i]}, got {got.reshape(-1)[i]}{note}")
        t.passed.append(f"{what}: the codes")

    def inspect(self, src, t):
        no_library(src, t)


# ---- the observer ------------------------------------------------------------------------------

def _streams():
    rng = np.random.default_rng(11)
    normal = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(3)]
    normal[1][3, 5] = 9.5                                    # one outlier
    relu = [np.maximum(rng.standard_normal((8, 4, 4, 2)), 0).astype(np.float32) * (i + 1)
            for i in range(4)]
    negative = [-rng.uniform(0.5, 3.0, 40).astype(np.float32) for _ in range(3)]
    zeros_first = [np.zeros((5, 5), np.float32), rng.uniform(-1, 2, (5, 5)).astype(np.float32)]
    drift = [(rng.standard_normal(64) * (1 + i)).astype(np.float32) for i in range(5)]
    return [
        ("min/max of 3 batches, one with an outlier 9.5", "minmax", normal, "int8", False, None),
        ("min/max of 4 ReLU batches (4-D), uint8", "minmax", relu, "uint8", False, None),
        ("min/max of 3 all-negative batches, int8 symmetric", "minmax", negative, "int8", True,
         None),
        ("min/max: an all-zero batch, then a real one", "minmax", zeros_first, "int8", False,
         None),
        ("moving average (c = 0.1) of 5 widening batches", "ema", drift, "int8", False, 0.1),
        ("moving average (c = 0.5) of 3 batches with an outlier, uint8", "ema", normal,
         "uint8", False, 0.5),
        ("moving average (c = 1.0: the last batch) of 4 ReLU batches", "ema", relu, "int8",
         True, 1.0),
    ]


@exercise("quantization.observer", points=2, notebook=NB,
          needs=("MinMaxObserver", "MovingAverageObserver", "qparams"),
          hint="update() folds one batch into the statistics and keeps nothing else; "
               "range() reports them as two floats; the moving average starts from the "
               "first batch's own min and max, then moves each a fraction c of the way "
               "towards the new batch's; qparams() before any data is a RuntimeError",
          rebuilds=("mlc.quant.observers:MinMaxObserver",
                    "mlc.quant.observers:MovingAverageMinMaxObserver"))
class _Observer(Check):
    def cases(self):
        out = [{"what": w, "kind": k, "batches": b, "dtype": d, "symmetric": s, "c": c}
               for w, k, b, d, s, c in _streams()]
        out.append({"what": "qparams() before any update raises RuntimeError",
                    "kind": "minmax", "batches": [], "dtype": "int8", "symmetric": False,
                    "c": None, "raises": True})
        for kind, c in (("minmax", None), ("ema", 0.05)):
            out.append({"what": f"{'MinMax' if kind == 'minmax' else 'MovingAverage'}Observer "
                                f"keeps no more memory after {MEMORY_STREAM[-1]} batches than "
                                f"after {MEMORY_STREAM[0]}", "kind": kind, "batches": [],
                        "dtype": "int8", "symmetric": False, "c": c, "memory": True})
        return out

    def observe(self, ns, case):
        cls = need(ns, "MinMaxObserver" if case["kind"] == "minmax" else "MovingAverageObserver")
        kwargs = {"dtype": case["dtype"], "symmetric": case["symmetric"]}
        if case["c"] is not None:
            kwargs["averaging_constant"] = case["c"]
        obs = call(f"{cls.__name__}(**{kwargs})", cls, **kwargs)
        if case.get("raises"):
            return raised(obs.qparams)
        if case.get("memory"):
            return _retained(case["what"], obs)
        ranges = []
        for i, b in enumerate(case["batches"]):
            call(f"{case['what']}: update(batch {i + 1})", obs.update, b.copy())
            r = call(f"{case['what']}: range() after batch {i + 1}", obs.range)
            ranges.append([r[0], r[1]] if isinstance(r, (tuple, list)) and len(r) == 2 else r)
        qp = call(f"{case['what']}: qparams()", obs.qparams)
        return {"ranges": ranges, "qparams": list(qp) if isinstance(qp, tuple) else qp}

    def judge(self, case, obs, t):
        from ... import quant

        what = case["what"]
        if case.get("raises"):
            t.raised(obs, RuntimeError, what)
            return
        if case.get("memory"):
            _judge_retained(case, obs, t)
            return
        if not (isinstance(obs, dict) and isinstance(obs.get("ranges"), list)):
            t.fail(f"{what}: malformed observation")
        kwargs = {"dtype": case["dtype"], "symmetric": case["symmetric"]}
        ref = (quant.MinMaxObserver(**kwargs) if case["kind"] == "minmax" else
               quant.MovingAverageMinMaxObserver(**kwargs, averaging_constant=case["c"]))
        n = len(case["batches"])
        if len(obs["ranges"]) != n:
            t.fail(f"{what}: malformed observation")
        for i, (b, r) in enumerate(zip(case["batches"], obs["ranges"], strict=True)):
            ref(b)
            lo, hi = ref.range()
            r = pair(r, f"{what}: range() after batch {i + 1}", ("min", "max"))
            got = (as_float(r[0], f"{what}: range()"), as_float(r[1], f"{what}: range()"))
            if not np.allclose(got, (lo, hi), rtol=1e-6, atol=1e-9):
                t.fail(f"{what}: after batch {i + 1} of {n} (its own min {b.min():.5g}, max "
                       f"{b.max():.5g}), expected range ({lo:.6g}, {hi:.6g}), got "
                       f"({got[0]:.6g}, {got[1]:.6g})")
        t.passed.append(f"{what}: range() after each of the {n} batches")
        lo, hi = ref.range()
        judge_qparams(obs.get("qparams"), float(lo), float(hi), case["dtype"],
                      case["symmetric"], f"{what}: qparams()", t)

    def inspect(self, src, t):
        no_library(src, t)


# ---- what an observer keeps ------------------------------------------------------------------

# batches fed before each measurement; a stream goes on to the next count only while it
# has grown by no more than the slack, so one that copies every batch stops early (it would
# take seconds to reach 2020), and one that keeps 4 bytes a batch grows 8 KB by the end
MEMORY_STREAM = (20, 400, 2020)
MEMORY_BATCH = 256  # float32 elements per batch: 1 KB
MEMORY_SLACK = 4096  # bytes: allocator noise (a correct observer's is under 100)


def _retained(what, obs) -> dict:
    """In the worker: the bytes still allocated (tracemalloc, which sees numpy's buffers)
    after feeding ``obs`` each count of batches of :data:`MEMORY_STREAM` (or up to the
    first count where it grew past the slack), and its range. The batches are made here
    and dropped after their update, so anything still held is what the observer kept."""
    import tracemalloc

    rng = np.random.default_rng(12)
    held, fed = [], 0
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for count in MEMORY_STREAM:
            while fed < count:
                call(f"{what}: update(batch {fed + 1})", obs.update,
                     rng.standard_normal(MEMORY_BATCH).astype(np.float32))
                fed += 1
            held.append(tracemalloc.get_traced_memory()[0] - base)
            if held[-1] - held[0] > MEMORY_SLACK:
                break
    finally:
        tracemalloc.stop()
    r = call(f"{what}: range()", obs.range)
    return {"held": held, "range": list(r) if isinstance(r, tuple) else r}


def _judge_retained(case, obs, t) -> None:
    what = case["what"]
    held = obs.get("held") if isinstance(obs, dict) else None
    if not (isinstance(held, list) and 2 <= len(held) <= len(MEMORY_STREAM)
            and all(isinstance(h, int) and not isinstance(h, bool) for h in held)):
        t.fail(f"{what}: malformed observation")
    grew = held[-1] - held[0]
    n = MEMORY_STREAM[len(held) - 1] - MEMORY_STREAM[0]
    t.true(grew <= MEMORY_SLACK, what,
           f"{n} more batches of {MEMORY_BATCH} floats left {grew} more bytes allocated "
           f"({grew / n:.0f} bytes per batch): the observer keeps something per batch. It "
           f"needs only the running min and max, two floats, however long the stream")

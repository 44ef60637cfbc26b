"""The checks of unit 12 (end to end).

Each check gives full marks to a correct solution and fails, with a message that points at
the mistake, on the mistakes students make: nibbles in the wrong order, a scale per column
instead of per group, codes unpacked without their sign; a cached attention that forgets
to write the new key, attends over the whole (stale) cache, reads every key twice (a
two-pass softmax over the cache) or converts the cache whole; a bottleneck that is the
slowest single kernel, or groups kernels by their first op; a pipeline that runs
dead-code elimination before CSE, skips the passes or fuses before tracing. Forged
observations fail cleanly.
"""

from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner

from mlc.grading.checks import end_to_end
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester

ROOT = Path(__file__).resolve().parents[1]
IDS = ["end_to_end.int4_pack", "end_to_end.kv_attention", "end_to_end.bottleneck",
       "end_to_end.pipeline"]
POINTS = [2, 3, 1, 2]


# ---- the reference solutions (as in solutions/12_end_to_end.ipynb) ------------------------

def pack_int4(w, group_size, swap=False, per_column=False):
    w = np.asarray(w, np.float32)
    k, n = w.shape
    g = k if per_column else group_size
    groups = w.reshape(k // g, g, n).astype(np.float64)
    amax = np.abs(groups).max(axis=1)
    scales = np.where(amax > 0, amax / 7, 1.0)
    q = np.clip(np.rint(groups / scales[:, None, :]), -8, 7).astype(np.int16).reshape(k, n)
    lo, hi = (q[1::2], q[0::2]) if swap else (q[0::2], q[1::2])
    scales = np.repeat(scales, k // group_size if per_column else 1, axis=0)
    return ((lo & 15) | ((hi & 15) << 4)).astype(np.uint8), scales.astype(np.float32)


def unpack_int4(packed, scales, group_size, signed=True):
    b = np.asarray(packed).astype(np.int16)
    low, high = b & 15, b >> 4
    if signed:
        low, high = (low ^ 8) - 8, (high ^ 8) - 8
    codes = np.empty((2 * b.shape[0], b.shape[1]), np.int16)
    codes[0::2], codes[1::2] = low, high
    return (codes * np.repeat(np.asarray(scales, np.float32), group_size, axis=0)).astype(
        np.float32)


def attend_cached(q, k, v, cache_k, cache_v, t, write=True, whole=False, two_pass=False):
    if write:
        cache_k[:, t], cache_v[:, t] = k, v
    end = cache_k.shape[1] if whole else t + 1
    keys, values = cache_k[:, :end], cache_v[:, :end]
    s = np.einsum("hd,htd->ht", q, keys) / np.sqrt(q.shape[-1])
    if two_pass:   # the scores again from the cache, for the softmax's numerator
        s2 = np.einsum("hd,htd->ht", q, cache_k[:, :end]) / np.sqrt(q.shape[-1])
        p = np.exp(s2 - s.max(axis=1, keepdims=True))
    else:
        p = np.exp(s - s.max(axis=1, keepdims=True))
    return np.einsum("ht,htd->hd", p / p.sum(axis=1, keepdims=True), values)


def bottleneck(kernels, heavy, by_kernel=False, first_op=False):
    if by_kernel:   # the slowest single kernel, not the slowest group
        k = max(kernels, key=lambda k: k["seconds"])
        return k["ops"][0], k["seconds"] / sum(k["seconds"] for k in kernels)
    totals = {}
    for k in kernels:
        group = k["ops"][0] if first_op else next((op for op in heavy if op in k["ops"]),
                                                  k["ops"][0])
        totals[group] = totals.get(group, 0.0) + k["seconds"]
    best = max(totals, key=totals.get)
    return best, totals[best] / sum(totals.values())


ORDER = ("trace", "fold_constants", "eliminate_common_subexpressions",
         "eliminate_dead_code", "fuse", "lower", "plan", "compile")


def deploy_pipeline(model, example, stages, order=ORDER):
    value = model
    for name in order:
        value = stages[name](value)
    return value


REFERENCE = {"deploy_pipeline": deploy_pipeline, "pack_int4": pack_int4, "unpack_int4": unpack_int4,
             "attend_cached": attend_cached, "bottleneck": bottleneck}
run, fails = check_runner(REFERENCE)


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = run(ex_id)
    assert rec["score"] == rec["max_score"] == POINTS[IDS.index(ex_id)], rec


def test_int4_wrong_variants_fail():
    fails("end_to_end.int4_pack", "the bytes",
          pack_int4=lambda w, g: pack_int4(w, g, swap=True))
    fails("end_to_end.int4_pack", "the bytes",
          pack_int4=lambda w, g: pack_int4(w, g, per_column=True))
    fails("end_to_end.int4_pack", "group scales",   # the bytes right, the scales 1/q
          pack_int4=lambda w, g: (pack_int4(w, g)[0], 1 / pack_int4(w, g)[1]))
    fails("end_to_end.int4_pack", "unpack_int4",
          unpack_int4=lambda p, s, g: unpack_int4(p, s, g, signed=False))
    fails("end_to_end.int4_pack", "uint8",
          pack_int4=lambda w, g: (pack_int4(w, g)[0].astype(np.int64), pack_int4(w, g)[1]))


def test_kv_wrong_variants_fail():
    fails("end_to_end.kv_attention", "recomputed in full",
          attend_cached=lambda *a: attend_cached(*a, write=False))
    fails("end_to_end.kv_attention", "recomputed in full",
          attend_cached=lambda *a: attend_cached(*a, whole=True))
    fails("end_to_end.kv_attention", "read at most once",
          attend_cached=lambda *a: attend_cached(*a, two_pass=True))
    fails("end_to_end.kv_attention", "cannot be turned into an array",
          attend_cached=lambda q, k, v, ck, cv, t: np.asarray(ck)[:, 0])


def test_bottleneck_wrong_variants_fail():
    fails("end_to_end.bottleneck", "the group", "five kernels",
          bottleneck=lambda k, h: bottleneck(k, h, by_kernel=True))
    fails("end_to_end.bottleneck", "the group", "five kernels",
          bottleneck=lambda k, h: bottleneck(k, h, first_op=True))
    fails("end_to_end.bottleneck", "share",
          bottleneck=lambda k, h: (bottleneck(k, h)[0], 1.0))


def test_pipeline_wrong_variants_fail():
    dce_first = ORDER[:2] + (ORDER[3], ORDER[2]) + ORDER[4:]
    fails("end_to_end.pipeline", "the stages' order",
          deploy_pipeline=lambda m, x, s: deploy_pipeline(m, x, s, order=dce_first))
    fails("end_to_end.pipeline", "the stages' order",   # the passes skipped
          deploy_pipeline=lambda m, x, s: deploy_pipeline(
              m, x, s, order=("trace", "fuse", "lower", "plan", "compile")))
    fails("end_to_end.pipeline", "your code raised",     # fuse before the graph exists
          deploy_pipeline=lambda m, x, s: deploy_pipeline(m, x, s, order=("fuse",) + ORDER))


@pytest.mark.parametrize("ex_id,obs", [
    ("end_to_end.int4_pack", None), ("end_to_end.int4_pack", {"packed": [1, 2]}),
    ("end_to_end.int4_pack", {"packed": np.zeros((4, 3), np.uint8), "scales": "x"}),
    ("end_to_end.kv_attention", [1]), ("end_to_end.kv_attention", {"out": "x"}),
    ("end_to_end.kv_attention", {"out": np.zeros((1, 2)), "ck": None}),
    ("end_to_end.bottleneck", "matmul"), ("end_to_end.bottleneck", ["matmul", "x"]),
    ("end_to_end.pipeline", ["trace"]), ("end_to_end.pipeline", {"log": list(ORDER)})])
def test_judges_fail_forged_observations_cleanly(ex_id, obs):
    ex = get(ex_id)
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


def test_modules_stay_small():
    assert len(Path(end_to_end.__file__).read_text().splitlines()) <= 400


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "12_end_to_end.ipynb")
    assert (report.score, report.max_score) == (sum(POINTS), sum(POINTS)), [
        (r.id, r.message) for r in report.results]


def test_released_notebook_gets_zero(graded):
    report = graded(ROOT / "exercises" / "12_end_to_end.ipynb")
    assert report.max_score == sum(POINTS) and report.score == 0, report.results
    assert all("not implemented" in r.message for r in report.results), [
        r.message for r in report.results]

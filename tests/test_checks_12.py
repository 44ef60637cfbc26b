"""The checks of unit 12 (end to end).

Each check gives full marks to a correct solution and fails, with a message that points at
the mistake, on the mistakes students make: nibbles in the wrong order, a scale per column
instead of per group, codes unpacked without their sign; a cached attention that forgets
to write the new key, attends over the whole (stale) cache, reads every key twice (a
two-pass softmax over the cache) or converts the cache whole; a bottleneck that is the
slowest single kernel, or groups kernels by their first op; a pipeline that runs
dead-code elimination before CSE, skips the passes or fuses before tracing. The audit's
wrong answers (issue 20) close the file: halves rounded up or away from zero, float64
scales; a softmax without its maximum, the token written one slot late; kernels searched
in their own order, kernels without a heavy op dropped or lumped together; pass results
dropped, the eager model returned. Forged observations fail cleanly.
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


# ---- wrong answers of the audit (issue 20): each scored full marks before its case -------------

def _pack_rounding(rnd):
    """pack_int4 with another rounding of w / scale (the reference's packing otherwise)."""
    def pack(w, group_size):
        w = np.asarray(w, np.float32)
        k, n = w.shape
        groups = w.reshape(k // group_size, group_size, n).astype(np.float64)
        amax = np.abs(groups).max(axis=1)
        scales = np.where(amax > 0, amax / 7, 1.0)
        q = np.clip(rnd(groups / scales[:, None, :]), -8, 7).astype(np.int16).reshape(k, n)
        return ((q[0::2] & 15) | ((q[1::2] & 15) << 4)).astype(np.uint8), scales.astype(
            np.float32)
    return pack


def test_int4_rounding_halves_up_or_away_from_zero_scores_zero():
    for rnd in (lambda r: np.floor(r + 0.5), lambda r: np.sign(r) * np.floor(np.abs(r) + 0.5)):
        fails("end_to_end.int4_pack", "exact halves", "even code", "the bytes",
              pack_int4=_pack_rounding(rnd))
    assert run("end_to_end.int4_pack", pack_int4=_pack_rounding(np.rint))["score"] == 2


def test_int4_float64_scales_or_weights_score_zero():
    fails("end_to_end.int4_pack", "group scales are float32", "got float64",
          pack_int4=lambda w, g: (pack_int4(w, g)[0], pack_int4(w, g)[1].astype(np.float64)))
    fails("end_to_end.int4_pack", "unpack_int4", "are float32", "got float64",
          unpack_int4=lambda p, s, g: unpack_int4(p, s, g).astype(np.float64))


def test_int4_scales_repeated_the_wrong_way_on_unpack_score_zero():
    def tiled(packed, scales, group_size):   # np.tile interleaves groups: row i gets i % G
        scales = np.asarray(scales, np.float32)
        codes = unpack_int4(packed, np.ones((packed.shape[0] * 2, scales.shape[1])), 1)
        return (codes * np.tile(scales, (group_size, 1))).astype(np.float32)

    fails("end_to_end.int4_pack", "unpack_int4(a 8 x 3 weight", unpack_int4=tiled)


def _attend(q, keys, values):
    s = np.einsum("hd,htd->ht", q, keys) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return np.einsum("ht,htd->hd", p / p.sum(axis=1, keepdims=True), values)


def test_kv_softmax_without_its_maximum_scores_zero():
    def naive(q, k, v, cache_k, cache_v, t):
        cache_k[:, t], cache_v[:, t] = k, v
        keys, values = cache_k[:, :t + 1], cache_v[:, :t + 1]
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.exp(np.einsum("hd,htd->ht", q, keys) / np.sqrt(q.shape[-1]))
            return np.einsum("ht,htd->hd", p / p.sum(axis=1, keepdims=True), values)

    fails("end_to_end.kv_attention", "scores in the thousands", "inf or nan",
          "largest score", attend_cached=naive)


def test_kv_writing_slot_t_plus_1_or_only_the_key_scores_zero():
    def next_slot(q, k, v, cache_k, cache_v, t):   # the step's token written one slot late
        if t + 1 < cache_k.shape[1]:
            cache_k[:, t + 1], cache_v[:, t + 1] = k, v
        return _attend(q, cache_k[:, :t + 2], cache_v[:, :t + 2])

    def key_only(q, k, v, cache_k, cache_v, t):   # v used, never stored for the next step
        cache_k[:, t] = k
        values = cache_v[:, :t + 1]
        values[:, t] = v
        return _attend(q, cache_k[:, :t + 1], values)

    fails("end_to_end.kv_attention", "the key cache after the call", attend_cached=next_slot)
    fails("end_to_end.kv_attention", "the value cache after the call", attend_cached=key_only)


def test_kv_masking_the_whole_cache_or_dropping_the_new_token_scores_zero():
    def masked(q, k, v, cache_k, cache_v, t):   # right numbers, but reads every slot
        cache_k[:, t], cache_v[:, t] = k, v
        keys, values = cache_k[:, :], cache_v[:, :]
        s = np.einsum("hd,htd->ht", q, keys) / np.sqrt(q.shape[-1])
        s[:, t + 1:] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        return np.einsum("ht,htd->hd", p / p.sum(axis=1, keepdims=True), values)

    def earlier_only(q, k, v, cache_k, cache_v, t):   # the token does not attend to itself
        cache_k[:, t], cache_v[:, t] = k, v
        if t == 0:
            return np.zeros_like(v)
        return _attend(q, cache_k[:, :t], cache_v[:, :t])

    fails("end_to_end.kv_attention", "read at most once", attend_cached=masked)
    fails("end_to_end.kv_attention", "recomputed in full", attend_cached=earlier_only)


def _grouped(kernels, heavy, group_of, total=sum):
    totals = {}
    for k in kernels:
        g = group_of(k["ops"], heavy)
        if g is not None:
            totals[g] = totals.get(g, 0.0) + k["seconds"]
    best = max(totals, key=totals.get)
    return best, totals[best] / total(k["seconds"] for k in kernels)


def test_bottleneck_searching_the_kernel_instead_of_heavy_scores_zero():
    def kernel_order(ops, heavy):
        return next((op for op in ops if op in heavy), ops[0])

    fails("end_to_end.bottleneck", "two heavy ops", "expected 'matmul', got 'softmax'",
          bottleneck=lambda k, h: _grouped(k, h, kernel_order))


def test_bottleneck_that_drops_or_lumps_kernels_without_a_heavy_op_scores_zero():
    def skipped(ops, heavy):
        return next((op for op in heavy if op in ops), None)

    def other(ops, heavy):
        return next((op for op in heavy if op in ops), "other")

    for group_of, got in ((skipped, "'matmul'"), (other, "'other'")):
        fails("end_to_end.bottleneck", "no heavy op", f"expected 'permute', got {got}",
              bottleneck=lambda k, h, f=group_of: _grouped(k, h, f))


def test_bottleneck_counting_kernels_or_averaging_them_scores_zero():
    def count(kernels, heavy):
        return _grouped([{**k, "seconds": 1.0} for k in kernels], heavy,
                        lambda ops, h: next((op for op in h if op in ops), ops[0]))

    def mean(kernels, heavy):
        groups: dict = {}
        for k in kernels:
            g = next((op for op in heavy if op in k["ops"]), k["ops"][0])
            groups.setdefault(g, []).append(k["seconds"])
        best = max(groups, key=lambda g: np.mean(groups[g]))
        return best, sum(groups[best]) / sum(k["seconds"] for k in kernels)

    fails("end_to_end.bottleneck", "five kernels", "share", bottleneck=count)
    fails("end_to_end.bottleneck", "five kernels", "expected 'matmul', got 'softmax'",
          bottleneck=mean)


def test_pipeline_that_drops_what_the_passes_return_scores_zero():
    def passes_in_place(model, example, stages):   # as if a pass changed its input
        g = stages["trace"](model)
        for name in ORDER[1:4]:
            stages[name](g)
        return stages["compile"](stages["plan"](stages["lower"](stages["fuse"](g))))

    def plan_dropped(model, example, stages):
        p = stages["lower"](stages["fuse"](deploy_pipeline(model, example, stages,
                                                           order=ORDER[:4])))
        stages["plan"](p)
        return stages["compile"](p)

    fails("end_to_end.pipeline", "eliminate_common_subexpressions is given what "
          "fold_constants returned", deploy_pipeline=passes_in_place)
    fails("end_to_end.pipeline", "compile is given what plan returned",
          deploy_pipeline=plan_dropped)


def test_pipeline_that_returns_the_eager_model_scores_zero():
    from mlc.models import predict

    def eager(model, example, stages):
        deploy_pipeline(model, example, stages)
        return lambda x: predict(model, x)

    fails("end_to_end.pipeline", "returns what compile returned", deploy_pipeline=eager)


def test_pipeline_with_cse_before_folding_scores_zero():
    order = (ORDER[0], ORDER[2], ORDER[1]) + ORDER[3:]
    fails("end_to_end.pipeline", "the stages' order",
          deploy_pipeline=lambda m, x, s: deploy_pipeline(m, x, s, order=order))


def test_int4_scale_over_the_wrong_axis_scores_zero():
    def pack(w, group_size):   # one scale per block of rows, across every column
        w = np.asarray(w, np.float32)
        k, n = w.shape
        groups = w.reshape(k // group_size, group_size, n).astype(np.float64)
        amax = np.abs(groups).max(axis=(1, 2))[:, None].repeat(n, axis=1)
        scales = np.where(amax > 0, amax / 7, 1.0)
        q = np.clip(np.rint(groups / scales[:, None, :]), -8, 7).astype(np.int16).reshape(k, n)
        return ((q[0::2] & 15) | ((q[1::2] & 15) << 4)).astype(np.uint8), scales.astype(
            np.float32)

    fails("end_to_end.int4_pack", "a 8 x 3 weight in groups of 4", "the bytes", pack_int4=pack)


def test_kv_softmax_over_the_heads_scores_zero():
    def over_heads(q, k, v, cache_k, cache_v, t):
        cache_k[:, t], cache_v[:, t] = k, v
        keys, values = cache_k[:, :t + 1], cache_v[:, :t + 1]
        s = np.einsum("hd,htd->ht", q, keys) / np.sqrt(q.shape[-1])
        p = np.exp(s - s.max(axis=0, keepdims=True))
        return np.einsum("ht,htd->hd", p / p.sum(axis=0, keepdims=True), values)

    fails("end_to_end.kv_attention", "2 heads, position 3", "recomputed in full",
          attend_cached=over_heads)

"""End-to-end tuning with mlc.tune.tune: real builds, real timings, on tiny programs."""

import json
import math

import matplotlib
import numpy as np
import pytest

from mlc import tir
from mlc.tune import Measurer, TuneResult, tune
from test_tune_space import matmul

matplotlib.use("Agg")


def check_result(res: TuneResult, func, target, trials):
    assert res.n_measured == trials  # draws the template rejected cost no trial
    assert [h[0] for h in res.history] == list(range(len(res.history)))
    assert len(res.history) == trials + res.n_rejected
    times = [t for _, t, _, _ in res.history]
    best = [b for _, _, b, _ in res.history]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:], strict=False))  # best so far never rises
    assert res.time == min(times) == best[-1] and math.isfinite(res.time)
    assert res.decisions == res.history[times.index(res.time)][3]
    # The winner computes the matmul.
    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=p.shape).astype("float32") for p in func.params[:2])
    c = np.full(func.params[2].shape, np.nan, "float32")
    res.build()(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    assert res.build().target == target
    assert "sample_perfect_tile" in str(res.trace)
    fresh = tir.Schedule(func)
    res.trace.apply_to(fresh)  # the trace alone rebuilds the winner
    assert tir.structural_equal(fresh.func, res.schedule.func)


def test_evolutionary_on_python_target_with_plot():
    func = matmul()
    res = tune(func, target="python", trials=10, strategy="evolutionary", seed=1,
               progress=False, population=4, batch=3, repeat=1)
    check_result(res, func, "python", 10)
    ax = res.plot()
    assert ax.get_xlabel() == "trial" and ax.get_yscale() == "log"
    assert "TuneResult(" in repr(res)


def test_random_search_log_and_resume(tmp_path):
    func = matmul(4, 4, 8)
    log = tmp_path / "tune.json"
    res = tune(func, target="python", trials=5, strategy="random", seed=0, log_file=log,
               progress=False, repeat=1)
    check_result(res, func, "python", 5)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == len(res.history)
    assert [x["decisions"] for x in lines] == [h[3] for h in res.history]
    for x, h in zip(lines, res.history, strict=True):
        assert (x["time"] if x["time"] is not None else math.inf) == h[1]
    # Resuming with the same budget measures nothing and finds the same best.
    again = tune(func, target="python", trials=5, strategy="random", seed=0, log_file=log,
                 progress=False, repeat=1)
    assert len(log.read_text().splitlines()) == len(lines)
    assert len(again.history) == len(res.history)
    assert again.decisions == res.decisions and again.time == res.time
    # A larger budget adds only new candidates (the same seed redraws the old ones first).
    more = tune(func, target="python", trials=8, strategy="evolutionary", seed=0,
                log_file=log, progress=False, repeat=1, population=4, batch=2)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert more.n_measured == 8 and len(lines) == len(more.history)
    keys = [json.dumps(x["decisions"]) for x in lines]
    assert len(set(keys)) == len(keys)
    # A log of another workload is left alone and ignored.
    other = tune(matmul(4, 8, 4), target="python", trials=2, strategy="random",
                 log_file=log, progress=False, repeat=1)
    assert other.n_measured == 2
    assert len(log.read_text().splitlines()) == len(lines) + len(other.history)


def test_failing_candidates_are_recorded_not_raised(tmp_path):
    def template(sch):
        c = sch.get_block("C")
        i, j, k = sch.get_loops(c)
        sch.split(j, factors=sch.sample_perfect_tile(j, n=2))
        if sch.sample_categorical([0, 1], [1.0, 1.0]) == 1:
            sch.parallel(k)  # illegal: k binds a reduce iterator

    log = tmp_path / "fail.json"
    # 5 tilings of j x 2 choices: 5 legal candidates, 5 rejected draws.
    res = tune(matmul(), target="python", trials=4, strategy="random", seed=3,
               template=template, log_file=log, progress=False, repeat=1)
    assert res.n_measured == 4 and res.n_failures >= 1
    assert res.n_failures == res.n_rejected == len(res.errors) == len(res.history) - 4
    assert all("schedule error" in e and "parallel" in e for e in res.errors.values())
    assert math.isfinite(res.time)
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert sum(r["time"] is None for r in recs) == res.n_failures
    assert all(r["error"] for r in recs if r["time"] is None)


def test_measurer_reports_build_failures_and_wrong_results(monkeypatch):
    func = matmul()
    m = Measurer(func, "python", repeat=1)
    sch = tir.Schedule(func)
    t, err = m.measure(sch)
    assert math.isfinite(t) and err is None
    m.reference[0] = m.reference[0] + 1.0  # pretend the answer were different
    t, err = m.measure(sch)
    assert t == math.inf and "wrong result in C" in err

    import mlc.tune.measure as measure

    def broken(*a, **k):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(measure, "build", broken)
    t, err = m.measure(sch)
    assert t == math.inf and "build failed" in err and "no compiler today" in err


def test_all_candidates_failing_is_a_clear_error(monkeypatch):
    import mlc.tune.search as search

    class Wrong(Measurer):
        def check(self):
            return "wrong result in C: forced"

    monkeypatch.setattr(search, "Measurer", Wrong)
    with pytest.raises(RuntimeError, match=r"none of \d+ candidates ran.*forced"):
        tune(matmul(), target="python", trials=2, strategy="random", progress=False,
             repeat=1)


def test_tune_on_cpu_target():
    func = matmul(32, 32, 32)
    res = tune(func, target="cpu", trials=6, strategy="evolutionary", seed=0,
               progress=True, population=3, batch=2, repeat=2)
    check_result(res, func, "cpu", 6)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(target="tpu"), ValueError, "unknown target"),
    (dict(strategy="annealing"), ValueError, "unknown strategy"),
    (dict(trials=0), ValueError, "trials"),
    (dict(trials=2.5), ValueError, "trials"),
    (dict(cost_model="xgb"), ValueError, "cost model"),
    (dict(explore=2.0), ValueError, "explore"),
    (dict(target="cuda"), ValueError, "template"),
])
def test_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        tune(matmul(), **{"progress": False, **kw})
    with pytest.raises(TypeError, match="PrimFunc"):
        tune("matmul")


def test_cost_model_guided_search_beats_random_on_a_known_landscape(monkeypatch):
    """With a synthetic timer (seconds computed from the decisions, no builds), the
    evolutionary search must find a better program than random search for the same budget:
    the model has to learn the landscape from the features and steer toward its minimum."""
    import mlc.tune.search as search

    def seconds(decisions):
        (i0, i1, i2), (j0, j1, j2), (k0, k1), order, unroll, local, fuse = decisions
        return 1e-3 * 2.0 ** (abs(math.log2(j2) - 4) + abs(math.log2(i2) - 2) + (order != 1)
                              + abs(math.log2(k1) - 1) + (1 - unroll) + (1 - local))

    class Synthetic(Measurer):
        def __init__(self, func, target, **kw):
            self.func, self.target = func, target

        def measure(self, sch, best=math.inf):
            return seconds([d for _, d in sorted(sch.trace.decisions.items())]), None

    monkeypatch.setattr(search, "Measurer", Synthetic)
    func = matmul(32, 32, 64)
    wins = 0
    for seed in range(3):
        kw = dict(target="python", trials=24, seed=seed, progress=False)
        evo = tune(func, strategy="evolutionary", pool=64, population=8, batch=4, **kw)
        rnd = tune(func, strategy="random", **kw)
        wins += evo.time <= rnd.time
    assert wins == 3  # deterministic: seeded draws, synthetic times

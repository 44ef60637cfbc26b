"""The checks of unit 13 (parallelism and distribution).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: an allreduce that sends everything
to everyone, or reduces to rank 0 and broadcasts (right sums, P times the traffic), one
whose chunks only work when P divides n, one that calls the library; a sampler without
padding, with a per-rank seed, or with the same order every epoch; a 1F1B order that is
GPipe's or warms up one forward too many; an alpha-beta fit that is a plain least
squares on seconds (the megabyte points swamp alpha) or returns (beta, alpha). The
judges are also handed forged observations and must fail them cleanly.
"""

from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner

from mlc import dist
from mlc.grading.checks import parallelism
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester
from mlc.grading.source import Sources

ROOT = Path(__file__).resolve().parents[1]
IDS = ["parallelism.ring_allreduce", "parallelism.sampler", "parallelism.one_f_one_b",
       "parallelism.alpha_beta"]
POINTS = [3, 2, 2, 2]


# ---- the reference solutions (as in solutions/13_parallelism.ipynb) ------------------------

def ring_allreduce(comm, x, even_only=False):
    P, r = comm.size, comm.rank
    flat = np.array(x, copy=True).reshape(-1)
    n = flat.size
    edges = [i * (n // P) for i in range(P + 1)] if even_only else [i * n // P
                                                                     for i in range(P + 1)]

    def chunk(c):
        return slice(edges[c % P], edges[c % P + 1])

    right, left = (r + 1) % P, (r - 1) % P
    for s in range(P - 1):
        comm.send(flat[chunk(r - s)], right)
        flat[chunk(r - s - 1)] += comm.recv(left)
    for s in range(P - 1):
        comm.send(flat[chunk(r - s + 1)], right)
        flat[chunk(r - s)] = comm.recv(left)
    return flat.reshape(np.shape(x))


def everyone_to_everyone(comm, x):
    for peer in range(comm.size):
        if peer != comm.rank:
            comm.send(x, peer)
    return x + sum(comm.recv(p) for p in range(comm.size) if p != comm.rank)


def reduce_then_broadcast(comm, x):
    if comm.rank:
        comm.send(x, 0)
        return comm.recv(0)
    total = x + sum(comm.recv(p) for p in range(1, comm.size))
    for p in range(1, comm.size):
        comm.send(total, p)
    return total


def shard_indices(n, comm, epoch, seed=0, pad=True, per_rank_seed=False, reseed=True):
    rng = np.random.default_rng(seed + (epoch if reseed else 0)
                                + (1000 * comm.rank if per_rank_seed else 0))
    order = rng.permutation(n)
    if not pad:
        return np.array_split(order, comm.size)[comm.rank]
    per = -(-n // comm.size)
    return np.resize(order, per * comm.size)[comm.rank::comm.size]


def one_f_one_b(P, m, extra_warmup=0):
    out = []
    for s in range(P):
        warm = min(P - s - 1 + extra_warmup, m)
        order = [("F", i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", warm + i), ("B", i)]
        out.append(order + [("B", i) for i in range(m - warm, m)])
    return out


def fit_alpha_beta(nbytes, seconds, P, weighted=True):
    n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
    A = np.stack([np.full_like(n, 2 * (P - 1)), 2 * (P - 1) / P * n], axis=1)
    w = 1 / t if weighted else np.ones_like(t)
    (a, b), *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    return float(a), float(b)


REFERENCE = {"ring_allreduce": ring_allreduce, "shard_indices": shard_indices,
             "one_f_one_b": one_f_one_b, "fit_alpha_beta": fit_alpha_beta}
run, fails = check_runner(REFERENCE)


@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = run(ex_id)
    assert rec["score"] == rec["max_score"] == POINTS[IDS.index(ex_id)], rec


def test_ring_wrong_variants_fail_with_the_reason():
    fails("parallelism.ring_allreduce", "at most 2(P-1) ceil(n/P)", "sending all",
          ring_allreduce=everyone_to_everyone)
    fails("parallelism.ring_allreduce", "at most 2(P-1) ceil(n/P)",
          ring_allreduce=reduce_then_broadcast)
    fails("parallelism.ring_allreduce", "length-10", "has the sum",
          ring_allreduce=lambda c, x: ring_allreduce(c, x, even_only=True))
    fails("parallelism.ring_allreduce", "rank 0",
          ring_allreduce=lambda c, x: dist.allreduce(c, x))  # the grader's comm is no Communicator


def test_a_ring_that_deadlocks_fails_by_timeout_naming_the_rank():
    def waits_forever(comm, x):
        return comm.recv((comm.rank - 1) % comm.size)

    msg = fails("parallelism.ring_allreduce", "waited", ring_allreduce=waits_forever)
    assert "rank" in msg


def test_sampler_wrong_variants_fail():
    fails("parallelism.sampler", "ceil(n/P)",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, pad=False))
    fails("parallelism.sampler", "cover every example",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, per_rank_seed=True))
    fails("parallelism.sampler", "new epoch",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, reseed=False))


def test_one_f_one_b_wrong_variants_fail():
    fails("parallelism.one_f_one_b", "stage 0's order",
          one_f_one_b=lambda P, m: dist.schedule_order("gpipe", P, m))
    fails("parallelism.one_f_one_b", "stage 0's order",
          one_f_one_b=lambda P, m: one_f_one_b(P, m, extra_warmup=1))


def test_alpha_beta_wrong_variants_fail():
    fails("parallelism.alpha_beta", "5% noise: alpha",
          fit_alpha_beta=lambda n, t, P: fit_alpha_beta(n, t, P, weighted=False))
    fails("parallelism.alpha_beta", "alpha",
          fit_alpha_beta=lambda n, t, P: fit_alpha_beta(n, t, P)[::-1])


@pytest.mark.parametrize("ex_id,obs", [
    ("parallelism.ring_allreduce", None), ("parallelism.ring_allreduce", [{"out": 1}]),
    ("parallelism.ring_allreduce", [{"out": np.zeros(10), "elements": "x"}] * 2),
    ("parallelism.sampler", {"first": 1}), ("parallelism.sampler", [1, 2]),
    ("parallelism.one_f_one_b", "F0 B0"), ("parallelism.one_f_one_b", [[], []]),
    ("parallelism.alpha_beta", [1.0]), ("parallelism.alpha_beta", "x")])
def test_judges_fail_forged_observations_cleanly(ex_id, obs):
    ex = get(ex_id)
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


@pytest.mark.parametrize("cell", [
    "def ring_allreduce(comm, x):\n    return dist.allreduce(comm, x)",
    "def ring_allreduce(comm, x):\n    return comm._comm.native_allreduce(x)",
    "from mlc.dist import allreduce as ar\ndef ring_allreduce(comm, x):\n    return ar(comm, x)"])
def test_the_library_is_refused_in_the_source(cell):
    ex = get("parallelism.ring_allreduce")
    t = _Tester()
    try:
        ex.check.inspect(Sources(["import numpy as np", cell]), t)
        refused = False
    except CheckFailed as err:
        refused = "from the library" in str(err)
    # the alias case passes the source check but fails at run time: the grader's comm
    # is not a Communicator, so the library's collectives refuse it
    assert refused or "ar(" in cell
    ex.check.inspect(Sources(["def ring_allreduce(comm, x):\n    return x"]), _Tester())


def test_modules_stay_small():
    assert len(Path(parallelism.__file__).read_text().splitlines()) <= 400


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "13_parallelism.ipynb")
    assert (report.score, report.max_score) == (sum(POINTS), sum(POINTS)), [
        (r.id, r.message) for r in report.results]


def test_released_notebook_gets_zero(graded):
    report = graded(ROOT / "exercises" / "13_parallelism.ipynb")
    assert report.max_score == sum(POINTS) and report.score == 0, report.results
    assert all("not implemented" in r.message for r in report.results), [
        r.message for r in report.results]

"""The checks of unit 13 (parallelism and distribution).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: an allreduce that sends everything
to everyone, or reduces to rank 0 and broadcasts (right sums, P times the traffic), one
whose chunks only work when P divides n, one that swaps halves (right on 2 ranks only),
one that writes into x, returns it flat or in float32, exchanges chunks directly instead
of around the ring, sends one element per message, or reaches past the counting comm,
one that calls the library; a sampler without padding, padded with one index, with a
per-rank seed, that ignores the seed, never shuffles (a rotation per epoch), sorts its
shard or only shuffles its own block, or gives the same order every epoch; a 1F1B order
that is GPipe's, warms up one forward too many, forgets that m may be smaller than the
warm-up, or is a table of the visible answers; an alpha-beta fit that is a plain least
squares on seconds (the megabyte points swamp alpha), returns (beta, alpha), runs a line
through the smallest and largest sizes, or forgets the ring's 2(P-1)/P in front of beta.
The judges are also handed forged observations and must fail them cleanly.
"""

from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner

from mlc import dist
from mlc.grading.checks import parallelism
from mlc.grading.registry import CheckFailed, get, hidden_cases
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
        flat[chunk(r - s - 1)] += comm.sendrecv(flat[chunk(r - s)], right, left)
    for s in range(P - 1):
        flat[chunk(r - s)] = comm.sendrecv(flat[chunk(r - s + 1)], right, left)
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


def test_a_ring_that_sends_before_it_receives_hangs_on_the_large_case():
    # every rank sends first: fine while sends are buffered, a deadlock once a message is
    # above MPI's eager limit (the last case's chunks are ~107 KB)
    def send_then_recv(comm, x):
        return _ring(comm, x).reshape(np.shape(x))

    msg = fails("parallelism.ring_allreduce", "length-40000", "did not complete",
                "comm.sendrecv", ring_allreduce=send_then_recv)
    assert "eager limit" in msg, msg


def _ring(comm, x, flat=None, send=None, recv=None):
    """The reference's ring on ``flat`` (a copy of x by default), its messages through
    ``send(buf, dest)`` and ``recv(source)`` (the comm's own by default)."""
    P, r = comm.size, comm.rank
    flat = np.array(x, copy=True).reshape(-1) if flat is None else flat
    send, recv = send or comm.send, recv or comm.recv
    edges = [i * flat.size // P for i in range(P + 1)]

    def chunk(c):
        return slice(edges[c % P], edges[c % P + 1])

    for s in range(P - 1):
        send(flat[chunk(r - s)], (r + 1) % P)
        flat[chunk(r - s - 1)] += recv((r - 1) % P)
    for s in range(P - 1):
        send(flat[chunk(r - s + 1)], (r + 1) % P)
        flat[chunk(r - s)] = recv((r - 1) % P)
    return flat


def test_ring_that_writes_into_x_or_returns_it_flat_fails():
    fails("parallelism.ring_allreduce", "rank 0's x is left as it was", "copy x",
          ring_allreduce=lambda c, x: _ring(c, x, flat=x.reshape(-1)))
    fails("parallelism.ring_allreduce", "shape (3, 5)", "in x's shape",
          ring_allreduce=lambda c, x: _ring(c, x))


def test_ring_that_skips_the_ring_or_its_chunks_fails():
    def direct(comm, x):  # chunk p reduced on rank p, by direct sends: a ring's bytes, no ring
        P, r = comm.size, comm.rank
        flat = np.array(x, copy=True).reshape(-1)
        edges = [i * flat.size // P for i in range(P + 1)]
        mine = slice(edges[r], edges[r + 1])
        peers = [p for p in range(P) if p != r]
        for p in peers:
            comm.send(flat[edges[p]:edges[p + 1]], p)
        for p in peers:
            flat[mine] += comm.recv(p)
        for p in peers:
            comm.send(flat[mine], p)
        for p in peers:
            flat[edges[p]:edges[p + 1]] = comm.recv(p)
        return flat.reshape(np.shape(x))

    fails("parallelism.ring_allreduce", "3 ranks", "sends only to one ring neighbour",
          "sent to ranks [1, 2]", ring_allreduce=direct)

    def one_element_per_message(comm, x):
        def send(buf, dest):
            for v in buf:
                comm.send(np.array([v]), dest)

        def recv(source):  # as many messages as the chunk has elements, known from n
            return np.array([comm.recv(source)[0] for _ in range(pending.pop(0))])

        P, r, n = comm.size, comm.rank, np.size(x)
        edges = [i * n // P for i in range(P + 1)]
        pending = [edges[(r - s - 1) % P + 1] - edges[(r - s - 1) % P] for s in range(P - 1)]
        pending += [edges[(r - s) % P + 1] - edges[(r - s) % P] for s in range(P - 1)]
        return _ring(comm, x, send=send, recv=recv).reshape(np.shape(x))

    fails("parallelism.ring_allreduce", "at most 2(P-1) = 2 messages", "latency",
          ring_allreduce=one_element_per_message)

    def swap_halves(comm, x):  # a ring of two: right for P = 2 only
        r, P = comm.rank, comm.size
        flat = np.array(x, copy=True).reshape(-1)
        h = flat.size // 2
        mine, other = (slice(0, h), slice(h, None))[::1 if r == 0 else -1]
        comm.send(flat[other], (r + 1) % P)
        flat[mine] += comm.recv((r - 1) % P)
        comm.send(flat[mine], (r + 1) % P)
        flat[other] = comm.recv((r - 1) % P)
        return flat.reshape(np.shape(x))

    assert run("parallelism.ring_allreduce", ring_allreduce=swap_halves)["message"].startswith(
        "ring_allreduce on 3 ranks")
    fails("parallelism.ring_allreduce", "has the sum", ring_allreduce=swap_halves)


def test_ring_that_reaches_past_the_counting_comm_gains_nothing():
    def inner_comm(comm, x):
        inner = comm._comm  # the counted comm keeps its communicator out of reach
        return x + sum(inner.recv(p) for p in range(comm.size) if p != comm.rank)

    fails("parallelism.ring_allreduce", "AttributeError", ring_allreduce=inner_comm)

    def resets_the_count(comm, x):
        out = everyone_to_everyone(comm, x)
        comm.elements_sent = comm.messages_sent = 0
        return out

    fails("parallelism.ring_allreduce", "at most 2(P-1) ceil(n/P)",
          ring_allreduce=resets_the_count)


def test_sampler_wrong_variants_fail():
    fails("parallelism.sampler", "ceil(n/P)",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, pad=False))
    fails("parallelism.sampler", "cover every example",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, per_rank_seed=True))
    fails("parallelism.sampler", "new epoch",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, s, reseed=False))


def test_sampler_that_ignores_the_seed_or_never_shuffles_fails():
    fails("parallelism.sampler", "a new seed gives a new order",
          shard_indices=lambda n, c, e, s=0: shard_indices(n, c, e, 0))

    def rotation(n, comm, epoch, seed=0):  # a new order each epoch, never a shuffled one
        per = -(-n // comm.size)
        order = np.roll(np.arange(n), epoch + seed)
        return np.resize(order, per * comm.size)[comm.rank::comm.size]

    fails("parallelism.sampler", "shuffled order", "1 of its 33", shard_indices=rotation)
    fails("parallelism.sampler", "rank 0's shard comes in shuffled order", "0 of its 33",
          shard_indices=lambda n, c, e, s=0: np.sort(shard_indices(n, c, e, s)))


def test_sampler_that_shuffles_only_within_each_ranks_block_fails():
    def local_shuffle(n, comm, epoch, seed=0):  # each rank keeps its block of range(n)
        per = -(-n // comm.size)
        block = np.resize(np.arange(n), per * comm.size)[comm.rank * per:(comm.rank + 1) * per]
        return np.random.default_rng([seed, epoch, comm.rank]).permutation(block)

    fails("parallelism.sampler", "rank 0 trains on other examples in the next epoch",
          shard_indices=local_shuffle)


def test_float32_ring_fails():
    fails("parallelism.ring_allreduce", "rank 0 has the sum",
          ring_allreduce=lambda c, x: _ring(c, np.asarray(x, np.float32)))


def test_sampler_padding_with_one_index_fails():
    def pad_with_zeros(n, comm, epoch, seed=0):
        order = np.random.default_rng(seed + epoch).permutation(n)
        per = -(-n // comm.size)
        order = np.concatenate([order, np.zeros(per * comm.size - n, dtype=int)])
        return order[comm.rank::comm.size]

    fails("parallelism.sampler", "repeats examples evenly", "3 times",
          shard_indices=pad_with_zeros)


def test_one_f_one_b_wrong_variants_fail():
    fails("parallelism.one_f_one_b", "stage 0's order",
          one_f_one_b=lambda P, m: dist.schedule_order("gpipe", P, m))
    fails("parallelism.one_f_one_b", "stage 0's order",
          one_f_one_b=lambda P, m: one_f_one_b(P, m, extra_warmup=1))

    def warm_up_past_m(P, m):  # P-s-1 warm-up forwards even when m is smaller
        out = []
        for s in range(P):
            warm = P - s - 1
            order = [("F", i) for i in range(warm)]
            for i in range(m - warm):
                order += [("F", warm + i), ("B", i)]
            out.append(order + [("B", i) for i in range(max(m - warm, 0), m)])
        return out

    fails("parallelism.one_f_one_b", "one_f_one_b(P=4, m=2): stage 0's order",
          one_f_one_b=warm_up_past_m)


def test_one_f_one_b_as_a_table_of_the_visible_answers_fails():
    seen = {(P, m): one_f_one_b(P, m) for P, m in [(2, 4), (4, 8), (4, 2), (1, 3), (3, 3),
                                                   (5, 7)]}
    with hidden_cases(20261206):
        fails("parallelism.one_f_one_b", "KeyError", one_f_one_b=lambda P, m: seen[(P, m)])


def test_hidden_one_f_one_b_shapes_come_from_the_graders_seed():
    def shapes():
        return [(c["P"], c["m"]) for c in get("parallelism.one_f_one_b").check.cases()]

    with hidden_cases(1):
        first = shapes()
    with hidden_cases(2):
        second = shapes()
    assert first[:6] == second[:6] and first[6:] != second[6:]


def test_alpha_beta_wrong_variants_fail():
    fails("parallelism.alpha_beta", "5% noise: alpha",
          fit_alpha_beta=lambda n, t, P: fit_alpha_beta(n, t, P, weighted=False))
    fails("parallelism.alpha_beta", "alpha",
          fit_alpha_beta=lambda n, t, P: fit_alpha_beta(n, t, P)[::-1])


def test_alpha_beta_through_two_points_or_with_the_wrong_model_fails():
    def two_points(nbytes, seconds, P):  # exact on exact timings, no least squares
        n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
        lo, hi = int(np.argmin(n)), int(np.argmax(n))
        A = np.array([[2 * (P - 1), 2 * (P - 1) / P * n[i]] for i in (lo, hi)])
        return tuple(float(v) for v in np.linalg.solve(A, [t[lo], t[hi]]))

    fails("parallelism.alpha_beta", "each size timed 4 times",
          "relative error is within 10% of the least possible", fit_alpha_beta=two_points)

    def beta_per_byte_sent(nbytes, seconds, P):  # t = 2(P-1) alpha + n beta: the ring's
        n, t = np.asarray(nbytes, float), np.asarray(seconds, float)  # 2(P-1)/P forgotten
        A = np.stack([np.full_like(n, 2 * (P - 1)), n], axis=1)
        (a, b), *_ = np.linalg.lstsq(A / t[:, None], np.ones_like(t), rcond=None)
        return float(a), float(b)

    fails("parallelism.alpha_beta", "0% noise: beta", fit_alpha_beta=beta_per_byte_sent)


def test_alpha_beta_fits_of_the_relative_error_all_pass():
    def normal_equations(nbytes, seconds, P):
        n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
        A = np.stack([np.full_like(n, 2 * (P - 1)), 2 * (P - 1) / P * n], axis=1)
        W = np.diag(1 / t ** 2)
        return tuple(float(v) for v in np.linalg.solve(A.T @ W @ A, A.T @ W @ t))

    def relative_to_the_model(nbytes, seconds, P):  # reweighted by the prediction
        n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
        A = np.stack([np.full_like(n, 2 * (P - 1)), 2 * (P - 1) / P * n], axis=1)
        w = 1 / t
        for _ in range(10):
            x = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)[0]
            w = 1 / (A @ x)
        return float(x[0]), float(x[1])

    for fit in (normal_equations, relative_to_the_model):
        assert run("parallelism.alpha_beta", fit_alpha_beta=fit)["score"] == 2


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

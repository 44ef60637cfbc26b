"""Unit 13, parallelism and distribution: a ring allreduce, a sampler, the 1F1B order and
the alpha-beta fit.

* ``parallelism.ring_allreduce``: ``ring_allreduce(comm, x)`` run on ``dist.local`` ranks
  (threads of the worker: graded code starts no processes) for lengths that P divides
  and lengths it does not (and shorter than P), and for a 2-D ``x``. The comm handed over
  has only ``rank``, ``size``, ``send``, ``recv`` and ``sendrecv``, and counts what each
  rank sends and to whom: every rank must end with the sum in ``x``'s shape, leave ``x``
  as it was, and have sent at most ``2 (P-1) ceil(n/P)`` elements (the ring's 2(P-1)/P of
  the data, not the (P-1) n of sending everything to everyone) in at most ``2 (P-1)``
  messages (one chunk per step: an element per message pays the latency n times), all to
  one ring neighbour (a direct exchange of chunks sends as many bytes, but is no ring).
* ``parallelism.sampler``: ``shard_indices(n, comm, epoch, seed)`` on each rank of a
  ``dist.local`` group, judged by properties: equal shard lengths ceil(n/P), together
  covering every example, repeats only as padding (no example more than
  ceil(P ceil(n/P) / n) times), the same on a second call, a new order in a new epoch and
  under a new seed, and shuffled (a long shard is not sorted: a rotation of range(n) or a
  sorted shard has almost no descents, a shuffled one about half) as a whole (a long
  shard holds other examples in the next epoch, not its own block reshuffled).
* ``parallelism.one_f_one_b``: ``one_f_one_b(P, m)``, each stage's order of forwards and
  backwards, against the grader's own 1F1B order (P-s-1 warm-up forwards on stage s), on
  the visible shapes and hidden ones (a table of the visible answers scores nothing).
* ``parallelism.alpha_beta``: ``fit_alpha_beta(nbytes, seconds, P)`` on timings the
  grader makes from a known alpha and beta: exact ones must give them back, noisy ones
  (8 B to 64 MB, 5% noise) must give them within 20%, which a plain least squares on
  seconds cannot (the 64 MB points swamp alpha). On every noisy case (one a sweep timed four
  times) the fit's relative error must be within 10% of the least the model allows (the
  grader's own weighted fit): a line through two of the points (the smallest and the
  largest size) skips the least squares and misses it. Two more cases, exact and noisy,
  have P, alpha and beta drawn from the grader's hidden seed.

None of the four may call the library's own (``mlc.dist``'s collectives, ``schedule_order``,
``fit_alpha_beta``, ``DistributedSampler``): :func:`_not_the_library` reads the source.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need

NB = "13_parallelism"
EAGER = 64 * 1024  # bytes: a larger message is sent by rendezvous (MPICH's switch is near here)
LIBRARY = {"allreduce", "reduce_scatter", "allgather", "broadcast", "native_allreduce",
           "native_allgather", "native_broadcast", "exchange", "schedule_order",
           "fit_alpha_beta", "DistributedSampler", "lstsq_alpha_beta", "Allreduce"}


def _not_the_library(src, t, name: str, allowed: set[str] = frozenset()) -> None:
    d = src.definition(name)
    used = sorted((d.names() & LIBRARY) - allowed - {name}) if d is not None else []
    t.true(not used, f"{name} is written with your own code",
           f"it uses {', '.join(used)} from the library: the exercise is to build it")


class SendRecvOnly:
    """What a student's ring gets: a rank's number, the group's size, and messages.

    ``tally`` counts the elements and messages this rank sends and the ranks it sends to.
    The rank's real communicator and the tally live in the methods' closure, not in
    attributes: ``comm._comm.send`` would bypass the count, ``comm.elements_sent = 0``
    reset it."""

    def __init__(self, comm, tally: dict):
        self.rank, self.size = comm.rank, comm.size
        tally.update(elements=0, messages=0, dests=set())

        def isend(buf, dest, tag=0):
            arr = np.asarray(buf)
            tally["elements"] += int(arr.size)
            tally["messages"] += 1
            tally["dests"].add(int(dest) if isinstance(dest, (int, np.integer)) else -1)
            return comm.isend(arr, dest, tag)

        def send(buf, dest, tag=0):
            isend(buf, dest, tag)()

        def recv(source, tag=0, out=None):
            return comm.recv(source, tag, out)

        def sendrecv(sendbuf, dest, source, tag=0, out=None):
            done = isend(sendbuf, dest, tag)
            got = recv(source, tag, out)
            done()
            return got

        self.send, self.isend, self.recv, self.sendrecv = send, isend, recv, sendrecv


@exercise("parallelism.ring_allreduce", points=3, notebook=NB, needs=("ring_allreduce",),
          timeout=60,
          hint="two phases of P-1 steps each: pass one chunk to the right and add (or keep) "
               "the chunk from the left; with n not a multiple of P the chunks differ in size",
          rebuilds=("mlc.dist.collectives:allreduce",))
class _Ring(Check):
    def cases(self):
        out = []
        for P, shape in [(2, (10,)), (3, (10,)), (4, (13,)), (4, (3,)), (3, (1000,)),
                         (4, (64,)), (1, (5,)), (4, (3, 5)), (3, (40_000,))]:
            rng = np.random.default_rng(P * 1000 + math.prod(shape))
            xs = [rng.standard_normal(shape) for _ in range(P)]
            what = (f"a length-{shape[0]} vector" if len(shape) == 1
                    else f"an array of shape {shape}")
            out.append({"what": f"ring_allreduce on {P} ranks of {what}", "P": P, "xs": xs})
        return out

    def observe(self, ns, case):
        from mlc import dist

        fn = need(ns, "ring_allreduce")
        xs = case["xs"]

        def rank(comm):
            tally = {}
            x = xs[comm.rank].copy()
            got = fn(SendRecvOnly(comm, tally), x)
            return {"out": np.asarray(got, dtype=np.float64), "elements": tally["elements"],
                    "messages": tally["messages"], "dests": sorted(tally["dests"]),
                    "x_kept": bool(np.array_equal(x, xs[comm.rank]))}

        # a send above 64 KiB waits for its receiver, as MPI's large messages do, so a ring
        # that relies on buffered sends deadlocks on the last case as it would on a cluster
        return call(case["what"], dist.local(case["P"], timeout=5, eager_limit=EAGER).run,
                    rank)

    def judge(self, case, obs, t):
        P, xs, what = case["P"], case["xs"], case["what"]
        n = xs[0].size
        if not isinstance(obs, list) or len(obs) != P or not all(isinstance(o, dict)
                                                                 for o in obs):
            raise CheckFailed(f"{what}: malformed observation")
        total = np.sum(xs, axis=0)
        for r, o in enumerate(obs):
            t.close(o.get("out"), total, f"{what}: rank {r} has the sum, in x's shape",
                    rtol=1e-9, atol=1e-9)
            t.true(o.get("x_kept"), f"{what}: rank {r}'s x is left as it was",
                   "the result went into the caller's array: copy x before reducing into it")
        limit = 2 * (P - 1) * math.ceil(n / P)
        sent = [o.get("elements") for o in obs]
        worst = max(range(P), key=lambda r: sent[r] if isinstance(sent[r], int) else 1 << 60)
        t.true(all(isinstance(s, int) and s <= limit for s in sent),
               f"{what}: each rank sends at most 2(P-1) ceil(n/P) = {limit} elements",
               f"rank {worst} sent {sent[worst]}; sending all {n} to each peer is "
               f"{(P - 1) * n}")
        msgs = [o.get("messages") for o in obs]
        t.true(all(isinstance(k, int) and k <= 2 * (P - 1) for k in msgs),
               f"{what}: each rank sends at most 2(P-1) = {2 * (P - 1)} messages",
               f"the ranks sent {msgs} messages: every message pays the network's latency, "
               "so a ring step sends its whole chunk in one")
        for r, o in enumerate(obs):
            dests = o.get("dests")
            t.true(isinstance(dests, list) and len(dests) <= 1
                   and set(dests) <= {(r + 1) % P, (r - 1) % P},
                   f"{what}: rank {r} sends only to one ring neighbour",
                   f"it sent to ranks {dests}: in a ring every rank passes its chunk to the "
                   "next rank, which adds it and passes it on")

    def inspect(self, src, t):
        _not_the_library(src, t, "ring_allreduce")


@exercise("parallelism.sampler", points=2, notebook=NB, needs=("shard_indices",),
          hint="every rank must draw the same permutation (seed it from seed and epoch), "
               "then take its own share; pad so that every rank gets the same count",
          rebuilds=("mlc.dist.data_parallel:DistributedSampler",))
class _Sampler(Check):
    def cases(self):
        return [{"what": f"shard_indices({n}, comm, epoch={e}, seed={s}) on {P} ranks",
                 "n": n, "P": P, "epoch": e, "seed": s}
                for n, P, e, s in [(10, 3, 0, 1), (12, 4, 2, 0), (7, 2, 1, 5), (3, 4, 0, 0),
                                   (100, 3, 3, 7)]]

    def observe(self, ns, case):
        from mlc import dist

        fn = need(ns, "shard_indices")
        n, e, s = case["n"], case["epoch"], case["seed"]
        with dist.local(case["P"]) as comms:
            def shards(epoch, seed=s):
                return [[int(i) for i in call(case["what"], fn, n, c, epoch, seed)]
                        for c in comms]
            return {"first": shards(e), "again": shards(e), "next": shards(e + 1),
                    "other_seed": shards(e, s + 1)}

    def judge(self, case, obs, t):
        n, P, what = case["n"], case["P"], case["what"]
        if not isinstance(obs, dict) or not all(
                isinstance(obs.get(k), list) and len(obs[k]) == P
                for k in ("first", "again", "next", "other_seed")):
            raise CheckFailed(f"{what}: malformed observation")
        per = math.ceil(n / P)
        most = math.ceil(per * P / n) if n else 0
        for k in ("first", "next"):
            shards = obs[k]
            t.true(all(isinstance(sh, list) and len(sh) == per for sh in shards),
                   f"{what}: every rank gets ceil(n/P) = {per} indices",
                   f"got {[len(sh) if isinstance(sh, list) else sh for sh in shards]}")
            flat = [i for sh in shards for i in sh]
            t.true(all(isinstance(i, int) and 0 <= i < n for i in flat),
                   f"{what}: indices are in range(n)")
            t.equal(sorted(set(flat)), list(range(n)),
                    f"{what}: the shards together cover every example")
            repeats = max((flat.count(i) for i in set(flat)), default=0)
            t.true(repeats <= most,
                   f"{what}: the padding repeats examples evenly (none more than "
                   f"{most} times)",
                   f"one example comes {repeats} times: pad by repeating the first "
                   "indices of the shuffled order, not one index over and over")
        t.equal(obs["again"], obs["first"], f"{what}: the same call gives the same shards")
        if n >= 7:
            t.true(obs["next"] != obs["first"], f"{what}: a new epoch gives a new order")
            t.true(obs["other_seed"] != obs["first"], f"{what}: a new seed gives a new order",
                   "the order must depend on the seed as well as the epoch")
        if per >= 20:  # a random order of k has (k-1)/2 descents, give or take sqrt(k/12)
            for r, sh in enumerate(obs["first"]):
                down = sum(a > b for a, b in zip(sh[:-1], sh[1:], strict=True))
                t.true(0.25 * (per - 1) <= down <= 0.75 * (per - 1),
                       f"{what}: rank {r}'s shard comes in shuffled order",
                       f"{down} of its {per - 1} neighbouring pairs go down, where a "
                       "shuffled order has about half: shuffle the whole order (one "
                       "permutation per epoch), then cut it")
                # a shard of a fresh permutation keeps its examples with odds ~ 1/C(n, per)
                t.true(set(sh) != set(obs["next"][r]),
                       f"{what}: rank {r} trains on other examples in the next epoch",
                       "its shard holds the same examples, only reordered: shuffle all n "
                       "indices together, so that every rank sees a new share each epoch")

    def inspect(self, src, t):
        _not_the_library(src, t, "shard_indices")


def reference_1f1b(P: int, m: int) -> list[list[list]]:
    out = []
    for s in range(P):
        warm = min(P - s - 1, m)
        order = [["F", i] for i in range(warm)]
        for i in range(m - warm):
            order += [["F", warm + i], ["B", i]]
        out.append(order + [["B", i] for i in range(m - warm, m)])
    return out


@exercise("parallelism.one_f_one_b", points=2, notebook=NB, needs=("one_f_one_b",),
          hint="stage s first runs as many forwards as there are stages after it, then "
               "alternates; a backward can only run after its own forward",
          rebuilds=("mlc.dist.pipeline:schedule_order",))
class _OneFOneB(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(1301))
        hidden = [(int(rng.integers(2, 8)), int(rng.integers(1, 12))) for _ in range(3)]
        return [{"what": f"one_f_one_b(P={P}, m={m})", "P": P, "m": m}
                for P, m in [(2, 4), (4, 8), (4, 2), (1, 3), (3, 3), (5, 7), *hidden]]

    def observe(self, ns, case):
        got = call(case["what"], need(ns, "one_f_one_b"), case["P"], case["m"])
        try:
            return [[[str(k), int(i)] for k, i in stage] for stage in got]
        except (TypeError, ValueError):
            raise CheckFailed(f"{case['what']}: expected a list per stage of (kind, "
                              f"micro_batch) pairs, got {type(got).__name__}") from None

    def judge(self, case, obs, t):
        want = reference_1f1b(case["P"], case["m"])
        if not isinstance(obs, list) or len(obs) != case["P"]:
            raise CheckFailed(f"{case['what']}: expected {case['P']} stages' orders")
        for s, (got, exp) in enumerate(zip(obs, want, strict=True)):
            t.equal(got, exp, f"{case['what']}: stage {s}'s order")

    def inspect(self, src, t):
        _not_the_library(src, t, "one_f_one_b")


@exercise("parallelism.alpha_beta", points=2, notebook=NB, needs=("fit_alpha_beta",),
          hint="t = 2(P-1) alpha + 2(P-1)/P n beta is linear in alpha and beta; with sizes "
               "from bytes to megabytes, ask which error the fit should make small",
          rebuilds=("mlc.dist.cost:fit_alpha_beta",))
class _AlphaBeta(Check):
    def cases(self):
        out = []
        sizes = [8 * 4 ** k for k in range(13)]  # 8 B .. 128 MB
        rng = np.random.default_rng(hidden_seed(1302))
        hidden = [(int(rng.integers(2, 9)), float(10 ** rng.uniform(-6, -4.5)),
                   float(10 ** rng.uniform(-11, -9)), noise, repeats, int(rng.integers(1 << 30)))
                  for noise, repeats in [(0.0, 1), (0.05, 4)]]
        for P, alpha, beta, noise, repeats, seed in [
                (2, 5e-6, 2e-10, 0.0, 1, 52), (4, 2e-5, 1e-9, 0.0, 1, 204),
                (4, 3e-6, 5e-11, 0.05, 1, 34), (2, 1e-5, 4e-10, 0.05, 1, 102),
                (3, 8e-6, 3e-10, 0.05, 4, 83), *hidden]:
            rng = np.random.default_rng(seed)
            n = np.array(sizes * repeats, dtype=np.float64)  # the sweep, timed `repeats` times
            exact = 2 * (P - 1) * alpha + 2 * (P - 1) / P * n * beta
            times = exact * (1 + noise * rng.standard_normal(n.size))
            timed = f", each size timed {repeats} times" if repeats > 1 else ""
            out.append({"what": f"fit_alpha_beta on {P} ranks, alpha={alpha:.3g}, "
                                f"beta={beta:.3g}, {noise:.0%} noise{timed}",
                        "sizes": [int(v) for v in n], "times": times.tolist(), "P": P,
                        "_alpha": alpha, "_beta": beta, "_noise": noise})
        return out

    def observe(self, ns, case):
        got = call(case["what"], need(ns, "fit_alpha_beta"), list(case["sizes"]),
                   list(case["times"]), case["P"])
        try:
            a, b = got
            return [float(a), float(b)]
        except (TypeError, ValueError):
            raise CheckFailed(f"{case['what']}: expected (alpha, beta), got "
                              f"{type(got).__name__}") from None

    def judge(self, case, obs, t):
        if not (isinstance(obs, list) and len(obs) == 2):
            raise CheckFailed(f"{case['what']}: malformed observation")
        what, noise = case["what"], case["_noise"]
        rtol = 1e-6 if noise == 0 else 0.2
        t.close(obs[0], case["_alpha"], f"{what}: alpha", rtol=rtol, atol=0)
        t.close(obs[1], case["_beta"], f"{what}: beta", rtol=rtol, atol=0)
        if noise:  # the weighted fit's own error at 5% noise stays under 12% (3000 draws)
            best = _relative_error(case, _weighted_fit(case))
            got = _relative_error(case, obs)
            t.true(got <= 1.1 * best,
                   f"{what}: the fit's relative error is within 10% of the least possible "
                   f"({best:.3f})",
                   f"yours is {got:.3g}: a fit through a few of the points, or one that "
                   "weighs the errors of the big transfers most, is not the least squares "
                   "of the relative errors over all of them")

    def inspect(self, src, t):
        _not_the_library(src, t, "fit_alpha_beta")


def _ring_model(case) -> tuple[np.ndarray, np.ndarray]:
    """The alpha-beta model's matrix (a column for alpha, one for beta) and the times."""
    P, n = case["P"], np.asarray(case["sizes"], dtype=np.float64)
    return (np.stack([np.full_like(n, 2 * (P - 1)), 2 * (P - 1) / P * n], axis=1),
            np.asarray(case["times"], dtype=np.float64))


def _weighted_fit(case) -> np.ndarray:
    """The least squares of relative errors: each row divided by its own time."""
    A, t = _ring_model(case)
    return np.linalg.lstsq(A / t[:, None], np.ones_like(t), rcond=None)[0]


def _relative_error(case, ab) -> float:
    """The root mean square of (model - measured) / measured."""
    A, t = _ring_model(case)
    return float(np.sqrt(np.mean((A @ np.asarray(ab, dtype=np.float64) / t - 1) ** 2)))

"""Unit 13, parallelism and distribution: a ring allreduce, a sampler, the 1F1B order and
the alpha-beta fit.

* ``parallelism.ring_allreduce``: ``ring_allreduce(comm, x)`` run on ``dist.local`` ranks
  (threads of the worker: graded code starts no processes) for lengths that P divides
  and lengths it does not (and shorter than P). The comm handed over has only ``rank``,
  ``size``, ``send``, ``recv`` and ``sendrecv``, and counts what each rank sends: every
  rank must end with the sum and have sent at most ``2 (P-1) ceil(n/P)`` elements (the
  ring's 2(P-1)/P of the data), not the (P-1) n of sending everything to everyone.
* ``parallelism.sampler``: ``shard_indices(n, comm, epoch, seed)`` on each rank of a
  ``dist.local`` group, judged by properties: equal shard lengths ceil(n/P), together
  covering every example, repeats only as padding, the same on a second call, a new
  order in a new epoch.
* ``parallelism.one_f_one_b``: ``one_f_one_b(P, m)``, each stage's order of forwards and
  backwards, against the grader's own 1F1B order (P-s-1 warm-up forwards on stage s).
* ``parallelism.alpha_beta``: ``fit_alpha_beta(nbytes, seconds, P)`` on timings the
  grader makes from a known alpha and beta: exact ones must give them back, noisy ones
  (8 B to 64 MB, 5% noise) must give them within 20%, which a plain least squares on
  seconds cannot (the 64 MB points swamp alpha).

None of the four may call the library's own (``mlc.dist``'s collectives, ``schedule_order``,
``fit_alpha_beta``, ``DistributedSampler``): :func:`_not_the_library` reads the source.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need

NB = "13_parallelism"
LIBRARY = {"allreduce", "reduce_scatter", "allgather", "broadcast", "native_allreduce",
           "native_allgather", "native_broadcast", "exchange", "schedule_order",
           "fit_alpha_beta", "DistributedSampler", "lstsq_alpha_beta", "Allreduce"}


def _not_the_library(src, t, name: str, allowed: set[str] = frozenset()) -> None:
    d = src.definition(name)
    used = sorted((d.names() & LIBRARY) - allowed - {name}) if d is not None else []
    t.true(not used, f"{name} is written with your own code",
           f"it uses {', '.join(used)} from the library: the exercise is to build it")


class SendRecvOnly:
    """What a student's ring gets: a rank's number, the group's size, and messages. It
    counts the elements and messages this rank sends."""

    def __init__(self, comm):
        self._comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.elements_sent = self.messages_sent = 0

    def send(self, buf, dest, tag=0):
        arr = np.asarray(buf)
        self.elements_sent += int(arr.size)
        self.messages_sent += 1
        self._comm.send(arr, dest, tag)

    def recv(self, source, tag=0, out=None):
        return self._comm.recv(source, tag, out)

    def sendrecv(self, sendbuf, dest, source, tag=0, out=None):
        self.send(sendbuf, dest, tag)
        return self.recv(source, tag, out)


@exercise("parallelism.ring_allreduce", points=3, notebook=NB, needs=("ring_allreduce",),
          timeout=60,
          hint="two phases of P-1 steps each: pass one chunk to the right and add (or keep) "
               "the chunk from the left; with n not a multiple of P the chunks differ in size",
          rebuilds=("mlc.dist.collectives:allreduce",))
class _Ring(Check):
    def cases(self):
        out = []
        for P, n in [(2, 10), (3, 10), (4, 13), (4, 3), (3, 1000), (4, 64), (1, 5)]:
            rng = np.random.default_rng(P * 1000 + n)
            xs = [rng.standard_normal(n) for _ in range(P)]
            out.append({"what": f"ring_allreduce on {P} ranks of a length-{n} vector",
                        "P": P, "xs": xs})
        return out

    def observe(self, ns, case):
        from mlc import dist

        fn = need(ns, "ring_allreduce")
        xs = case["xs"]

        def rank(comm):
            c = SendRecvOnly(comm)
            x = xs[comm.rank].copy()
            got = fn(c, x)
            return {"out": np.asarray(got, dtype=np.float64), "elements": c.elements_sent,
                    "messages": c.messages_sent}

        return call(case["what"], dist.local(case["P"], timeout=5).run, rank)

    def judge(self, case, obs, t):
        P, xs = case["P"], case["xs"]
        n = xs[0].size
        if not isinstance(obs, list) or len(obs) != P or not all(isinstance(o, dict)
                                                                 for o in obs):
            raise CheckFailed(f"{case['what']}: malformed observation")
        total = np.sum(xs, axis=0)
        for r, o in enumerate(obs):
            t.close(o.get("out"), total, f"{case['what']}: rank {r} has the sum",
                    rtol=1e-9, atol=1e-9)
        limit = 2 * (P - 1) * math.ceil(n / P)
        sent = [o.get("elements") for o in obs]
        worst = max(range(P), key=lambda r: sent[r] if isinstance(sent[r], int) else 1 << 60)
        t.true(all(isinstance(s, int) and s <= limit for s in sent),
               f"{case['what']}: each rank sends at most 2(P-1) ceil(n/P) = {limit} elements",
               f"rank {worst} sent {sent[worst]}; sending all {n} to each peer is "
               f"{(P - 1) * n}")

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
            def shards(epoch):
                return [[int(i) for i in call(case["what"], fn, n, c, epoch, s)]
                        for c in comms]
            return {"first": shards(e), "again": shards(e), "next": shards(e + 1)}

    def judge(self, case, obs, t):
        n, P, what = case["n"], case["P"], case["what"]
        if not isinstance(obs, dict) or not all(
                isinstance(obs.get(k), list) and len(obs[k]) == P
                for k in ("first", "again", "next")):
            raise CheckFailed(f"{what}: malformed observation")
        per = math.ceil(n / P)
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
        t.equal(obs["again"], obs["first"], f"{what}: the same call gives the same shards")
        if n >= 7:
            order = [i for sh in obs["first"] for i in sh]
            t.true(obs["next"] != obs["first"], f"{what}: a new epoch gives a new order")
            t.true(order[:n] != list(range(n)) or n < 7, f"{what}: the order is shuffled")

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
        return [{"what": f"one_f_one_b(P={P}, m={m})", "P": P, "m": m}
                for P, m in [(2, 4), (4, 8), (4, 2), (1, 3), (3, 3), (5, 7)]]

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
        for P, alpha, beta, noise in [(2, 5e-6, 2e-10, 0.0), (4, 2e-5, 1e-9, 0.0),
                                      (4, 3e-6, 5e-11, 0.05), (2, 1e-5, 4e-10, 0.05)]:
            rng = np.random.default_rng(int(alpha * 1e7) + P)
            exact = np.array([2 * (P - 1) * alpha + 2 * (P - 1) / P * n * beta for n in sizes])
            times = exact * (1 + noise * rng.standard_normal(len(sizes)))
            out.append({"what": f"fit_alpha_beta on {P} ranks, alpha={alpha:g}, "
                                f"beta={beta:g}, {noise:.0%} noise",
                        "sizes": sizes, "times": times.tolist(), "P": P,
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
        rtol = 1e-6 if case["_noise"] == 0 else 0.2
        t.close(obs[0], case["_alpha"], f"{case['what']}: alpha", rtol=rtol, atol=0)
        t.close(obs[1], case["_beta"], f"{case['what']}: beta", rtol=rtol, atol=0)

    def inspect(self, src, t):
        _not_the_library(src, t, "fit_alpha_beta")

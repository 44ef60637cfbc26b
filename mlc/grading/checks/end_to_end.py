"""Unit 12, end to end: group-wise int4 packing and attention over a KV cache.

* ``end_to_end.int4_pack``: ``pack_int4(w, group_size)`` -> ``(packed, scales)`` and
  ``unpack_int4(packed, scales, group_size)`` -> the float weight they mean, bit for bit
  against ``mlc.quant.pack_weight`` (symmetric scale ``max|w| / 7`` per group of
  ``group_size`` input channels, codes in ``[-8, 7]``, two per byte, row ``2k`` in the low
  nibble). Cases have negative codes, an all-zero group (scale 1), shapes where a
  swapped nibble order or a scale per column gives other bytes, and a weight of exact
  halves (rounding half up or away from zero gives other codes); scales and the unpacked
  weight must be float32.
* ``end_to_end.kv_attention``: ``attend_cached(q, k, v, cache_k, cache_v, t)`` writes
  one token's key and value at position ``t`` of the caches and returns its attention
  over positions ``0..t``; judged against full recomputation, and the caches are
  :class:`CountingCache` wrappers that count what is read: each cached key and value at
  most once, nothing past ``t``. One step has scores in the thousands, where a softmax
  without its maximum subtracted overflows.
* ``end_to_end.bottleneck``: ``bottleneck(kernels, heavy)`` reads a profile (each
  kernel's ops and seconds) as ``mlc.deploy``'s report does: each kernel joins the group
  of the first ``heavy`` op it contains (else its first op), and the answer is the group
  with the most time and its share. Cases where the slowest single kernel is not in the
  slowest group, where a kernel's first op is not its heavy one, where a kernel holds two
  heavy ops in the other order than ``heavy``, and where kernels with no heavy op
  (transposes) take the most time.
* ``end_to_end.pipeline``: ``deploy_pipeline(model, example, stages)`` gets the stages of
  ``mlc.deploy`` as functions in a dict (in alphabetical order) and must call each once,
  in the order that deploys: trace, fold constants, CSE, dead code, fuse, lower, plan,
  compile. The stages log their calls and whether each was given what the one before it
  returned (a dropped pass result changes nothing on an MLP, so only the log shows it);
  the function returns what compile returned, which must give a hidden MLP's outputs.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, hidden_seed, need

NB = "12_end_to_end"


def _reference_pack(w, group_size):
    from mlc.quant import pack_weight

    gw = pack_weight(w, bits=4, group_size=group_size)
    return np.asarray(gw.codes).astype(np.int64), np.asarray(gw.scales, np.float32), gw


def _weights(rng, k, n, g):
    w = (rng.standard_normal((k, n)) * rng.uniform(0.1, 3.0, (k // g, 1, n)).repeat(
        g, axis=0).reshape(k, n)).astype(np.float32)
    w[:g, 0] = 0.0                      # an all-zero group: its scale is 1, not 0/7
    w[g - 1, -1] = -np.abs(w[:g, -1]).max() - 1.0  # a group whose extreme is negative
    return w


def _ties(rng):
    """A weight whose groups have scale 0.5 exactly (max |w| = 3.5) and entries at exact
    halves of it: ``rint`` sends each to the even code, rounding half up or away from zero
    does not (the visible weights are random, so their ties have probability 0)."""
    halves = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 4.5, -4.5, 5.5, -5.5])
    w = np.empty((8, 3), np.float32)
    for col in range(3):
        for group in (slice(0, 4), slice(4, 8)):
            w[group, col] = np.append(rng.choice(halves, 3, replace=False) * 0.5,
                                      rng.choice([3.5, -3.5]))
    return w


@exercise("end_to_end.int4_pack", points=2, notebook=NB, needs=("pack_int4", "unpack_int4"),
          hint="a group is group_size consecutive rows of one column; & 15 keeps a "
               "negative code's low four bits, and (c ^ 8) - 8 brings the sign back",
          rebuilds=("mlc.quant.weightonly:pack_weight",
                    "mlc.quant.weightonly:GroupWeight.dequantize"))
class _Int4(Check):
    def cases(self):
        out = []
        rng = np.random.default_rng(hidden_seed(1201))
        for k, n, g, seed in [(8, 3, 4, 0), (64, 5, 32, 1), (12, 2, 2, None),
                              (2 * int(rng.integers(2, 9)) * 4, int(rng.integers(1, 6)), 4,
                               None)]:
            r = np.random.default_rng(seed) if seed is not None else rng
            w = _weights(r, k, n, g)
            codes = r.integers(-8, 8, (k, n))
            codes[0, 0], codes[1, 0] = -8, 7
            packed = ((codes[0::2] & 15) | ((codes[1::2] & 15) << 4)).astype(np.uint8)
            scales = r.uniform(0.01, 2.0, (k // g, n)).astype(np.float32)
            out.append({"what": f"a {k} x {n} weight in groups of {g}", "w": w, "g": g,
                        "packed": packed, "scales": scales})
        ties = _ties(rng)
        out.append({**out[0], "what": "an 8 x 3 weight in groups of 4 whose w / scale are "
                    "exact halves (0.5, -2.5, ...), which go to the even code", "w": ties})
        return out

    def observe(self, ns, case):
        pack, unpack = need(ns, "pack_int4"), need(ns, "unpack_int4")
        got = call(f"pack_int4({case['what']})", pack, case["w"].copy(), case["g"])
        if not (isinstance(got, tuple) and len(got) == 2):
            raise CheckFailed(f"pack_int4({case['what']}) should return (packed, scales)")
        back = call(f"unpack_int4 of the grader's bytes ({case['what']})", unpack,
                    case["packed"].copy(), case["scales"].copy(), case["g"])
        return {"packed": np.asarray(got[0]), "scales": np.asarray(got[1]),
                "unpacked": np.asarray(back)}

    def judge(self, case, obs, t):
        from mlc.quant.weightonly import GroupWeight

        if not isinstance(obs, dict):
            raise CheckFailed(f"{case['what']}: malformed observation")
        codes, scales, _ = _reference_pack(case["w"], case["g"])
        packed = obs.get("packed")
        t.true(isinstance(packed, np.ndarray) and packed.dtype == np.uint8,
               f"pack_int4({case['what']}): the bytes are uint8",
               f"got {getattr(packed, 'dtype', type(packed).__name__)}")
        t.equal(packed.astype(np.int64), codes, f"pack_int4({case['what']}): the bytes")
        k, n = case["w"].shape
        ref = GroupWeight(case["packed"], case["scales"], 4, case["g"], k).dequantize()
        for key, want, what in (("scales", scales, f"pack_int4({case['what']}): the group "
                                 "scales"), ("unpacked", ref, f"unpack_int4({case['what']})")):
            got = obs.get(key)
            t.close(got, want, what, rtol=1e-6, atol=0)
            dtype = getattr(got, "dtype", None)
            t.true(dtype == np.float32, f"{what} are float32", f"got {dtype}: a "
                   "model stores its scales, and computes with its weights, in float32")


class CountingCache:
    """A cache the grader hands to ``attend_cached``: index it to read or write (``c[h,
    i]``, ``c[:, :t]``, ``c[:, t] = k``); it counts the elements each read returns.
    Converting the whole of it to an array is refused, since that would read every slot."""

    def __init__(self, arr):
        self._a = arr
        self.shape, self.dtype = arr.shape, arr.dtype
        self.reads = 0

    def __getitem__(self, idx):
        out = np.array(self._a[idx], copy=True)
        self.reads += out.size
        return out

    def __setitem__(self, idx, value):
        self._a[idx] = value

    def __array__(self, *args, **kwargs):
        raise TypeError("the cache cannot be turned into an array whole: index the "
                        "positions you need, e.g. cache_k[:, :t + 1]")

    def __len__(self):
        return self.shape[0]


def _attention(q, keys, values):
    s = np.einsum("hd,htd->ht", q.astype(np.float64), keys) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return np.einsum("ht,htd->hd", p / p.sum(axis=1, keepdims=True), values)


def _large_scores(rng) -> dict:
    """A step whose scores are in the thousands: exp of them overflows (float32 past 88,
    float64 past 709) unless each head's maximum is subtracted first. The query is a
    multiple of 8 and the keys small integers, so every score is exact in float32; the
    new key ties with cached position 1, so two positions share the weight."""
    H, T, D, t = 2, 6, 4, 4
    q = (8 * rng.integers(20, 31, (H, D)) * rng.choice([-1, 1], (H, D))).astype(np.float32)
    ck = rng.integers(-4, 5, (H, T, D)).astype(np.float32)
    k = 4 * np.sign(q)
    ck[:, 1], ck[:, t:] = k, 9.0
    cv = rng.standard_normal((H, T, D)).astype(np.float32)
    cv[:, t:] = 9.0
    return {"what": f"{H} heads, position {t} of a {T}-slot cache, d={D}, scores in the "
            "thousands", "q": q, "k": k, "v": rng.standard_normal((H, D)).astype(np.float32),
            "ck": ck, "cv": cv, "t": t}


@exercise("end_to_end.kv_attention", points=3, notebook=NB, needs=("attend_cached",),
          hint="write the new key and value at position t first, then read positions "
               "0..t of each cache once: scores, a stable softmax, the weighted sum",
          rebuilds=("mlc.models.gpt:KVCache.decode",))
class _KV(Check):
    def cases(self):
        out = []
        rng = np.random.default_rng(hidden_seed(1202))
        for H, T, D, t, seed in [(1, 4, 2, 0, 0), (2, 6, 4, 3, 1), (4, 11, 8, 10, 2),
                                 (int(rng.integers(1, 5)), 9, 4, int(rng.integers(1, 8)),
                                  None)]:
            r = np.random.default_rng(seed) if seed is not None else rng
            ck, cv = (r.standard_normal((H, T, D)).astype(np.float32) for _ in range(2))
            ck[:, t:] = cv[:, t:] = 9.0   # stale slots: reading them changes the answer
            q, k, v = (3 * r.standard_normal((H, D)).astype(np.float32) for _ in range(3))
            out.append({"what": f"{H} heads, position {t} of a {T}-slot cache, d={D}",
                        "q": q, "k": k, "v": v, "ck": ck, "cv": cv, "t": t})
        out.append(_large_scores(rng))
        return out

    def observe(self, ns, case):
        fn = need(ns, "attend_cached")
        ck, cv = CountingCache(case["ck"].copy()), CountingCache(case["cv"].copy())
        out = call(f"attend_cached({case['what']})", fn, case["q"].copy(), case["k"].copy(),
                   case["v"].copy(), ck, cv, case["t"])
        return {"out": np.asarray(out, dtype=np.float64), "ck": ck._a, "cv": cv._a,
                "reads": [ck.reads, cv.reads]}

    def judge(self, case, obs, t):
        if not isinstance(obs, dict):
            raise CheckFailed(f"{case['what']}: malformed observation")
        pos, (H, _, D) = case["t"], case["ck"].shape
        keys, values = case["ck"].astype(np.float64), case["cv"].astype(np.float64)
        keys[:, pos], values[:, pos] = case["k"], case["v"]
        out = obs.get("out")
        if isinstance(out, np.ndarray) and out.dtype.kind == "f" and not np.isfinite(out).all():
            t.fail(f"attend_cached({case['what']}): the result holds inf or nan: exp of a "
                   "score in the thousands overflows; subtract each head's largest score first")
        t.close(out, _attention(case["q"], keys[:, :pos + 1], values[:, :pos + 1]),
                f"attend_cached({case['what']}) equals attention recomputed in full",
                rtol=1e-4, atol=1e-5)
        t.close(obs.get("ck"), keys, f"{case['what']}: the key cache after the call "
                "(the new key at position t, the rest untouched)", rtol=0, atol=0)
        t.close(obs.get("cv"), values, f"{case['what']}: the value cache after the call",
                rtol=0, atol=0)
        reads, limit = obs.get("reads"), H * (pos + 1) * D
        t.true(isinstance(reads, list) and len(reads) == 2
               and all(isinstance(r, int) and r <= limit for r in reads),
               f"{case['what']}: each cached key and value is read at most once",
               f"read {reads} elements of (keys, values); positions 0..t hold {limit} each")


@exercise("end_to_end.bottleneck", points=1, notebook=NB, needs=("bottleneck",),
          hint="sum the seconds per group before taking the largest; a kernel's group "
               "is its first op that appears in heavy, searched in heavy's order",
          rebuilds=("mlc.deploy:kernel_group",))
class _Bottleneck(Check):
    OPS = ("matmul", "softmax", "layer_norm", "gelu", "reshape", "add", "permute")

    def cases(self):
        from mlc.deploy import HEAVY

        rows = [(["reshape", "matmul"], 0.2), (["matmul", "add"], 0.2),
                (["softmax"], 0.5), (["permute", "matmul"], 0.2), (["add", "gelu"], 0.1)]
        out = [{"what": "five kernels: three matmuls of 0.2 s, one softmax of 0.5 s",
                "kernels": rows},
               {"what": "kernels that hold two heavy ops, listed against heavy's order",
                "kernels": [(["softmax", "matmul"], 0.3), (["layer_norm", "matmul"], 0.3),
                            (["matmul"], 0.2), (["softmax"], 0.35)]},
               {"what": "a profile where kernels with no heavy op (transposes) take the most "
                        "time", "kernels": [(["permute"], 0.5), (["permute", "add"], 0.4),
                                            (["matmul"], 0.6), (["softmax", "add"], 0.2),
                                            (["add"], 0.1)]}]
        rng = np.random.default_rng(hidden_seed(1203))
        for n in (int(rng.integers(4, 9)), int(rng.integers(9, 16))):
            ks = [([str(o) for o in rng.choice(self.OPS, int(rng.integers(1, 4)),
                                               replace=False)],
                   float(rng.uniform(0.01, 1.0))) for _ in range(n)]
            out.append({"what": f"a profile of {n} kernels", "kernels": ks})
        for c in out:
            c["heavy"] = list(HEAVY)
        return out

    def observe(self, ns, case):
        fn = need(ns, "bottleneck")
        kernels = [{"ops": list(ops), "seconds": sec} for ops, sec in case["kernels"]]
        got = call(f"bottleneck({case['what']})", fn, kernels, list(case["heavy"]))
        if not (isinstance(got, tuple) and len(got) == 2):
            raise CheckFailed(f"bottleneck({case['what']}) should return (group, share)")
        return [str(got[0]), float(got[1])]

    def judge(self, case, obs, t):
        from mlc.deploy import kernel_group

        if not (isinstance(obs, list) and len(obs) == 2):
            raise CheckFailed(f"{case['what']}: malformed observation")
        groups: dict = {}
        for ops, sec in case["kernels"]:
            key = kernel_group([_Node(op) for op in ops])
            groups[key] = groups.get(key, 0.0) + sec
        best = max(groups, key=groups.get)
        t.equal(obs[0], best, f"bottleneck({case['what']}): the group")
        t.close(obs[1], groups[best] / sum(groups.values()),
                f"bottleneck({case['what']}): its share of the time", rtol=1e-6)


class _Node:
    """What ``mlc.deploy.kernel_group`` reads of a node: its op."""

    def __init__(self, op):
        self.op = op


PIPELINE = ("trace", "fold_constants", "eliminate_common_subexpressions",
            "eliminate_dead_code", "fuse", "lower", "plan", "compile")


class _Log:
    """What the stages saw: each call's stage name, whether it was given the value the
    call before it returned (the model, for the first), and that last value."""

    def __init__(self, model):
        self.names: list = []
        self.chained: list = []
        self.last = model


class _Logged:
    """A stage handed to the student: the library's function, logging that it ran and
    what it was given (a pass whose result is dropped leaves a graph the next stage never
    sees: the MLPs have nothing to fold or remove, so only the log can tell)."""

    def __init__(self, log, name, fn):
        self._log, self._name, self._fn = log, name, fn

    def __call__(self, value):
        self._log.names.append(self._name)
        self._log.chained.append(value is self._log.last)
        self._log.last = self._fn(value)
        return self._log.last


def _stages(example, log) -> dict:
    from mlc import graph, memory

    fns = {"trace": lambda m: graph.trace(m, example),
           "fold_constants": graph.fold_constants,
           "eliminate_common_subexpressions": graph.eliminate_common_subexpressions,
           "eliminate_dead_code": graph.eliminate_dead_code,
           "fuse": lambda g: graph.fuse(g, policy="tvm"),
           # the generated source run as Python: no compile time while grading
           "lower": lambda fg: graph.lower(fg, "python"),
           "plan": lambda p: memory.assign(p, memory.plan(p, "greedy_by_size")),
           "compile": graph.Executable}
    return {name: _Logged(log, name, fns[name]) for name in sorted(fns)}


def _mlp(dims, seed):
    from mlc import nn

    np.random.seed(seed)
    layers = [nn.Linear(dims[0], dims[1])]
    for a, b in zip(dims[1:-1], dims[2:], strict=True):
        layers += [nn.ReLU(), nn.Linear(a, b)]
    model = nn.Sequential(*layers)
    model.eval()
    return model


@exercise("end_to_end.pipeline", points=2, notebook=NB, needs=("deploy_pipeline",),
          hint="each stage takes what the one before it returned; the passes that remove "
               "work come before the graph is cut into kernels, and dead code is what the "
               "other passes leave behind",
          rebuilds=("mlc.deploy:deploy",))
class _Pipeline(Check):
    def cases(self):
        rng = np.random.default_rng(hidden_seed(1204))
        hidden = [int(v) for v in rng.integers(2, 12, int(rng.integers(3, 5)))]
        out = []
        for dims, seed in [([6, 8, 3], 0), (hidden, int(rng.integers(1 << 30)))]:
            x = np.random.default_rng(seed + 1).standard_normal((3, dims[0]))
            out.append({"what": f"an MLP {' -> '.join(map(str, dims))}", "dims": dims,
                        "seed": seed, "x": x.astype(np.float32)})
        return out

    def observe(self, ns, case):
        fn = need(ns, "deploy_pipeline")
        model, x = _mlp(case["dims"], case["seed"]), case["x"]
        log = _Log(model)
        exe = call(f"deploy_pipeline({case['what']})", fn, model, x.copy(), _stages(x, log))
        out = call(f"running what deploy_pipeline({case['what']}) returned", exe, x.copy())
        return {"log": [str(n) for n in log.names], "chained": [bool(c) for c in log.chained],
                "returned": bool(log.names and exe is log.last),
                "out": np.asarray(out, dtype=np.float64)}

    def judge(self, case, obs, t):
        from mlc.models import predict

        if not isinstance(obs, dict):
            raise CheckFailed(f"{case['what']}: malformed observation")
        what = f"deploy_pipeline({case['what']})"
        t.equal(obs.get("log"), list(PIPELINE), f"{what}: the stages' order")
        chained = obs.get("chained")
        if not (isinstance(chained, list) and len(chained) == len(PIPELINE)):
            raise CheckFailed(f"{what}: malformed observation")
        for i, ok in enumerate(chained):
            given = f"what {PIPELINE[i - 1]} returned" if i else "the model"
            t.true(ok is True, f"{what}: {PIPELINE[i]} is given {given}", "each stage takes "
                   "the value the stage before it returned; a pass returns a new graph and "
                   "leaves the one it was given as it was, so a result that is dropped is "
                   "work the next stages never see")
        t.true(obs.get("returned") is True, f"{what} returns what compile returned",
               "the executable itself, not another way of running the model")
        expected = predict(_mlp(case["dims"], case["seed"]), case["x"])
        t.close(obs.get("out"), expected, f"deploy_pipeline({case['what']}): the "
                "executable's outputs equal the model's", rtol=1e-4, atol=1e-5)

"""Unit 11, compression (2 of 2): low rank, the distillation loss and its gradient,
channel pruning.

* ``compression.low_rank``: ``svd_low_rank(W, energy)`` on matrices with a known spectrum:
  the rank is the smallest that keeps ``energy`` of ``sum(S^2)``, and ``||W - A @ B||_F``
  is the optimal error of that rank (Eckart-Young).

* ``compression.distillation``: ``distillation_loss(s, t, y, T, alpha)`` and
  ``distillation_grad(s, t, y, T, alpha)`` on hidden logits at several temperatures and
  weights (pure distillation, pure cross-entropy, logits large enough to overflow a naive
  ``exp``), judged against the grader's float64 reference and its closed-form gradient
  (which ``tests/test_checks_11.py`` checks against finite differences). A wrong value is
  compared with the usual slips (no ``T^2``, a sum instead of a batch mean, the KL the
  wrong way round) to say which one it looks like.
* ``compression.channel_prune``: ``prune_hidden_units(W1, b1, W2, b2, amount)`` on hidden
  two-layer MLPs: the smaller weights' shapes, the kept units (the largest L1 norms of
  their incoming weights; a count that rounds down, where rounding up keeps one more),
  and that the small network computes, on the grader's own inputs, exactly what the
  original computes with the removed units silenced.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need
from .compression import NB, as_array, as_sequence, no_library, plain


# ---- low rank ------------------------------------------------------------------------------------

def rank_for(singular_values, energy: float) -> int:
    s2 = np.asarray(singular_values, np.float64) ** 2
    kept = np.cumsum(s2) / s2.sum()
    return int(min(np.searchsorted(kept, energy - 1e-9) + 1, s2.size))


def _with_spectrum(rng, m, n, s):
    u, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    return (u * np.asarray(s)) @ v.T


def _low_rank_cases():
    rng = np.random.default_rng(13)
    decay = 2.0 ** -np.arange(12)                  # energies 0.75, 0.94, 0.98, ...
    flat = np.linspace(1.0, 0.6, 20)
    trained = np.exp(-np.arange(30) / 4.0) + 0.01
    mats = [("a 20 x 12 weight, singular values 1, 1/2, 1/4, ...",
             _with_spectrum(rng, 20, 12, decay), (0.5, 0.9, 0.99)),
            ("a 12 x 20 weight (wide), the same spectrum",
             _with_spectrum(rng, 12, 20, decay), (0.9,)),
            ("a 30 x 30 weight, a flat spectrum", _with_spectrum(rng, 30, 30, flat), (0.5, 0.9)),
            ("a hidden 40 x 30 weight, a decaying spectrum",
             _with_spectrum(rng, 40, 30, trained), (0.8, 0.95)),
            ("a 16 x 10 weight of exact rank 3", _with_spectrum(rng, 16, 10, [3.0, 2.0, 1.0]),
             (0.95, 0.999)),
            ("a 20 x 12 weight", _with_spectrum(rng, 20, 12, decay), (0.9999, 0.1))]
    out = []
    for label, w, energies in mats:
        s = np.linalg.svd(w, compute_uv=False)
        for e in energies:
            r = rank_for(s, e)
            out.append({"what": f"svd_low_rank({label}, energy={e})", "W": w, "energy": e,
                        "_rank": r, "_error": float(np.sqrt(np.sum(s[r:] ** 2))),
                        "_norm": float(np.sqrt(np.sum(s ** 2)))})
    return out


@exercise("compression.low_rank", points=2, notebook=NB, needs=("svd_low_rank",),
          hint="the energy of rank r is the sum of the first r squared singular values over "
               "the sum of all of them; take the smallest r that reaches the target, then "
               "split the truncated SVD between the two factors (the singular values go into "
               "one of them, or their square roots into both)",
          rebuilds=("mlc.compress.lowrank:low_rank",))
class _LowRank(Check):
    def cases(self):
        return _low_rank_cases()

    def observe(self, ns, case):
        fn = need(ns, "svd_low_rank")
        return plain(call(case["what"], fn, case["W"].copy(), case["energy"]))

    def judge(self, case, obs, t):
        what, w = case["what"], case["W"]
        a, b = as_sequence(obs, 2, what, "the factors A and B")
        a = as_array(a, f"{what}: A", ndim=2)
        b = as_array(b, f"{what}: B", ndim=2)
        m, n = w.shape
        r = case["_rank"]
        t.true(a.shape[0] == m and b.shape[1] == n and a.shape[1] == b.shape[0],
               f"{what}: A is ({m}, r) and B is (r, {n})",
               f"got A {a.shape} and B {b.shape}")
        if a.shape[1] != r:
            t.fail(f"{what}: rank {a.shape[1]} chosen, expected {r}: the smallest rank whose "
                   f"singular values keep at least {case['energy']} of sum(S^2)")
        t.true(True, f"{what}: the rank")
        err = float(np.linalg.norm(w - a.astype(np.float64) @ b.astype(np.float64)))
        best = case["_error"]
        if not err <= best + 1e-5 * case["_norm"] + 1e-4 * best:
            t.fail(f"{what}: ||W - A @ B|| = {err:.6g}, but the best rank-{r} approximation "
                   f"has error {best:.6g} (Eckart-Young: keep the {r} largest singular values "
                   "and their vectors)")
        t.true(True, f"{what}: the error is the optimal one")

    def inspect(self, src, t):
        no_library(src, t)


# ---- the distillation loss -----------------------------------------------------------------------

def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def distill_parts(s, t, y, T):
    """``(kl, ce)``: the batch means of ``KL(softmax(t/T) || softmax(s/T))`` and of the
    cross-entropy of ``s`` with the labels (float64)."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    log_p, log_q = _log_softmax(t / T), _log_softmax(s / T)
    kl = float((np.exp(log_p) * (log_p - log_q)).sum() / len(s))
    ce = float(-_log_softmax(s)[np.arange(len(s)), y].mean())
    return kl, ce


def reference_loss(s, t, y, T, alpha) -> float:
    kl, ce = distill_parts(s, t, y, T)
    return alpha * T * T * kl + (1.0 - alpha) * ce


def reference_grad(s, t, y, T, alpha) -> np.ndarray:
    """d loss / d s: ``alpha T (q_T - p_T) / n + (1 - alpha) (softmax(s) - onehot(y)) / n``."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    n = len(s)
    p, q = np.exp(_log_softmax(t / T)), np.exp(_log_softmax(s / T))
    onehot = np.eye(s.shape[1])[y]
    return (alpha * T * (q - p) + (1.0 - alpha) * (np.exp(_log_softmax(s)) - onehot)) / n


def _loss_slips(s, t, y, T, alpha) -> dict:
    """What the usual mistakes compute, to name the one a wrong value looks like."""
    kl, ce = distill_parts(s, t, y, T)
    rkl = float((np.exp(_log_softmax(s / T)) * (_log_softmax(s / T) - _log_softmax(t / T))
                 ).sum() / len(s))
    n = len(s)
    return {"the soft term lacks the factor T^2": alpha * kl + (1 - alpha) * ce,
            "the soft term has T instead of T^2": alpha * T * kl + (1 - alpha) * ce,
            "it sums over the batch instead of averaging": n * (alpha * T * T * kl
                                                               + (1 - alpha) * ce),
            "the KL divergence is the wrong way round (it is KL(teacher || student))":
                alpha * T * T * rkl + (1 - alpha) * ce,
            "alpha weighs the wrong term": (1 - alpha) * T * T * kl + alpha * ce}


def _grad_slips(s, t, y, T, alpha) -> dict:
    g, n = reference_grad(s, t, y, T, alpha), len(s)
    p = np.exp(_log_softmax(np.asarray(t, np.float64) / T))
    q = np.exp(_log_softmax(np.asarray(s, np.float64) / T))
    hard = g - alpha * T * (q - p) / n
    return {"it has the wrong sign": -g,
            "it is not divided by the batch size": n * g,
            "the soft part is (q - p) / T, the gradient of the loss without T^2":
                hard + alpha * (q - p) / (T * n),
            "the soft part lacks its factor T (the chain rule through s / T gives 1 / T, "
            "and the loss has T^2)": hard + alpha * (q - p) / n}


def _distill_cases():
    rng = np.random.default_rng(14)
    out = []
    for label, n, k, scale, T, alpha in [
            ("8 examples, 10 classes", 8, 10, 2.0, 4.0, 0.9),
            ("8 examples, 10 classes", 8, 10, 2.0, 1.0, 0.5),
            ("alpha = 0: plain cross-entropy", 6, 5, 3.0, 2.0, 0.0),
            ("alpha = 1: pure distillation", 6, 5, 3.0, 8.0, 1.0),
            ("T = 0.5 (sharper than the softmax)", 5, 4, 1.0, 0.5, 0.3),
            ("logits in the thousands (a naive exp overflows)", 4, 6, 1000.0, 1.0, 0.7),
            ("a hidden batch of 32, 10 classes", 32, 10, 4.0, 3.0, 0.8),
            # 100,000 logits: a numerical derivative would evaluate the loss 200,000 times
            ("a batch of 2000, 50 classes", 2000, 50, 3.0, 2.0, 0.6)]:
        s = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        t = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        y = rng.integers(0, k, n).astype(np.int64)
        what = f"{label}, T={T}, alpha={alpha}"
        for kind in ("loss", "grad"):
            out.append({"what": f"distillation_{kind}({what})", "kind": kind, "s": s, "t": t,
                        "y": y, "T": T, "alpha": alpha})
    return out


@exercise("compression.distillation", points=3, notebook=NB,
          needs=("distillation_loss", "distillation_grad"),
          hint="work with log-softmax computed after subtracting each row's maximum; the "
               "soft term is alpha * T^2 * KL(teacher's softmax at T || student's softmax at "
               "T), the hard term (1 - alpha) times the cross-entropy at T = 1, both averaged "
               "over the batch; differentiate each softmax term through the division by T",
          rebuilds=("mlc.compress.distill:distillation_loss",))
class _Distillation(Check):
    def cases(self):
        return _distill_cases()

    def observe(self, ns, case):
        fn = need(ns, f"distillation_{case['kind']}")
        out = call(case["what"], fn, case["s"].copy(), case["t"].copy(), case["y"].copy(),
                   case["T"], case["alpha"])
        return plain(out)

    def judge(self, case, obs, t):
        what = case["what"]
        args = (case["s"], case["t"], case["y"], case["T"], case["alpha"])
        if case["kind"] == "loss":
            if isinstance(obs, np.ndarray) and obs.size == 1 and obs.dtype.kind in "iuf":
                obs = obs.reshape(()).item()
            if isinstance(obs, bool) or not isinstance(obs, (int, float)):
                raise CheckFailed(f"{what}: expected a number (a float), got "
                                  f"{type(obs).__name__}")
            ref = reference_loss(*args)
            if not np.isfinite(obs):
                t.fail(f"{what}: got {obs!r}; subtract each row's maximum before exp")
            if not np.isclose(obs, ref, rtol=1e-4, atol=1e-6):
                for slip, value in _loss_slips(*args).items():
                    if np.isclose(obs, value, rtol=1e-4, atol=1e-6) and not np.isclose(
                            value, ref, rtol=1e-4, atol=1e-6):
                        t.fail(f"{what}: expected {ref:.6g}, got {obs:.6g}: {slip}")
            t.close(obs, ref, what, rtol=1e-4, atol=1e-6)
            return
        g_ref = reference_grad(*args)
        g = as_array(obs, what)
        if g.shape != g_ref.shape:
            t.fail(f"{what}: the gradient has shape {g.shape}, expected {g_ref.shape} (one "
                   "number per student logit)")
        if not np.isfinite(g).all():
            t.fail(f"{what}: the gradient holds inf or nan; subtract each row's maximum "
                   "before exp")
        if not np.allclose(g, g_ref, rtol=1e-4, atol=1e-7):
            for slip, value in _grad_slips(*args).items():
                if np.allclose(g, value, rtol=1e-4, atol=1e-7):
                    t.fail(f"{what}: not the gradient of the loss: {slip}")
        t.close(g, g_ref, f"{what}: the gradient with respect to the student's logits",
                rtol=1e-4, atol=1e-7)

    def inspect(self, src, t):
        no_library(src, t)
        found = _not_by_hand(src)
        t.true(found is None, "distillation_grad is the closed form, derived by hand",
               f"it {found}: the exercise is the derivation (softmax minus target, times "
               f"1/T through s / T); differences of the loss or autodiff only copy it"
               if found else "")


_AUTODIFF = {"backward", "grad", "vjp", "jacobian", "value_and_grad", "Tensor", "gradient",
             "approx_fprime", "check_grad", "derivative"}


def _not_by_hand(src) -> str | None:
    """How ``distillation_grad`` avoids the closed form, or None: it (or a notebook
    function it calls) calls ``distillation_loss`` (finite differences), or autodiff."""
    for d in src.reachable("distillation_grad", skip=("distillation_loss",)):
        calls = d.calls()
        if "distillation_loss" in calls:
            return "calls distillation_loss (a numerical derivative of the loss)"
        used = (calls & _AUTODIFF) | (d.names() & {"autograd", "torch", "jax"})
        if used:
            return f"uses {', '.join(sorted(used))} (automatic differentiation)"
    return None


# ---- channel pruning -----------------------------------------------------------------------------

def reference_keep(w1, amount: float) -> np.ndarray:
    scores = np.abs(np.asarray(w1, np.float64)).sum(axis=0)
    n_keep = max(1, int(round((1.0 - amount) * scores.size)))
    return np.sort(np.argsort(-scores, kind="stable")[:n_keep])


def mlp(x, w1, b1, w2, b2, silence=None):
    h = np.maximum(x @ w1 + b1, 0.0)
    if silence is not None:
        h[:, silence] = 0.0
    return h @ w2 + b2


def _channel_cases():
    rng = np.random.default_rng(15)
    out = []
    for label, d, h, o, amount in [("64 -> 16 -> 10", 64, 16, 10, 0.5),
                                   ("64 -> 16 -> 10", 64, 16, 10, 0.75),
                                   ("8 -> 10 -> 3", 8, 10, 3, 0.33),
                                   ("8 -> 10 -> 3, amount 0: keep every unit", 8, 10, 3, 0.0),
                                   ("5 -> 6 -> 2, amount 0.99: one unit left", 5, 6, 2, 0.99),
                                   ("a hidden 32 -> 40 -> 7", 32, 40, 7, 0.6),
                                   # 6.2 units: round keeps 6, rounding up would keep 7
                                   ("12 -> 10 -> 4", 12, 10, 4, 0.38)]:
        scale = rng.uniform(0.2, 2.0, h)  # units of clearly different importance
        w1 = (rng.standard_normal((d, h)) * scale).astype(np.float32)
        b1 = (rng.standard_normal(h) * 0.5).astype(np.float32)
        w2 = rng.standard_normal((h, o)).astype(np.float32)
        b2 = rng.standard_normal(o).astype(np.float32)
        out.append({"what": f"prune_hidden_units({label}, amount={amount})", "W1": w1, "b1": b1,
                    "W2": w2, "b2": b2, "amount": amount,
                    "_x": rng.standard_normal((64, d)).astype(np.float32)})
    return out


@exercise("compression.channel_prune", points=3, notebook=NB, needs=("prune_hidden_units",),
          hint="a hidden unit is a column of W1 with its bias and the matching row of W2: "
               "remove the three together, so every kept unit computes what it computed "
               "before; score each unit by the L1 norm of its incoming weights, and keep the "
               "number that (1 - amount) of the units rounds to, at least one",
          rebuilds=("mlc.compress.structured:prune_channels",))
class _ChannelPrune(Check):
    def cases(self):
        return _channel_cases()

    def observe(self, ns, case):
        fn = need(ns, "prune_hidden_units")
        out = call(case["what"], fn, case["W1"].copy(), case["b1"].copy(), case["W2"].copy(),
                   case["b2"].copy(), case["amount"])
        return plain(out)

    def judge(self, case, obs, t):
        what = case["what"]
        w1, b1, w2, b2 = (case[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2"))
        d, h = w1.shape
        o = w2.shape[1]
        ref = reference_keep(w1, case["amount"])
        k = ref.size
        sw1, sb1, sw2, sb2, keep = as_sequence(obs, 5, what, "W1, b1, W2, b2, keep")
        for name, arr, shape in (("W1", sw1, (d, k)), ("b1", sb1, (k,)), ("W2", sw2, (k, o)),
                                 ("b2", sb2, (o,))):
            a = as_array(arr, f"{what}: the new {name}")
            if a.shape != shape:
                t.fail(f"{what}: the new {name} has shape {a.shape}, expected {shape} "
                       f"({k} of the {h} hidden units kept: (1 - amount) * {h} rounded to "
                       "the nearest, at least 1)")
        t.true(True, f"{what}: the shapes")
        keep = as_array(keep, f"{what}: keep", ndim=1)
        t.true(keep.dtype.kind in "iu" and keep.size == k and len(set(keep.tolist())) == k
               and bool(((keep >= 0) & (keep < h)).all()),
               f"{what}: keep lists {k} distinct units of the {h}",
               f"got {keep.tolist()[:12]}")
        kept = np.sort(keep.astype(np.int64))
        silenced = np.setdiff1d(np.arange(h), kept)
        x = case["_x"].astype(np.float64)
        got = mlp(x, sw1.astype(np.float64), sb1.astype(np.float64), sw2.astype(np.float64),
                  sb2.astype(np.float64))
        want = mlp(x, w1, b1, w2, b2, silence=silenced)
        if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            t.fail(f"{what}: the small network's outputs differ from the original's with "
                   f"the removed units {silenced.tolist()[:10]} silenced: each kept unit "
                   "must keep its column of W1, its bias and its row of W2, all in the "
                   "order of keep")
        t.true(True, f"{what}: the kept units compute what they computed before")
        if not np.array_equal(kept, ref):
            scores = np.abs(w1).sum(axis=0)
            lost = [int(u) for u in ref if u not in set(kept.tolist())]
            t.fail(f"{what}: removed unit {lost[0]} (L1 norm {scores[lost[0]]:.4g}) but kept "
                   f"unit {int(kept[np.argmin(scores[kept])])} (L1 norm "
                   f"{scores[kept].min():.4g}): keep the units whose incoming weights have "
                   "the largest L1 norm")
        t.true(True, f"{what}: the kept units are the most important")

    def inspect(self, src, t):
        no_library(src, t)

"""Unit 11, compression (1 of 2): magnitude masks and CSR.

* ``compression.magnitude_masks``: ``magnitude_masks(weights, amount, scope)`` on hidden
  lists of weights (layers of different scales, weights already zero, a 4-D conv weight),
  judged by the kept set: the right number of zeros (of all weights, or of each layer),
  then exactly the smallest magnitudes pruned.
* ``compression.csr``: ``dense_to_csr(a)`` on hidden matrices (empty rows, all zeros, no
  zeros, tiny nonzeros such as 1e-30), judged against the grader's own
  ``indptr``/``indices``/``data``; and ``csr_matmul(indptr, indices, data, x)`` on CSR
  arrays the grader builds (empty rows, columns unsorted inside a row, one column of
  ``x``, NaN in rows of ``x`` no stored value names), judged against the grader's own
  product, and on a 1200 x 1200 matrix of 2400 values by the memory it holds (tracemalloc):
  a dense matrix, even one over the named columns only, is megabytes.

The low-rank layer, the distillation loss and channel pruning are in
:mod:`.compression_train`. The references are the grader's own numpy; the student's code
runs only in ``observe``, and the notebook may not use ``mlc.compress``
(:func:`no_library`).
"""

from __future__ import annotations


import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need
from ..source import cell_label

NB = "11_compression"
MAX_ELEMENTS = 1 << 20


# ---- shared by both modules ----------------------------------------------------------------------

def no_library(src, t) -> None:
    cells = src.cells_using("mlc.compress")
    t.true(not cells, "the notebook does not use mlc.compress",
           f"code {cell_label(cells[0]) if cells else 'cell'} uses mlc.compress: the exercise "
           "is to write these pieces yourself with numpy (the lecture uses the library; this "
           "one may not)")


def as_array(v, what: str, ndim: int | None = None, shape=None) -> np.ndarray:
    """A numeric numpy array from an observation (a list of numbers is one too), or a clear
    failure."""
    if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                   for x in v[:MAX_ELEMENTS]):
        v = np.asarray(v) if v else np.zeros(0, np.int64)
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
        raise CheckFailed(f"{what}: expected a numpy array of numbers, got "
                          f"{type(v).__name__}" + (f" of dtype {v.dtype}"
                                                   if isinstance(v, np.ndarray) else ""))
    if v.size > MAX_ELEMENTS:
        raise CheckFailed(f"{what}: an array of {v.size} elements is far too big")
    if ndim is not None and v.ndim != ndim:
        raise CheckFailed(f"{what}: expected a {ndim}-D array, got shape {v.shape}")
    if shape is not None and tuple(v.shape) != tuple(shape):
        raise CheckFailed(f"{what}: expected shape {tuple(shape)}, got {tuple(v.shape)}")
    return v


def as_sequence(obs, n: int, what: str, names: str) -> list:
    if not isinstance(obs, (list, tuple)) or len(obs) != n:
        got = f"{len(obs)} values" if isinstance(obs, (list, tuple)) else type(obs).__name__
        raise CheckFailed(f"{what}: expected {n} values ({names}), got {got}")
    return list(obs)


def plain(out):
    """A student's result as wire data: lists, numbers, arrays, else the type's name."""
    if isinstance(out, (list, tuple)):
        if out and all(isinstance(x, (int, float, np.number)) for x in out):
            return np.asarray(out)
        return [plain(x) for x in out[:64]]
    if isinstance(out, (bool, int, float, np.number)):
        return out
    try:
        a = np.asarray(out)
    except Exception:  # noqa: BLE001 - the student's object may refuse to convert
        return f"<{type(out).__name__}>"
    return a if a.dtype.kind in "biufc" else f"<{type(out).__name__}>"


# ---- magnitude masks -----------------------------------------------------------------------------

def reference_masks(weights, amount: float, scope: str) -> list[np.ndarray]:
    """0/1 masks zeroing the ``round(amount * n)`` smallest ``|w|`` (global or per layer)."""
    def smallest(scores, k):
        keep = np.ones(scores.size)
        keep[np.argsort(scores.reshape(-1), kind="stable")[:k]] = 0.0
        return keep.reshape(scores.shape)

    scores = [np.abs(np.asarray(w, np.float64)) for w in weights]
    if scope == "layer":
        return [smallest(s, int(round(amount * s.size))) for s in scores]
    flat = np.concatenate([s.reshape(-1) for s in scores])
    keep = smallest(flat, int(round(amount * flat.size)))
    ends = np.cumsum([0] + [s.size for s in scores])
    return [keep[a:b].reshape(s.shape) for a, b, s in zip(ends[:-1], ends[1:], scores,
                                                          strict=True)]


def _mask_cases():
    rng = np.random.default_rng(11)
    mlp = [rng.standard_normal((64, 32)) * 0.1, rng.standard_normal((32, 10)) * 0.5]
    three = [rng.standard_normal((16, 24)), rng.standard_normal((24, 24)) * 0.2,
             rng.standard_normal((24, 5)) * 3.0]
    conv = [rng.standard_normal((3, 3, 1, 8)), rng.standard_normal((3, 3, 8, 12)) * 0.3,
            rng.standard_normal((48, 10))]
    zeroed = [w.copy() for w in three]
    zeroed[1][rng.random(zeroed[1].shape) < 0.4] = 0.0   # pruned before: 40% of layer 2
    out = []
    for label, ws, amount in [("an MLP 64-32-10 (layers of different scales)", mlp, 0.5),
                              ("an MLP 64-32-10", mlp, 0.9),
                              ("three layers", three, 0.37),
                              ("three layers, layer 2 already 40% zero", zeroed, 0.6),
                              # the cut falls inside the zeros: |w| <= threshold takes too many
                              ("three layers, layer 2 already 40% zero", zeroed, 0.2),
                              ("two convolutions and a Linear", conv, 0.75),
                              ("three layers, amount 0", three, 0.0),
                              ("three layers, amount 1", three, 1.0)]:
        for scope in ("global", "layer"):
            shapes = " + ".join("x".join(map(str, w.shape)) for w in ws)
            out.append({"what": f"{label} ({shapes}), amount={amount}, scope={scope!r}",
                        "weights": [w.astype(np.float32) for w in ws], "amount": amount,
                        "scope": scope})
    return out


@exercise("compression.magnitude_masks", points=2, notebook=NB, needs=("magnitude_masks",),
          hint="amount is the fraction of weights to zero, rounded to a whole number of "
               "weights; rank by magnitude, and for scope='global' rank all layers' "
               "weights together with one threshold, for 'layer' each layer on its own "
               "(lecture section 1)",
          rebuilds=("mlc.compress.masks:prune_magnitude",))
class _MagnitudeMasks(Check):
    def cases(self):
        return _mask_cases()

    def observe(self, ns, case):
        fn = need(ns, "magnitude_masks")
        ws = [w.copy() for w in case["weights"]]
        out = call(case["what"], fn, ws, case["amount"], scope=case["scope"])
        return plain(out)

    def judge(self, case, obs, t):
        what, ws = case["what"], case["weights"]
        masks = as_sequence(obs, len(ws), what, "one mask per weight")
        ref = reference_masks(ws, case["amount"], case["scope"])
        for i, (m, w) in enumerate(zip(masks, ws, strict=True)):
            m = as_array(m, f"{what}: mask {i}", shape=w.shape)
            if not np.isin(m, (0, 1)).all():
                t.fail(f"{what}: mask {i} holds values other than 0 and 1: a mask is 1 where "
                       "the weight stays and 0 where it is pruned")
            masks[i] = m.astype(np.float64)
        zeros = [int((m == 0).sum()) for m in masks]
        want = [int((r == 0).sum()) for r in ref]
        per = ", layer by layer" if case["scope"] == "layer" else ""
        if sum(zeros) != sum(want):
            t.fail(f"{what}: {sum(zeros)} weights zeroed in all, expected {sum(want)} "
                   f"(round(amount x number of weights){per})")
        if case["scope"] == "global":
            per_layer = reference_masks(ws, case["amount"], "layer")
            if zeros != want and all(np.array_equal(m, r) for m, r in zip(masks, per_layer,
                                                                            strict=True)):
                t.fail(f"{what}: each layer lost the fraction amount of its own weights; with "
                       "scope='global' one threshold over all layers' |w| decides how many "
                       "each layer loses")
            groups = [(np.concatenate([m.ravel() for m in masks]),
                       np.concatenate([r.ravel() for r in ref]),
                       np.concatenate([np.abs(np.asarray(w, np.float64)).ravel() for w in ws]),
                       "the model")]
        else:
            for i, (z, e) in enumerate(zip(zeros, want, strict=True)):
                if z != e:
                    t.fail(f"{what}: weight {i} has {z} zeros, expected {e}: each layer loses "
                           "the fraction amount of its own weights")
            groups = [(m, r, np.abs(np.asarray(w, np.float64)), f"weight {i}")
                      for i, (m, r, w) in enumerate(zip(masks, ref, ws, strict=True))]
        t.true(True, f"{what}: the number of zeros")
        for m, r, a, where in groups:
            kept_small = float(a[m == 1].min()) if (m == 1).any() else np.inf
            cut_big = float(a[m == 0].max()) if (m == 0).any() else 0.0
            # among weights tied at the threshold any choice of the right number will do
            if not np.array_equal(m, r) and cut_big > kept_small:
                t.fail(f"{what}: {where} keeps a weight with |w| = {kept_small:.4g} but "
                       f"prunes one with |w| = {cut_big:.4g}: the pruned weights are the "
                       "smallest in magnitude")
        t.true(True, f"{what}: the kept set")

    def inspect(self, src, t):
        no_library(src, t)


# ---- CSR -----------------------------------------------------------------------------------------

def reference_csr(a):
    a = np.asarray(a)
    rows, cols = np.nonzero(a)
    indptr = np.zeros(a.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=a.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int64), a[rows, cols]


def csr_dense(indptr, indices, data, shape):
    out = np.zeros(shape)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    np.add.at(out, (rows, indices), data)
    return out


def _sparse(rng, shape, s):
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) < s] = 0.0
    return a


def _csr_cases():
    rng = np.random.default_rng(12)
    small = np.array([[0, 2, 0, 0, 1], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0],
                      [0, 0, 5, 0, 0]], np.float32)
    trail = np.zeros((5, 4), np.float32)
    trail[1, 3], trail[2, 0] = 1.5, -2.0  # rows 0, 3 and 4 empty
    to_csr = [("the 4 x 5 example of the notebook (an empty row)", small),
              ("a 5 x 4 matrix whose first and last two rows are empty", trail),
              ("a 30 x 40 matrix, 80% zeros", _sparse(rng, (30, 40), 0.8)),
              ("a 3 x 4 matrix of zeros", np.zeros((3, 4), np.float32)),
              ("a 5 x 3 matrix with no zero", _sparse(rng, (5, 3), 0.0) + 10.0),
              ("a 1 x 50 row, 90% zeros", _sparse(rng, (1, 50), 0.9)),
              ("a hidden 64 x 48 matrix, 90% zeros", _sparse(rng, (64, 48), 0.9))]
    tiny = np.array([[0, 1e-30, 0, 2.5], [-3e-9, 0, 0, 0], [0, 0, 1e-12, -1e-7]], np.float32)
    to_csr.append(("a 3 x 4 matrix with tiny nonzeros (1e-30, -3e-9, 1e-12)", tiny))
    out = [{"what": f"dense_to_csr({label})", "kind": "to_csr", "a": a} for label, a in to_csr]

    def shuffled(a):  # valid CSR with the columns of each row in a random order
        ip, ix, dt = reference_csr(a)
        for i in range(a.shape[0]):
            p = rng.permutation(np.arange(ip[i], ip[i + 1]))
            ix[ip[i]:ip[i + 1]], dt[ip[i]:ip[i + 1]] = ix[p], dt[p]
        return ip, ix, dt

    mats = [("the 4 x 5 example times a 5 x 3 matrix", small, 3, False),
            ("the 5 x 4 matrix with empty rows times a 4 x 2 matrix", trail, 2, False),
            ("a 30 x 40 matrix, 80% zeros, times a 40 x 1 column", _sparse(rng, (30, 40), 0.8),
             1, False),
            ("a 30 x 40 matrix, columns unsorted inside each row, times 40 x 6",
             _sparse(rng, (30, 40), 0.7), 6, True),
            ("a 3 x 4 matrix of zeros times a 4 x 5 matrix", np.zeros((3, 4), np.float32), 5,
             False),
            ("a hidden 64 x 48 matrix, 95% zeros, times 48 x 16", _sparse(rng, (64, 48), 0.95),
             16, True)]
    unread = _sparse(rng, (20, 60), 0.9)
    unread[:, ::3] = 0.0  # a third of the columns store nothing
    mats.append(("a 20 x 60 matrix times x whose rows no stored value names hold NaN (a "
                 "product over the stored values never reads them)", unread, 4, True))
    for label, a, n, shuffle in mats:
        ip, ix, dt = shuffled(a) if shuffle else reference_csr(a)
        x = rng.standard_normal((a.shape[1], n)).astype(np.float32)
        if "NaN" in label:
            x[np.setdiff1d(np.arange(a.shape[1]), ix)] = np.nan
        out.append({"what": f"csr_matmul({label})", "kind": "matmul",
                    "indptr": ip.astype(np.int32), "indices": ix.astype(np.int32),
                    "data": dt.astype(np.float32), "x": x, "shape": list(a.shape)})
    return out + [_large_case(rng)]


def _large_case(rng, m=1200, nnz=2400, n=4) -> dict:
    """A square matrix with two stored values a row on average, built as CSR directly (its
    dense form, 5.8 MB in float32, is never made), and x whose rows no stored value names
    hold NaN: a product that makes a dense matrix of it, even one only over the named
    columns, holds megabytes where the stored values and the result take about 100 KB."""
    flat = np.sort(rng.choice(m * m, nnz, replace=False))
    rows, cols = flat // m, flat % m
    indptr = np.zeros(m + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    x = rng.standard_normal((m, n)).astype(np.float32)
    x[np.setdiff1d(np.arange(m), cols)] = np.nan
    return {"what": f"csr_matmul(a hidden {m} x {m} matrix with {nnz} stored values, times "
            f"{m} x {n})", "kind": "matmul", "indptr": indptr, "indices": cols.astype(np.int32),
            "data": rng.standard_normal(nnz).astype(np.float32), "x": x, "shape": [m, m],
            "peak": m * m}   # bytes: a quarter of the dense matrix in float32


@exercise("compression.csr", points=3, notebook=NB, needs=("dense_to_csr", "csr_matmul"),
          hint="indptr has one entry more than there are rows and starts at 0: row i's "
               "values are data[indptr[i]:indptr[i+1]], in row order, left to right; in the "
               "product every stored value of row i adds value * (a row of x, the one its "
               "column names) to row i of the result, and a row with no values stays zero",
          rebuilds=("mlc.compress.sparse:csr_matmul", "mlc.compress.sparse:CSRMatrix"))
class _CSR(Check):
    def cases(self):
        return _csr_cases()

    def observe(self, ns, case):
        if case["kind"] == "to_csr":
            fn = need(ns, "dense_to_csr")
            return plain(call(case["what"], fn, case["a"].copy()))
        fn = need(ns, "csr_matmul")
        args = [case[k].copy() for k in ("indptr", "indices", "data", "x")]
        if "peak" not in case:
            return plain(call(case["what"], fn, *args))
        import tracemalloc   # it sees numpy's buffers: the most bytes held during the call

        tracemalloc.start()
        try:
            out = call(case["what"], fn, *args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return {"out": plain(out), "peak": int(peak)}

    def judge(self, case, obs, t):
        what = case["what"]
        if case["kind"] == "to_csr":
            a = case["a"]
            ip_ref, ix_ref, dt_ref = reference_csr(a)
            ip, ix, dt = as_sequence(obs, 3, what, "indptr, indices, data")
            ip = as_array(ip, f"{what}: indptr", ndim=1)
            ix = as_array(ix, f"{what}: indices", ndim=1)
            dt = as_array(dt, f"{what}: data", ndim=1)
            t.true(ip.dtype.kind in "iu" and ix.dtype.kind in "iu",
                   f"{what}: indptr and indices are integer arrays",
                   f"got {ip.dtype} and {ix.dtype}")
            if ip.size != a.shape[0] + 1:
                t.fail(f"{what}: indptr has {ip.size} entries, expected {a.shape[0] + 1} "
                       f"(one per row, plus one: it starts at 0 and ends at nnz)")
            if dt.size != dt_ref.size:
                t.fail(f"{what}: {dt.size} values stored, expected {dt_ref.size}, the "
                       "nonzeros" + (" (zeros must not be stored)" if dt.size > dt_ref.size
                                     else " (a value is left out only if it is exactly 0: "
                                     "1e-30 is a nonzero too)"))
            t.equal(ip.astype(np.int64), ip_ref, f"{what}: indptr")
            t.equal(ix.astype(np.int64), ix_ref, f"{what}: indices (the nonzeros in row "
                                                 "order, each row left to right)")
            t.close(dt, dt_ref, f"{what}: data", rtol=0, atol=0)
            return
        m, k = case["shape"]
        n = case["x"].shape[1]
        if "peak" in case:
            peak = obs.get("peak") if isinstance(obs, dict) else None
            if not isinstance(peak, int) or isinstance(peak, bool):
                t.fail(f"{what}: malformed observation")
            obs = obs.get("out")
        out = as_array(obs, what)
        if out.shape != (m, n):
            t.fail(f"{what}: the result has shape {out.shape}, expected {(m, n)} "
                   "(rows of the sparse matrix x columns of x)")
        x = case["x"].astype(np.float64)
        x[np.isnan(x)] = 0.0  # rows no stored value names: a sparse product never reads them
        ref = csr_dense(case["indptr"], case["indices"], case["data"].astype(np.float64),
                        (m, k)) @ x
        if np.isnan(out).any() and np.isnan(case["x"]).any():
            t.fail(f"{what}: your result holds NaN: it multiplied rows of x that no stored "
                   "value names (by the zeros of a dense matrix, 0 * NaN = NaN). The point of "
                   "CSR is to touch only the stored values")
        empty = np.diff(case["indptr"]) == 0
        if empty.any() and not np.allclose(out[empty], 0.0):
            t.fail(f"{what}: rows {np.nonzero(empty)[0].tolist()} store no value, so their "
                   "result must be zero")
        t.close(out, ref, what, rtol=1e-4, atol=1e-4)
        if "peak" in case:
            t.true(peak <= case["peak"], f"{what}: memory in proportion to the stored values",
                   f"it held {peak / 1e6:.1f} MB at once, where the stored values and the "
                   f"result take {(12 * case['data'].size + 8 * m * n) / 1e6:.2f} MB: a dense "
                   f"{m} x {k} matrix, or a part of one, is what CSR exists to avoid")

    def inspect(self, src, t):
        no_library(src, t)
        cells = src.cells_using("scipy.sparse")
        t.true(not cells, "the notebook does not use scipy.sparse",
               f"code {cell_label(cells[0]) if cells else 'cell'} uses scipy.sparse: write the CSR "
               f"format and its product yourself")

"""The checks of unit 11 (compression).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: masks that rank signed weights,
prune per layer when asked for one global threshold, or round the count differently; a
CSR without its leading 0, storing zeros, in column order, or a product that reads the
wrong rows or forgets empty ones; a rank off by one or chosen on S instead of S^2, or
factors that are not the truncated SVD; a distillation loss without T^2, summed over the
batch, with the KL reversed or not stabilised, and gradients with the wrong factor; a
channel pruning that slices the wrong axis, forgets the bias, or ranks by the outgoing
weights. The judges are also handed forged observations and must fail them cleanly; an
untouched stub hears only "not implemented yet", with no hint. The audit of issue 20 adds,
at the end: tiny values taken for zeros, a product that densifies only the named columns
(judged by its memory), a keep count rounded up, and more slips of each exercise.
"""

from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner

from mlc.grading.checks import compression, compression_train
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester
from mlc.grading.source import Sources

ROOT = Path(__file__).resolve().parents[1]
IDS = ["compression.magnitude_masks", "compression.csr", "compression.low_rank",
       "compression.distillation", "compression.channel_prune"]
POINTS = [2, 3, 2, 3, 3]


# ---- the reference solutions (as in solutions/11_compression.ipynb) ----------------------------

def make_masks(signed=False, global_as_layer=False, floor=False):
    def magnitude_masks(weights, amount, scope="global"):
        def smallest(scores, k):
            keep = np.ones(scores.size)
            keep[np.argsort(scores.reshape(-1), kind="stable")[:k]] = 0.0
            return keep.reshape(scores.shape)

        count = (lambda n: int(amount * n)) if floor else (lambda n: int(round(amount * n)))
        scores = [np.asarray(w, np.float64) if signed else np.abs(np.asarray(w, np.float64))
                  for w in weights]
        if scope == "layer" or global_as_layer:
            return [smallest(s, count(s.size)) for s in scores]
        flat = np.concatenate([s.reshape(-1) for s in scores])
        keep = smallest(flat, count(flat.size))
        out, start = [], 0
        for s in scores:
            out.append(keep[start:start + s.size].reshape(s.shape))
            start += s.size
        return out

    return magnitude_masks


def make_to_csr(leading_zero=True, store_zeros=False, column_order=False):
    def dense_to_csr(a):
        a = np.asarray(a)
        b = a.T if column_order else a
        indptr, indices, data = [0] if leading_zero else [], [], []
        for row in b:
            cols = np.arange(row.size) if store_zeros else np.nonzero(row)[0]
            indices.extend(cols.tolist())
            data.extend(row[cols].tolist())
            indptr.append(len(data))
        return np.array(indptr), np.array(indices, dtype=np.int64), np.array(data, a.dtype)

    return dense_to_csr


def make_csr_matmul(transposed=False, off_by_one=False, garbage_rows=False):
    def csr_matmul(indptr, indices, data, x):
        m = len(indptr) - 1
        out = np.full((m, x.shape[1]), 7.0) if garbage_rows else np.zeros((m, x.shape[1]))
        for i in range(m):
            if garbage_rows and indptr[i] < indptr[i + 1]:
                out[i] = 0.0
            for p in range(indptr[i], indptr[i + 1] + (1 if off_by_one else 0)):
                p = min(p, len(data) - 1)
                out[i] += data[p] * (x[p % x.shape[0]] if transposed else x[indices[p]])
        return out

    return csr_matmul


def make_low_rank(on_s=False, strict=False, plus_one=False, no_s=False):
    def svd_low_rank(W, energy):
        u, s, vt = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
        e = s if on_s else s ** 2
        kept = np.cumsum(e) / np.sum(e)
        r = int(np.sum(kept <= energy)) if strict else int(
            min(np.searchsorted(kept, energy - 1e-12) + 1, s.size))
        r = max(1, min(r + (1 if plus_one else 0), s.size))
        if no_s:
            return u[:, :r], vt[:r]
        return u[:, :r] * s[:r], vt[:r]

    return svd_low_rank


def _log_softmax(z, stable=True):
    if stable:
        z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def make_loss(t2=True, mean=True, reverse=False, stable=True):
    def distillation_loss(s, t, y, T, alpha):
        with np.errstate(all="ignore"):
            return loss(s, t, y, T, alpha)

    def loss(s, t, y, T, alpha):
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        n = len(s)
        log_p, log_q = _log_softmax(t / T, stable), _log_softmax(s / T, stable)
        if reverse:
            kl = np.sum(np.exp(log_q) * (log_q - log_p))
        else:
            kl = np.sum(np.exp(log_p) * (log_p - log_q))
        ce = -np.sum(_log_softmax(s, stable)[np.arange(n), y])
        loss = alpha * (T * T if t2 else 1.0) * kl + (1 - alpha) * ce
        return float(loss / n if mean else loss)

    return distillation_loss


def make_grad(soft_factor="T", mean=True, sign=1.0):
    def distillation_grad(s, t, y, T, alpha):
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        n, k = s.shape
        p, q = np.exp(_log_softmax(t / T)), np.exp(_log_softmax(s / T))
        f = {"T": T, "1/T": 1.0 / T, "1": 1.0}[soft_factor]
        g = alpha * f * (q - p) + (1 - alpha) * (np.exp(_log_softmax(s)) - np.eye(k)[y])
        return sign * (g / n if mean else g)

    return distillation_grad


def make_prune(by="in", bias=True, w2_rows="kept"):
    def prune_hidden_units(W1, b1, W2, b2, amount):
        scores = {"in": np.abs(W1).sum(axis=0), "out": np.abs(W2).sum(axis=1),
                  "signed": W1.sum(axis=0)}[by]
        n_keep = max(1, int(round((1 - amount) * scores.size)))
        keep = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        rows = {"kept": keep, "reversed": keep[::-1], "first": np.arange(n_keep)}[w2_rows]
        return W1[:, keep], (b1[keep] if bias else b1[:n_keep]), W2[rows], b2, keep

    return prune_hidden_units


REFERENCE = {"magnitude_masks": make_masks(), "dense_to_csr": make_to_csr(),
             "csr_matmul": make_csr_matmul(), "svd_low_rank": make_low_rank(),
             "distillation_loss": make_loss(), "distillation_grad": make_grad(),
             "prune_hidden_units": make_prune()}
run, fails = check_runner(REFERENCE)


# ---- full marks, stubs, hints --------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = run(ex_id)
    assert rec["score"] == rec["max_score"] == get(ex_id).points, rec["message"]


def test_points_and_notebook():
    assert [get(i).points for i in IDS] == POINTS
    assert {get(i).notebook for i in IDS} == {"11_compression"}


@pytest.mark.parametrize("ex_id", IDS)
@pytest.mark.parametrize("which", [0, -1])
def test_untouched_stub_hears_only_not_implemented(ex_id, which):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    rec = run(ex_id, **{get(ex_id).needs[which]: stub})
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == ""




@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges(ex_id):
    hint = get(ex_id).hint
    assert hint and len(hint) < 400
    assert not any(code in hint for code in ("def ", "return ", "np.", "==", "argsort",
                                             "[:, ", "svd("))


@pytest.mark.parametrize("ex_id", IDS)
def test_code_that_raises_names_the_case(ex_id):
    rec = run(ex_id, **{get(ex_id).needs[0]: lambda *a, **k: 1 / 0})
    assert rec["score"] == 0 and "ZeroDivisionError" in rec["message"] and rec["hint"]


# ---- exercise 1: magnitude masks -----------------------------------------------------------------

def test_magnitude_masks_failures():
    ex = "compression.magnitude_masks"
    fails(ex, "scope='global'", "prunes one with |w|", "smallest in magnitude",
          magnitude_masks=make_masks(signed=True))
    fails(ex, "scope='global'", "one threshold over all layers",
          magnitude_masks=make_masks(global_as_layer=True))
    fails(ex, "amount=0.37", "weights zeroed in all, expected",
          magnitude_masks=make_masks(floor=True))
    fails(ex, "expected 2 values", magnitude_masks=lambda ws, a, scope="global": ws[:1])
    fails(ex, "holds values other than 0 and 1",
          magnitude_masks=lambda ws, a, scope="global": [np.abs(w) for w in ws])
    fails(ex, "expected shape (64, 32)",
          magnitude_masks=lambda ws, a, scope="global": [np.ones(3) for w in ws])


def test_csr_accepts_lists():
    def lists(a):
        return tuple(v.tolist() for v in make_to_csr()(a))

    assert run("compression.csr", dense_to_csr=lists)["score"] == 3


def test_magnitude_masks_accepts_booleans_and_tuples():
    good = make_masks()
    assert run("compression.magnitude_masks", magnitude_masks=lambda ws, a, scope="global": tuple(
        m.astype(bool) for m in good(ws, a, scope)))["score"] == 2


@pytest.mark.parametrize("obs", [None, "masks", [1, 2], [np.ones((64, 32)), "x"],
                                 [np.ones((64, 32), complex), np.ones((32, 10))], 3.0])
def test_magnitude_masks_judge_on_forged_observations(obs):
    ex = get("compression.magnitude_masks")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


def _ties_at_the_threshold(case):
    ws = case["weights"]
    if case["scope"] == "layer":
        groups = [np.abs(w).ravel() for w in ws]
    else:
        groups = [np.concatenate([np.abs(w).ravel() for w in ws])]
    for g in groups:
        k = int(round(case["amount"] * g.size))
        if 0 < k < g.size and np.sort(g)[k - 1] == np.sort(g)[k]:
            return True
    return False


def test_mask_ties_at_the_threshold_take_exactly_amount_in_any_order():
    """A case cuts inside a block of equal magnitudes (weights already pruned to 0): a
    threshold rule, |w| <= the k-th smallest, prunes the whole block and scored full marks
    before that case; any choice of k among the tied weights passes."""
    assert any(_ties_at_the_threshold(c) for c in get("compression.magnitude_masks")
               .check.cases())

    def threshold_rule(weights, amount, scope="global"):
        groups = [[w] for w in weights] if scope == "layer" else [weights]
        out = []
        for ws in groups:
            flat = np.sort(np.concatenate([np.abs(w).ravel() for w in ws]))
            k = int(round(amount * flat.size))
            cut = flat[k - 1] if k else -1.0
            out += [(np.abs(w) > cut).astype(np.float32) for w in ws]
        return out

    fails("compression.magnitude_masks", "amount=0.2", "237 weights zeroed in all, expected 216",
          magnitude_masks=threshold_rule)

    def last_of_ties_first(weights, amount, scope="global"):  # the reverse tie-break
        flipped = make_masks()([np.flip(w) for w in weights], amount, scope)
        return [np.flip(m) for m in flipped]

    rec = run("compression.magnitude_masks", magnitude_masks=last_of_ties_first)
    assert rec["score"] == rec["max_score"], rec["message"]


# ---- exercise 2: CSR -----------------------------------------------------------------------------

def test_csr_failures():
    ex = "compression.csr"
    fails(ex, "indptr has 4 entries, expected 5", dense_to_csr=make_to_csr(leading_zero=False))
    fails(ex, "20 values stored, expected 5", "zeros must not be stored",
          dense_to_csr=make_to_csr(store_zeros=True))
    fails(ex, "indptr", dense_to_csr=make_to_csr(column_order=True))
    fails(ex, "csr_matmul(the 4 x 5 example", csr_matmul=make_csr_matmul(transposed=True))
    fails(ex, "csr_matmul(", csr_matmul=make_csr_matmul(off_by_one=True))
    fails(ex, "store no value, so their result must be zero",
          csr_matmul=make_csr_matmul(garbage_rows=True))
    fails(ex, "integer arrays", dense_to_csr=lambda a: (np.zeros(a.shape[0] + 1), [], []))
    fails(ex, "integer arrays", dense_to_csr=lambda a: tuple(
        np.asarray(v, np.float64) for v in make_to_csr()(a)))
    fails(ex, "expected 3 values", dense_to_csr=lambda a: a)
    fails(ex, "the result has shape", csr_matmul=lambda ip, ix, dt, x: make_csr_matmul()(
        ip, ix, dt, x).T)


def test_csr_matmul_cases_include_unsorted_rows_and_empty_rows():
    cases = [c for c in get("compression.csr").check.cases() if c["kind"] == "matmul"]
    unsorted = empty = False
    for c in cases:
        ip, ix = c["indptr"], c["indices"]
        empty |= bool((np.diff(ip) == 0).any())
        unsorted |= any((np.diff(ix[ip[i]:ip[i + 1]]) < 0).any() for i in range(len(ip) - 1))
    assert unsorted and empty


@pytest.mark.parametrize("obs", [None, "csr", [1, 2, 3], [np.zeros(5), np.zeros(0), None],
                                 [np.zeros(5, int), np.zeros((2, 2), int), np.zeros(5)]])
def test_csr_judge_on_forged_observations(obs):
    ex = get("compression.csr")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())
    matmul = next(c for c in ex.check.cases() if c["kind"] == "matmul")
    with pytest.raises(CheckFailed):
        ex.check.judge(matmul, obs, _Tester())


# ---- exercise 3: low rank ------------------------------------------------------------------------

def test_low_rank_failures():
    ex = "compression.low_rank"
    fails(ex, "rank", "expected", "smallest rank", svd_low_rank=make_low_rank(on_s=True))
    fails(ex, "rank", "chosen, expected", svd_low_rank=make_low_rank(strict=True))
    fails(ex, "rank", "chosen, expected", svd_low_rank=make_low_rank(plus_one=True))
    fails(ex, "the best rank-", "Eckart-Young", svd_low_rank=make_low_rank(no_s=True))

    def random_factors(W, energy):
        a, b = make_low_rank()(W, energy)
        rng = np.random.default_rng(0)
        return rng.standard_normal(a.shape), rng.standard_normal(b.shape)

    fails(ex, "Eckart-Young", svd_low_rank=random_factors)
    fails(ex, "A is (20, r) and B is (r, 12)", svd_low_rank=lambda W, e: (
        make_low_rank()(W, e)[1], make_low_rank()(W, e)[0]))
    fails(ex, "expected 2 values", svd_low_rank=lambda W, e: W)


def test_low_rank_energies_are_clear_of_the_boundaries():
    for case in get("compression.low_rank").check.cases():
        s = np.linalg.svd(case["W"], compute_uv=False)
        kept = np.cumsum(s ** 2) / np.sum(s ** 2)
        r = case["_rank"]
        assert kept[r - 1] >= case["energy"] - 1e-9, case["what"]
        if r > 1:
            assert kept[r - 2] < case["energy"] - 1e-5, case["what"]


@pytest.mark.parametrize("obs", [None, "AB", [np.zeros(3), np.zeros(3)], [np.zeros((20, 2))],
                                 [np.zeros((20, 2)), np.zeros((3, 12))]])
def test_low_rank_judge_on_forged_observations(obs):
    ex = get("compression.low_rank")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


# ---- exercise 4: distillation --------------------------------------------------------------------

def test_distillation_loss_failures():
    ex = "compression.distillation"
    fails(ex, "lacks the factor T^2", distillation_loss=make_loss(t2=False))
    fails(ex, "sums over the batch", distillation_loss=make_loss(mean=False))
    fails(ex, "wrong way round", distillation_loss=make_loss(reverse=True))
    fails(ex, "logits in the thousands", "subtract each row's maximum",
          distillation_loss=make_loss(stable=False))
    fails(ex, "expected a number", distillation_loss=lambda *a: "0.5")
    fails(ex, "expected a number", distillation_loss=lambda *a: [1.0, 2.0])


def test_distillation_grad_failures():
    ex = "compression.distillation"
    fails(ex, "(q - p) / T", distillation_grad=make_grad(soft_factor="1/T"))
    fails(ex, "lacks its factor T", distillation_grad=make_grad(soft_factor="1"))
    fails(ex, "not divided by the batch size", distillation_grad=make_grad(mean=False))
    fails(ex, "wrong sign", distillation_grad=make_grad(sign=-1.0))
    fails(ex, "expected (8, 10)", distillation_grad=lambda s, *a: make_grad()(s, *a).T)
    fails(ex, "inf or nan", distillation_grad=lambda s, *a: make_grad()(s, *a) * np.nan)


def test_distillation_loss_accepts_a_0d_array():
    assert run("compression.distillation",
               distillation_loss=lambda *a: np.float32(make_loss()(*a)))["score"] == 3


def test_closed_form_gradient_matches_finite_differences():
    for case in get("compression.distillation").check.cases()[::2]:
        if case["s"].size > 1000:  # the 2000 x 50 batch: 200,000 losses; the small ones show it
            continue
        s = case["s"].astype(np.float64)
        args = (case["t"], case["y"], case["T"], case["alpha"])
        g = compression_train.reference_grad(s, *args)
        eps = 1e-5 * max(1.0, float(np.abs(s).max()))
        fd = np.zeros_like(s)
        for idx in np.ndindex(s.shape):
            d = np.zeros_like(s)
            d[idx] = eps
            fd[idx] = (compression_train.reference_loss(s + d, *args)
                       - compression_train.reference_loss(s - d, *args)) / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-7, err_msg=case["what"])


def test_reference_loss_equals_the_library():
    import mlc
    from mlc import compress

    for case in get("compression.distillation").check.cases()[:10:2]:
        s = mlc.Tensor(case["s"].astype(np.float64), dtype="float64")
        lib = compress.distillation_loss(s, case["t"].astype(np.float64), case["y"],
                                         case["T"], case["alpha"]).numpy()
        ours = compression_train.reference_loss(case["s"], case["t"], case["y"], case["T"],
                                                case["alpha"])
        assert np.isclose(float(lib), ours, rtol=1e-6), case["what"]


@pytest.mark.parametrize("obs", [None, "0.5", True, [1.0], np.zeros((2, 2)), {"loss": 1.0}])
def test_distillation_judge_on_forged_observations(obs):
    ex = get("compression.distillation")
    loss_case, grad_case = ex.check.cases()[:2]
    with pytest.raises(CheckFailed):
        ex.check.judge(loss_case, obs, _Tester())
    with pytest.raises(CheckFailed):
        ex.check.judge(grad_case, obs, _Tester())


# ---- exercise 5: channel pruning -----------------------------------------------------------------

def test_channel_prune_failures():
    ex = "compression.channel_prune"
    fails(ex, "keep the units whose incoming weights have the largest L1 norm",
          prune_hidden_units=make_prune(by="out"))
    fails(ex, "largest L1 norm", prune_hidden_units=make_prune(by="signed"))
    fails(ex, "differ from the original's with the removed units",
          prune_hidden_units=make_prune(bias=False))
    fails(ex, "differ from the original's", prune_hidden_units=make_prune(w2_rows="first"))
    fails(ex, "differ from the original's", prune_hidden_units=make_prune(w2_rows="reversed"))
    fails(ex, "the new W1 has shape (64, 16), expected (64, 8)",
          prune_hidden_units=lambda W1, b1, W2, b2, a: (W1, b1, W2, b2, np.arange(8)))

    def keeps_too_many(W1, b1, W2, b2, amount):
        return make_prune()(W1, b1, W2, b2, amount * 0.5)

    fails(ex, "hidden units kept", prune_hidden_units=keeps_too_many)

    def float_keep(*args):
        out = list(make_prune()(*args))
        out[-1] = out[-1].astype(float)
        return out

    fails(ex, "distinct units", prune_hidden_units=float_keep)
    fails(ex, "expected 5 values", prune_hidden_units=lambda *a: a[:4])


def test_channel_prune_accepts_unsorted_keep_when_consistent():
    def unsorted(W1, b1, W2, b2, amount):
        *_, keep = make_prune()(W1, b1, W2, b2, amount)
        keep = keep[::-1]
        return W1[:, keep], b1[keep], W2[keep], b2, keep

    assert run("compression.channel_prune", prune_hidden_units=unsorted)["score"] == 3


def test_channel_reference_equals_the_library():
    """The grader's kept set is the one ``mlc.compress.prune_channels`` chooses."""
    from mlc import compress, nn

    for case in get("compression.channel_prune").check.cases():
        model = nn.Sequential(nn.Linear(*case["W1"].shape), nn.ReLU(),
                              nn.Linear(*case["W2"].shape))
        model.modules[0].weight.data = nn.Parameter(case["W1"])
        plan = compress.channel_plan(model, case["amount"])
        assert np.array_equal(plan[0][1], compression_train.reference_keep(
            case["W1"], case["amount"])), case["what"]


@pytest.mark.parametrize("obs", [None, "x", [1, 2, 3, 4, 5],
                                 [np.zeros((64, 8))] * 4 + [np.arange(8)],
                                 [np.zeros((64, 8)), np.zeros(8), np.zeros((8, 10)),
                                  np.zeros(10), np.full(8, 99)]])
def test_channel_prune_judge_on_forged_observations(obs):
    ex = get("compression.channel_prune")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


# ---- the library stays out of the notebook -------------------------------------------------------

@pytest.mark.parametrize("cell", ["from mlc import compress", "import mlc.compress as C",
                                  "from mlc.compress import to_csr",
                                  "def f(a):\n    return mlc.compress.to_csr(a)"])
def test_using_the_library_fails(cell):
    ex = get("compression.csr")
    with pytest.raises(CheckFailed, match="uses mlc.compress"):
        ex.check.inspect(Sources(["import numpy as np", cell]), _Tester())
    ex.check.inspect(Sources(["import numpy as np", "from mlc import nn"]), _Tester())


# ---- the package and the notebooks ---------------------------------------------------------------

def test_modules_stay_small():
    for mod in (compression, compression_train):
        assert len(Path(mod.__file__).read_text().splitlines()) <= 400


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "11_compression.ipynb")
    assert (report.score, report.max_score) == (sum(POINTS), sum(POINTS)), [
        (r.id, r.message) for r in report.results]


def test_released_notebook_gets_zero(graded):
    report = graded(ROOT / "exercises" / "11_compression.ipynb")
    assert report.max_score == sum(POINTS) and report.score == 0, report.results
    assert all("not implemented" in r.message for r in report.results), [
        r.message for r in report.results]


# ---- wrong answers that matched the visible cases (issue 20) ----------------------------------

distillation_loss = REFERENCE["distillation_loss"]
log_softmax = _log_softmax

def test_csr_matmul_that_densifies_scores_zero():
    def csr_matmul(indptr, indices, data, x):
        m = len(indptr) - 1
        dense = np.zeros((m, np.asarray(x).shape[0]), np.float32)
        for i in range(m):
            for p in range(indptr[i], indptr[i + 1]):
                dense[i, indices[p]] = data[p]
        return dense @ x

    fails("compression.csr", "holds NaN", "touch only the stored values", csr_matmul=csr_matmul)


def test_csr_matmul_through_scipy_sparse_scores_zero():
    # read from the notebook's source: scipy need not be installed for the rule to hold
    cell = ("from scipy.sparse import csr_matrix\n\n"
            "def csr_matmul(indptr, indices, data, x):\n"
            "    m, k = len(indptr) - 1, x.shape[0]\n"
            "    return np.asarray(csr_matrix((data, indices, indptr), shape=(m, k)) @ x)\n")
    with pytest.raises(CheckFailed, match="uses scipy.sparse"):
        get("compression.csr").check.inspect(Sources([cell]), _Tester())


def test_csr_matmul_that_densifies_with_numpy_indexing_scores_zero():
    def csr_matmul(indptr, indices, data, x):
        m = len(indptr) - 1
        rows = np.repeat(np.arange(m), np.diff(indptr))
        dense = np.zeros((m, np.asarray(x).shape[0]))
        np.add.at(dense, (rows, indices), data)
        return np.einsum("ik,kn->in", dense, x)

    fails("compression.csr", "holds NaN", csr_matmul=csr_matmul)


def test_distillation_grad_by_finite_differences_scores_zero():
    def distillation_grad(s, t, y, T, alpha):
        s = np.asarray(s, np.float64)
        g, eps = np.zeros_like(s), 1e-5
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                d = np.zeros_like(s)
                d[i, j] = eps
                g[i, j] = (distillation_loss(s + d, t, y, T, alpha)
                           - distillation_loss(s - d, t, y, T, alpha)) / (2 * eps)
        return g

    # graded without the 2000 x 50 case, which such a loop would take minutes over
    rec = _without_large(distillation_grad=distillation_grad)
    assert rec["score"] == 0 and "numerical derivative" in rec["message"], rec


def test_distillation_grad_by_autodiff_scores_zero():
    import mlc

    def distillation_grad(s, t, y, T, alpha):
        st = mlc.Tensor(np.asarray(s, np.float32))
        n, k = st.shape
        p = np.exp(log_softmax(np.asarray(t, np.float64) / T)).astype(np.float32)
        z = st / T
        log_q = z - mlc.ops.logsumexp(z, axes=(1,)).reshape((n, 1)).broadcast_to((n, k))
        zs = st - mlc.ops.logsumexp(st, axes=(1,)).reshape((n, 1)).broadcast_to((n, k))
        onehot = np.eye(k, dtype=np.float32)[y]
        loss = ((mlc.Tensor(p, requires_grad=False) * log_q).sum() * (-alpha * T * T)
                - (zs * mlc.Tensor(onehot, requires_grad=False)).sum() * (1 - alpha)) / n
        loss.backward()
        return st.grad.numpy()

    fails("compression.distillation", "automatic differentiation",
          distillation_grad=distillation_grad)


def test_distillation_grad_through_a_helper_that_differentiates_the_loss_scores_zero():
    def numeric(f, s, eps=1e-6):
        g = np.zeros_like(s)
        for idx in np.ndindex(*s.shape):
            d = np.zeros_like(s)
            d[idx] = eps
            g[idx] = (f(s + d) - f(s - d)) / (2 * eps)
        return g

    def distillation_grad(s, t, y, T, alpha):
        return numeric(lambda z: distillation_loss(z, t, y, T, alpha), np.asarray(s, np.float64))

    rec = _without_large(distillation_grad=distillation_grad, numeric=numeric,
                         In=[_source(numeric), _source(distillation_grad)])
    assert rec["score"] == 0 and "numerical derivative" in rec["message"], rec


def _source(fn):
    import inspect
    import textwrap

    return textwrap.dedent(inspect.getsource(fn))


def _without_large(**overrides):
    """Grade compression.distillation without its 2000 x 50 case (a numerical derivative
    takes minutes over it; the source rule is what these tests are about)."""
    from unittest import mock

    from mlc.grading.checks import compression_train

    small = [c for c in compression_train._distill_cases() if "2000" not in c["what"]]
    with mock.patch.object(compression_train, "_distill_cases", return_value=small):
        return run("compression.distillation", **overrides)


# ---- the audit's wrong answers (issue 20, second pass) ------------------------------------------

def test_csr_that_treats_tiny_values_as_zeros_scores_zero():
    def dense_to_csr(a):   # np.isclose(a, 0) is |a| <= 1e-8: 1e-30 is not a zero
        a = np.asarray(a)
        keep = ~np.isclose(a, 0)
        rows, cols = np.nonzero(keep)
        indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
        return indptr, cols, a[rows, cols]

    fails("compression.csr", "tiny nonzeros", "2 values stored, expected 5", "exactly 0",
          dense_to_csr=dense_to_csr)


def test_csr_matmul_that_densifies_only_the_named_columns_scores_zero():
    """No NaN reaches the result (only named rows of x are read), but the dense matrix is
    made all the same: the hidden 1200 x 1200 case measures the memory held."""
    def csr_matmul(indptr, indices, data, x):
        m = len(indptr) - 1
        dense = np.zeros((m, np.asarray(x).shape[0]))
        dense[np.repeat(np.arange(m), np.diff(indptr)), indices] = data
        named = np.unique(indices)
        return dense[:, named] @ x[named]

    fails("compression.csr", "1200 x 1200", "memory in proportion to the stored values",
          "MB at once", csr_matmul=csr_matmul)


def test_csr_matmul_memory_case_passes_a_vectorised_product():
    def csr_matmul(indptr, indices, data, x):
        m = len(indptr) - 1
        out = np.zeros((m, x.shape[1]))
        np.add.at(out, np.repeat(np.arange(m), np.diff(indptr)), data[:, None] * x[indices])
        return out

    assert run("compression.csr", csr_matmul=csr_matmul)["score"] == 3


def test_csr_indptr_from_bincount_without_minlength_scores_zero():
    def dense_to_csr(a):   # trailing empty rows get no count
        rows, cols = np.nonzero(a)
        return np.concatenate([[0], np.cumsum(np.bincount(rows))]), cols, a[rows, cols]

    fails("compression.csr", "last two rows are empty", "indptr has 4 entries, expected 6",
          dense_to_csr=dense_to_csr)


def _masks_by(select):
    """magnitude_masks from a rule that picks the pruned positions of one flat group."""
    def magnitude_masks(weights, amount, scope="global"):
        out = []
        for ws in ([[w] for w in weights] if scope == "layer" else [weights]):
            flat = np.concatenate([np.asarray(w, np.float64).ravel() for w in ws])
            keep = np.ones(flat.size)
            keep[select(flat, amount)] = 0.0
            for start, w in zip(np.cumsum([0] + [w.size for w in ws]), ws, strict=False):
                out.append(keep[start:start + w.size].reshape(w.shape))
        return out
    return magnitude_masks


@pytest.mark.parametrize("select, fragments", [
    (lambda f, a: np.abs(f) <= np.percentile(np.abs(f), 100 * a), ["weights zeroed in all"]),
    (lambda f, a: np.argsort(np.abs(f), kind="stable")[:int(np.ceil(a * f.size))],
     ["amount=0.9", "2132 weights zeroed in all, expected 2131"]),
    (lambda f, a: (lambda nz: nz[np.argsort(np.abs(f[nz]), kind="stable")][
        :int(round(a * f.size))])(np.flatnonzero(f)),     # zeros already there not ranked
     ["already 40% zero", "keeps a weight with |w| = 0"]),
])
def test_magnitude_masks_more_wrong_counts_and_rankings(select, fragments):
    fails("compression.magnitude_masks", *fragments, magnitude_masks=_masks_by(select))


def test_magnitude_masks_normalised_per_layer_under_global_scope_scores_zero():
    def magnitude_masks(weights, amount, scope="global"):
        if scope == "layer":
            return make_masks()(weights, amount, scope)
        return make_masks()([w / np.abs(w).max() for w in weights], amount, scope)

    fails("compression.magnitude_masks", "scope='global'", "smallest in magnitude",
          magnitude_masks=magnitude_masks)


def test_low_rank_energy_of_the_norm_or_relative_to_the_largest_value_scores_zero():
    def of_the_norm(W, energy):   # sqrt(sum S^2 kept / total): the Frobenius fraction
        u, s, vt = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
        kept = np.sqrt(np.cumsum(s ** 2) / np.sum(s ** 2))
        r = min(int(np.searchsorted(kept, energy - 1e-12)) + 1, s.size)
        return u[:, :r] * s[:r], vt[:r]

    def relative(W, energy):      # keep the values above (1 - energy) * S[0]
        u, s, vt = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
        r = max(1, int(np.sum(s / s[0] >= 1 - energy)))
        return u[:, :r] * s[:r], vt[:r]

    fails("compression.low_rank", "energy=0.99", "rank 3 chosen, expected 4",
          svd_low_rank=of_the_norm)
    fails("compression.low_rank", "rank 4 chosen, expected 2", svd_low_rank=relative)


def _loss(soft=None, hard=None):
    """distillation_loss with another soft or hard term (the reference's otherwise)."""
    def distillation_loss(s, t, y, T, alpha):
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        n = len(s)
        log_p, log_q = _log_softmax(t / T), _log_softmax(s / T)
        kl = (soft or (lambda lp, lq, t_: np.sum(np.exp(lp) * (lp - lq))))(log_p, log_q, t)
        ce = -np.sum((hard or (lambda s_, lq: _log_softmax(s_)))(s, log_q)[np.arange(n), y])
        return float((alpha * T * T * kl + (1 - alpha) * ce) / n)
    return distillation_loss


@pytest.mark.parametrize("loss, fragment", [
    (_loss(hard=lambda s, lq: lq), "expected 3.11353, got 2.95981"),     # CE at temperature T
    (_loss(soft=lambda lp, lq, t: -np.sum(np.exp(lp) * lq)), "got 35.02663"),  # no entropy
    (_loss(soft=lambda lp, lq, t: np.sum(np.exp(_log_softmax(t)) * (_log_softmax(t) - lq))),
     "got 13.66722"),                                                      # teacher at T = 1
])
def test_distillation_loss_more_wrong_terms(loss, fragment):
    fails("compression.distillation", "T=4.0, alpha=0.9", fragment, distillation_loss=loss)


def test_distillation_loss_as_the_log_of_a_stable_softmax_scores_zero():
    def distillation_loss(s, t, y, T, alpha):   # exp underflows to 0, then log(0) = -inf
        def softmax(z):
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p, q = softmax(t / T), softmax(s / T)
            kl = np.sum(p * (np.log(p) - np.log(q)))
            ce = -np.sum(np.log(softmax(s))[np.arange(len(s)), y])
        return float((alpha * T * T * kl + (1 - alpha) * ce) / len(s))

    fails("compression.distillation", "logits in the thousands", "got nan",
          distillation_loss=distillation_loss)


def test_distillation_grad_with_the_hard_term_at_temperature_t_scores_zero():
    def distillation_grad(s, t, y, T, alpha):
        s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
        n, k = s.shape
        p, q = np.exp(_log_softmax(t / T)), np.exp(_log_softmax(s / T))
        return (alpha * T * (q - p) + (1 - alpha) * (q - np.eye(k)[y]) / T) / n

    fails("compression.distillation", "distillation_grad(8 examples", "the gradient with "
          "respect to", distillation_grad=distillation_grad)


def _prune_by(score=None, count=None):
    def prune_hidden_units(W1, b1, W2, b2, amount):
        h = W1.shape[1]
        scores = score(W1, b1) if score else np.abs(W1).sum(axis=0)
        n_keep = count(amount, h) if count else max(1, int(round((1 - amount) * h)))
        keep = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        return W1[:, keep], b1[keep], W2[keep], b2, keep
    return prune_hidden_units


@pytest.mark.parametrize("variant, fragments", [
    (_prune_by(score=lambda W1, b1: np.linalg.norm(W1, axis=0)), ["largest L1 norm"]),
    (_prune_by(score=lambda W1, b1: np.abs(W1).sum(axis=0) + np.abs(b1)), ["largest L1 norm"]),
    (_prune_by(count=lambda a, h: max(1, int(np.ceil((1 - a) * h)))),
     ["12 -> 10 -> 4", "expected (12, 6)", "rounded to the nearest"]),
    (_prune_by(count=lambda a, h: int(round((1 - a) * h))), ["one unit left", "(5, 0)"]),
])
def test_channel_prune_more_wrong_scores_and_counts(variant, fragments):
    fails("compression.channel_prune", *fragments, prune_hidden_units=variant)

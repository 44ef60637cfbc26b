"""Cost models of mlc.tune on synthetic data: they must learn what the data says."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.tune.cost_model import BoostedStumps, RidgeModel, best_stump, make_model


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_ridge_without_penalty_is_least_squares(seed, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, d)) * rng.uniform(0.1, 10, size=d)
    y = rng.normal(size=30)
    pred = RidgeModel(lam=0.0).fit(X, y).predict(X)
    A = np.hstack([X, np.ones((30, 1))])
    w = np.linalg.lstsq(A, y, rcond=None)[0]
    np.testing.assert_allclose(pred, A @ w, atol=1e-8)


def test_ridge_recovers_a_linear_law_and_the_penalty_shrinks():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([2.0, -1.0, 0.0]) + 3.0
    m = RidgeModel(lam=1e-6).fit(X, y)
    Xt = rng.normal(size=(20, 3))
    np.testing.assert_allclose(m.predict(Xt), Xt @ np.array([2.0, -1.0, 0.0]) + 3.0,
                               atol=1e-4)
    strong = RidgeModel(lam=1e4).fit(X, y)
    assert np.abs(strong.coef_).sum() < 0.2 * np.abs(m.coef_).sum()


def test_ridge_ignores_constant_columns():
    X = np.column_stack([np.arange(10.0), np.full(10, 7.0)])
    y = 2 * np.arange(10.0)
    np.testing.assert_allclose(RidgeModel(lam=0).fit(X, y).predict(X), y, atol=1e-9)


def test_best_stump_finds_the_step():
    X = np.array([[0.0, 5.0], [1.0, 4.0], [2.0, 5.0], [3.0, 4.0]])
    r = np.array([-1.0, -1.0, 1.0, 1.0])
    f, t, lv, rv, gain = best_stump(X, r)
    assert (f, t, lv, rv) == (0, 1.5, -1.0, 1.0)
    assert gain == pytest.approx(4.0)
    assert best_stump(np.ones((3, 2)), np.array([1.0, 2.0, 3.0])) is None


def test_stumps_learn_a_threshold_law_that_ridge_cannot():
    # A "fits in cache" law: slow above a footprint threshold, whatever the rest.
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 10, size=(80, 4))
    y = np.where(X[:, 1] > 6.0, 3.0, 0.0) + 0.3 * X[:, 2] + rng.normal(0, 0.05, 80)
    Xt = rng.uniform(0, 10, size=(200, 4))
    yt = np.where(Xt[:, 1] > 6.0, 3.0, 0.0) + 0.3 * Xt[:, 2]
    stumps = BoostedStumps(n_rounds=100, learning_rate=0.3).fit(X, y)
    ridge = RidgeModel().fit(X, y)
    err_s = np.mean((stumps.predict(Xt) - yt) ** 2)
    err_r = np.mean((ridge.predict(Xt) - yt) ** 2)
    assert err_s < 0.5 * err_r
    assert err_s < 0.25 * np.var(yt)
    assert spearman(stumps.predict(Xt), yt) > 0.9
    imp = stumps.importance()
    assert imp[1] > 0 and imp[1] + imp[2] > imp[0] + imp[3]


def test_stumps_on_constant_target_predict_the_constant():
    X = np.random.default_rng(3).normal(size=(10, 3))
    m = BoostedStumps().fit(X, np.full(10, 1.5))
    assert m.stumps_ == []
    np.testing.assert_allclose(m.predict(X), 1.5)


@pytest.mark.parametrize("model", [RidgeModel(), BoostedStumps()])
def test_bad_input_raises(model):
    with pytest.raises(ValueError, match="before fit"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2-d"):
        model.fit(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        model.fit(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        model.fit(np.array([[np.nan, 1.0]]), np.zeros(1))
    model.fit(np.random.default_rng(0).normal(size=(6, 3)), np.arange(6.0))
    with pytest.raises(ValueError, match="3 features"):
        model.predict(np.zeros((2, 4)))


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="lam"):
        RidgeModel(lam=-1)
    with pytest.raises(ValueError, match="n_rounds"):
        BoostedStumps(n_rounds=0)
    with pytest.raises(ValueError, match="learning_rate"):
        BoostedStumps(learning_rate=0)
    with pytest.raises(ValueError, match="unknown cost model"):
        make_model("xgboost")
    assert isinstance(make_model("ridge"), RidgeModel)

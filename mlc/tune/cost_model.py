"""Cost models: learn log(run time) from loop features, in a few lines of numpy.

A tuner measures few candidates and proposes many; the cost model decides which of the
many are worth measuring. It only has to *rank* well, and it must learn from a few dozen
samples, so two small models suffice:

* :class:`RidgeModel` — linear least squares with an L2 penalty on standardized
  features, ``w = (X^T X + lam I)^{-1} X^T y``. Fast and stable, but linear: it cannot say
  "a tile is good when it fits L1 and bad when it does not".
* :class:`BoostedStumps` — gradient boosting of depth-1 trees (a threshold on one
  feature). Each round fits the residual with the single split that reduces the squared
  error most and adds ``learning_rate`` times it. A sum of steps captures thresholds like
  cache sizes, and the model stays readable: every stump is a (feature, threshold) pair.

* :class:`Ensemble` — the average of the two (the default in ``tune``).

All predict ``log(seconds)``: times span orders of magnitude and ratios are what matter.
"""

from __future__ import annotations

import numpy as np


def _check_xy(X, y=None):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-d array (samples, features), got shape "
                         f"{X.shape}")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (X.shape[0],):
        raise ValueError(f"targets must have shape ({X.shape[0]},) to match features "
                         f"{X.shape}, got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("cannot fit a cost model on 0 samples")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("features and targets must be finite")
    return X, y


class RidgeModel:
    """Ridge regression ``y ~ x . w + b`` on standardized features."""

    def __init__(self, lam: float = 1.0):
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.lam = lam
        self.coef_ = None

    def fit(self, X, y) -> "RidgeModel":
        X, y = _check_xy(X, y)
        self.mean_, self.scale_ = X.mean(0), X.std(0)
        self.scale_[self.scale_ == 0] = 1.0  # constant columns carry no information
        Z = (X - self.mean_) / self.scale_
        self.intercept_ = y.mean()
        A = Z.T @ Z + self.lam * np.eye(Z.shape[1])
        # lstsq, not solve: with lam = 0 a constant (all-zero) column makes A singular.
        self.coef_ = np.linalg.lstsq(A, Z.T @ (y - self.intercept_), rcond=None)[0]
        return self

    def predict(self, X) -> np.ndarray:
        if self.coef_ is None:
            raise ValueError("predict before fit: the model has not seen any data")
        X, _ = _check_xy(X)
        if X.shape[1] != self.coef_.shape[0]:
            raise ValueError(f"model was fit on {self.coef_.shape[0]} features, got "
                             f"{X.shape[1]}")
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_


def best_stump(X: np.ndarray, r: np.ndarray):
    """The split ``x[f] <= t`` that best fits residual ``r`` with two constants.

    Returns ``(feature, threshold, left_value, right_value, sse_reduction)``, or None when
    no feature takes two values. For each feature, sorting the samples once gives every
    split's left and right sums by cumulative sums, so the search is O(n log n) per feature.
    """
    n, d = X.shape
    total, best = r.sum(), None
    for f in range(d):
        order = np.argsort(X[:, f], kind="stable")
        xs, rs = X[order, f], r[order]
        csum = np.cumsum(rs)[:-1]
        k = np.arange(1, n)
        valid = xs[1:] > xs[:-1]  # split only between distinct values
        if not valid.any():
            continue
        # SSE reduction of fitting means left and right: S_l^2/n_l + S_r^2/n_r - S^2/n.
        gain = csum ** 2 / k + (total - csum) ** 2 / (n - k) - total ** 2 / n
        gain = np.where(valid, gain, -np.inf)
        i = int(np.argmax(gain))
        if best is None or gain[i] > best[4]:
            t = 0.5 * (xs[i] + xs[i + 1])
            best = (f, t, csum[i] / (i + 1), (total - csum[i]) / (n - i - 1), gain[i])
    return best


class BoostedStumps:
    """Gradient-boosted decision stumps for squared error.

    ``prediction = mean(y) + learning_rate * sum(stump_m(x))``; round ``m`` fits its stump
    to the residual ``y - prediction``. ``n_rounds`` and ``learning_rate`` trade fit for
    smoothness; with a few dozen samples, 50-100 rounds at 0.2-0.3 do well.
    """

    def __init__(self, n_rounds: int = 60, learning_rate: float = 0.25):
        if n_rounds < 1:
            raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
        if not 0 < learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {learning_rate}")
        self.n_rounds, self.learning_rate = n_rounds, learning_rate
        self.stumps_ = None

    def fit(self, X, y) -> "BoostedStumps":
        X, y = _check_xy(X, y)
        self.n_features_ = X.shape[1]
        self.base_ = y.mean()
        pred = np.full_like(y, self.base_)
        self.stumps_ = []
        for _ in range(self.n_rounds):
            s = best_stump(X, y - pred)
            if s is None or s[4] <= 1e-12:
                break  # the residual is constant on every split: nothing left to learn
            f, t, lv, rv, _ = s
            self.stumps_.append((f, t, lv, rv))
            pred += self.learning_rate * np.where(X[:, f] <= t, lv, rv)
        return self

    def predict(self, X) -> np.ndarray:
        if self.stumps_ is None:
            raise ValueError("predict before fit: the model has not seen any data")
        X, _ = _check_xy(X)
        if X.shape[1] != self.n_features_:
            raise ValueError(f"model was fit on {self.n_features_} features, got {X.shape[1]}")
        out = np.full(X.shape[0], self.base_)
        for f, t, lv, rv in self.stumps_:
            out += self.learning_rate * np.where(X[:, f] <= t, lv, rv)
        return out

    def importance(self) -> np.ndarray:
        """How often each feature was split on (a rough 'what mattered')."""
        if self.stumps_ is None:
            raise ValueError("importance before fit")
        counts = np.zeros(self.n_features_)
        for f, *_ in self.stumps_:
            counts[f] += 1
        return counts


class Ensemble:
    """The average of several models' predictions.

    Ridge regression ranks the broad trends (more traffic, slower) and the stumps the
    thresholds; on real tuning logs (a few dozen matmul schedules) their average ranked
    held-out candidates better than either alone.
    """

    def __init__(self, models=None):
        self.models = list(models) if models is not None else [
            RidgeModel(lam=10.0), BoostedStumps(n_rounds=60, learning_rate=0.1)]
        if not self.models:
            raise ValueError("an Ensemble needs at least one model")

    def fit(self, X, y) -> "Ensemble":
        for m in self.models:
            m.fit(X, y)
        return self

    def predict(self, X) -> np.ndarray:
        return np.mean([m.predict(X) for m in self.models], axis=0)


MODELS = ("ensemble", "stumps", "ridge")


def make_model(kind: str):
    """A fresh cost model by name: "ensemble" (ridge + stumps), "stumps" or "ridge"."""
    if kind == "ensemble":
        return Ensemble()
    if kind == "stumps":
        return BoostedStumps()
    if kind == "ridge":
        return RidgeModel(lam=10.0)
    raise ValueError(f"unknown cost model {kind!r}; expected one of {MODELS}")

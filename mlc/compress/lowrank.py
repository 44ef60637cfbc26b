"""Low-rank factorisation: one ``in x out`` Linear becomes two thin ones.

The singular value decomposition writes any weight as ``W = U diag(S) V^T`` with the
singular values ``S`` in decreasing order. Keeping the first ``r`` terms,

    W ~ W_r = (U_r sqrt(S_r)) (sqrt(S_r) V_r^T) = A B,   A: (in, r),  B: (r, out),

is the best rank-``r`` approximation of ``W`` in the Frobenius (and spectral) norm
(Eckart-Young). ``x @ W`` becomes ``(x @ A) @ B``: two Linears, the first without bias,
the second with the original bias. Parameters and multiply-adds per example drop from
``in * out`` to ``r * (in + out)``, a saving only when ``r < in * out / (in + out)``
(for a square ``n x n`` weight, below half the rank).

How to choose ``r``: the *energy* ``sum(S[:r]^2) / sum(S^2)`` is the fraction of
``||W||_F^2`` that ``W_r`` keeps (``||W - W_r||_F^2 = sum(S[r:]^2)``); ``energy=0.9``
takes the smallest rank that keeps 90%. Trained weights usually have a fast-decaying
spectrum, random ones a flat one, which is why low rank works on the first and not the
second. A little fine-tuning of the two factors recovers most of what is lost.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .masks import effective_weight
from ..models.train import accuracy, clone, fit

__all__ = ["LowRankLinear", "low_rank", "low_rank_model", "rank_for_energy", "rank_sweep"]


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    """Smallest ``r`` with ``sum(S[:r]^2) >= energy * sum(S^2)``."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy is a fraction of sum(S^2), in (0, 1]; got {energy}")
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    total = s2.sum()
    if total == 0:
        return 1
    kept = np.cumsum(s2) / total
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, s2.size))


class LowRankLinear(nn.Sequential):
    """``Linear(in, r, bias=False)`` then ``Linear(r, out)``: a factorised ``Linear``.

    Attributes: ``rank``, ``energy`` (fraction of ``sum(S^2)`` kept), ``singular_values``
    (all of them, for a spectrum plot), ``in_features``, ``out_features``.
    """

    def __init__(self, first: nn.Linear, second: nn.Linear, singular_values, rank: int):
        super().__init__(first, second)
        self.in_features = first.in_features
        self.out_features = second.out_features
        self.rank = rank
        self.singular_values = np.asarray(singular_values)
        s2 = self.singular_values.astype(np.float64) ** 2
        self.energy = float(s2[:rank].sum() / s2.sum()) if s2.sum() else 1.0

    def parameters_count(self) -> int:
        return sum(p.size for p in self.parameters())

    def dense_parameters_count(self) -> int:
        bias = self.modules[1].bias
        return self.in_features * self.out_features + (0 if bias is None else bias.size)

    def report(self) -> dict:
        """Parameters and multiply-adds per example, dense vs factorised, and the savings."""
        dense_p, lr_p = self.dense_parameters_count(), self.parameters_count()
        dense_f = 2 * self.in_features * self.out_features
        lr_f = 2 * self.rank * (self.in_features + self.out_features)
        return dict(rank=self.rank, energy=self.energy, params_dense=dense_p,
                    params=lr_p, params_saved=dense_p - lr_p, flops_dense=dense_f,
                    flops=lr_f, flops_saved=dense_f - lr_f)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}"

    def __repr__(self) -> str:
        return f"LowRankLinear({self.extra_repr()}, energy={self.energy:.3f})"


def low_rank(linear: nn.Linear, rank: int | None = None,
             energy: float | None = None) -> LowRankLinear:
    """The rank-``rank`` SVD factorisation of ``linear`` (or the smallest rank keeping
    ``energy`` of ``sum(S^2)``; give one of the two). At full rank it computes the same
    function as ``linear`` up to rounding. ``.report()`` has the parameters and FLOPs
    saved (negative when the rank is too high to save anything)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"low_rank: expects an nn.Linear, got {type(linear).__name__}")
    if (rank is None) == (energy is None):
        raise ValueError("low_rank: give exactly one of rank= and energy=")
    w = effective_weight(linear).astype(np.float64)  # (in, out)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    full = s.size
    if rank is None:
        rank = rank_for_energy(s, energy)
    if not 1 <= rank <= full:
        raise ValueError(f"low_rank: rank must lie in [1, {full}] for a {w.shape} weight, "
                         f"got {rank}")
    root = np.sqrt(s[:rank])
    a = (u[:, :rank] * root).astype(np.float32)          # (in, r)
    b = (root[:, None] * vt[:rank]).astype(np.float32)   # (r, out)
    dev, dt = linear.weight.device, linear.weight.dtype
    first = nn.Linear(linear.in_features, rank, bias=False, device=dev, dtype=dt)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None, device=dev,
                       dtype=dt)
    first.weight = nn.Parameter(a, device=dev, dtype=dt)
    second.weight = nn.Parameter(b, device=dev, dtype=dt)
    if linear.bias is not None:
        second.bias = nn.Parameter(linear.bias.numpy(), device=dev, dtype=dt)
    return LowRankLinear(first, second, s, rank)


def low_rank_model(model: nn.Module, rank: int | None = None, energy: float | None = None,
                   skip_last: bool = True) -> nn.Module:
    """A copy of ``model`` with its Linears (inside ``Sequential``s) replaced by
    :func:`low_rank` factorisations; ``rank`` is capped at each layer's full rank.
    ``skip_last`` keeps the final classifier whole (it is small and sensitive)."""
    small = clone(model)
    seqs = [m for m in [small] + small._children() if isinstance(m, nn.Sequential)
            and not isinstance(m, LowRankLinear)]
    linears = [(s, i) for s in seqs for i, m in enumerate(s.modules) if type(m) is nn.Linear]
    if skip_last and linears:
        linears = linears[:-1]
    for s, i in linears:
        lin = s.modules[i]
        r = None if rank is None else min(rank, lin.in_features, lin.out_features)
        s.modules[i] = low_rank(lin, rank=r, energy=energy)
    return small


def rank_sweep(model: nn.Module, data, ranks, fine_tune_epochs: int = 2, lr: float = 0.003,
               seed: int = 0) -> list[dict]:
    """Accuracy of :func:`low_rank_model` at each rank, before and after fine-tuning.

    ``data = (X_train, y_train, X_test, y_test)``. Rows: ``rank``, ``params``,
    ``accuracy`` (factorised, as is), ``accuracy_finetuned`` (after
    ``fine_tune_epochs`` of Adam at ``lr``).
    """
    X_train, y_train, X_test, y_test = data
    rows = []
    for r in ranks:
        lr_model = low_rank_model(model, rank=r)
        acc = accuracy(lr_model, X_test, y_test)
        params = sum(p.size for p in lr_model.parameters())
        fit(lr_model, X_train, y_train, epochs=fine_tune_epochs, lr=lr, seed=seed)
        rows.append(dict(rank=r, params=params, accuracy=acc,
                         accuracy_finetuned=accuracy(lr_model, X_test, y_test)))
    return rows

"""Pruning over time: iterative pruning with fine-tuning, and the lottery ticket.

**Iterative pruning** (Han et al. 2015). Cutting 90% of the weights at once removes
many that still mattered and the network has no chance to compensate. Pruning in steps,
``0.5 -> 0.75 -> 0.9``, with a little training after each (the masks keep the pruned
weights at zero while the survivors adapt), loses far less accuracy for the same final
sparsity. :func:`iterative_prune` runs such a schedule and records each step.

**The lottery ticket hypothesis** (Frankle and Carbin 2019): a dense network contains
a sparse subnetwork (a "winning ticket") that, trained *from the same initial values*,
matches the dense network. The experiment: train, prune, then

- **rewind** the surviving weights to the values they had at initialisation, keep the
  mask, train again;
- **re-initialise** them at random instead (same mask, fresh weights), train again.

If the ticket is real, rewinding beats re-initialising: the mask *and* the initial
values together are what won. :func:`lottery_ticket` runs both over several seeds and
reports means and spreads, since one seed proves nothing at this scale.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import nn
from .masks import apply_mask, get_mask, prunable, prune_magnitude, sparsity
from ..models.train import accuracy, clone, fit

__all__ = ["iterative_prune", "lottery_ticket", "copy_masks"]


def iterative_prune(model: nn.Module, data, schedule=(0.5, 0.75, 0.9), epochs: int = 2,
                    scope: str = "global", lr: float = 0.003, seed: int = 0) -> list[dict]:
    """Prune ``model`` in place to each sparsity of ``schedule`` in turn, fine-tuning
    ``epochs`` epochs (Adam at ``lr``) after each step.

    ``data = (X_train, y_train, X_test, y_test)``. Rows: ``amount``, ``sparsity``
    (measured), ``accuracy_pruned`` (right after pruning), ``accuracy`` (after
    fine-tuning); the first row, ``amount=0``, is the model as given.
    """
    X_train, y_train, X_test, y_test = data
    rows = [dict(amount=0.0, sparsity=sparsity(model), accuracy_pruned=None,
                 accuracy=accuracy(model, X_test, y_test))]
    for step, amount in enumerate(schedule):
        prune_magnitude(model, amount, scope=scope)
        pruned = accuracy(model, X_test, y_test)
        if epochs:
            fit(model, X_train, y_train, epochs=epochs, lr=lr, seed=seed + step)
        rows.append(dict(amount=float(amount), sparsity=sparsity(model),
                         accuracy_pruned=pruned, accuracy=accuracy(model, X_test, y_test)))
    return rows


def copy_masks(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Apply each mask of ``src`` to the same-named weight of ``dst`` (same architecture)."""
    dst_layers = {name: (m, a) for name, m, a in prunable(dst)}
    for name, m, a in prunable(src):
        mask = get_mask(m, a)
        if mask is not None:
            dm, da = dst_layers[name]
            apply_mask(dm, mask, da)
    return dst


def _mean_std(xs):
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else 0.0


def lottery_ticket(make_model: Callable[[int], nn.Module], data, amount: float = 0.9,
                   seeds=(0, 1, 2), epochs: int = 10, lr: float = 0.01,
                   scope: str = "global") -> dict:
    """Rewind-to-init vs random re-init of the same pruning mask, over ``seeds``.

    ``make_model(seed)`` builds a freshly initialised model. For each seed: train it
    (``dense``), prune it to ``amount`` by magnitude, then train the mask from the
    original initial values (``rewind``) and from a new random initialisation
    (``reinit``), each for ``epochs``. Returns the per-seed test accuracies and their
    ``*_mean`` / ``*_std``.
    """
    X_train, y_train, X_test, y_test = data
    out = {"dense": [], "rewind": [], "reinit": []}
    for seed in seeds:
        model = make_model(seed)
        init_state = {n: p.numpy().copy() for n, p in model.named_parameters()}
        fit(model, X_train, y_train, epochs=epochs, lr=lr, seed=seed)
        out["dense"].append(accuracy(model, X_test, y_test))
        prune_magnitude(model, amount, scope=scope)

        ticket = clone(model)
        ticket.load_state_dict(init_state, strict=False)  # the masks stay
        copy_masks(model, ticket)                           # re-zero the pruned weights
        fit(ticket, X_train, y_train, epochs=epochs, lr=lr, seed=seed)
        out["rewind"].append(accuracy(ticket, X_test, y_test))

        fresh = copy_masks(model, make_model(seed + 10_000))
        fit(fresh, X_train, y_train, epochs=epochs, lr=lr, seed=seed)
        out["reinit"].append(accuracy(fresh, X_test, y_test))
    result: dict = {"seeds": list(seeds), "amount": amount, "sparsity": amount, **out}
    for key in ("dense", "rewind", "reinit"):
        result[f"{key}_mean"], result[f"{key}_std"] = _mean_std(out[key])
    return result

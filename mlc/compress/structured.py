"""Structured pruning: remove whole units and channels, and get a *smaller* model back.

A mask (``masks.py``) zeroes weights but keeps every one of them: same arrays, same
matmuls, same time. Removing a hidden unit instead deletes a column of the layer that
computes it and the matching row of the layer that reads it, so both matmuls shrink:

    h = relu(x @ W1 + b1)        W1: (in, H)    keep units S  ->  W1[:, S], b1[S]
    y = h @ W2 + b2              W2: (H, out)                 ->  W2[S, :]

The kept units compute exactly what they computed before (their columns and biases are
untouched); the output loses only the contributions of the removed ones. For a
convolution a unit is an output channel: ``W[..., S]`` in the producer, ``W[:, :, S, :]``
in the next convolution, or, after a ``Flatten`` of NHWC activations, the rows
``p * C + S`` of the next Linear for every pixel ``p``.

Which units? The *L1 norm* of each unit's incoming weights (Li et al. 2017, "Pruning
Filters for Efficient ConvNets"): a unit with small weights contributes little.

What lies between a producer and its consumer must act on each unit separately:
activations, ``Dropout``, ``Identity``, ``BatchNorm1d`` (its weight, bias and running
statistics are sliced along with the units: the function is kept). ``LayerNorm1d`` is
sliced too, but it averages *over* the units, so removing some changes the statistics
of the rest: there the kept units' function is not preserved exactly. Any other module
is a barrier: the layer before it is left whole.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor
from .masks import effective_weight
from ..models.train import clone

__all__ = ["prune_channels", "channel_plan", "unit_importance"]

_PASS_THROUGH = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)
_NORMS = (nn.BatchNorm1d, nn.LayerNorm1d)


def _leaves(model: nn.Module) -> list[nn.Module]:
    """The chain of layers in execution order: nested ``Sequential``s flattened."""
    if isinstance(model, nn.Sequential):
        out = []
        for m in model.modules:
            out.extend(_leaves(m))
        return out
    return [model]


def _is_producer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv)) or hasattr(m, "slice_outputs")


def _is_consumer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv)) or hasattr(m, "slice_inputs")


def unit_importance(m: nn.Module) -> np.ndarray:
    """L1 norm of each output unit's weights (masks applied): one score per unit."""
    if hasattr(m, "output_importance"):
        return m.output_importance()
    w = effective_weight(m)
    return np.abs(w.reshape(-1, w.shape[-1])).sum(axis=0)


def channel_plan(model: nn.Module, amount: float) -> list[tuple[int, np.ndarray]]:
    """``(index in the layer chain, kept units sorted)`` for each prunable producer.

    A producer is prunable when a consumer (Linear, Conv, or a module with
    ``slice_inputs``) follows it through pass-through layers, norms and at most one
    ``Flatten``. It keeps ``max(1, round((1 - amount) * units))`` units, the largest
    by :func:`unit_importance`.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune_channels: amount is the fraction of units removed, in "
                         f"[0, 1); got {amount}")
    chain = _leaves(model)
    plan = []
    for i, m in enumerate(chain):
        if not _is_producer(m) or _consumer_after(chain, i) is None:
            continue
        scores = unit_importance(m)
        n_keep = max(1, int(round((1.0 - amount) * scores.size)))
        keep = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
        plan.append((i, keep))
    return plan


def _consumer_after(chain, i):
    """Index of the consumer reading producer ``chain[i]``'s units, or None."""
    flattened = False
    for j in range(i + 1, len(chain)):
        m = chain[j]
        if isinstance(m, _PASS_THROUGH) or isinstance(m, _NORMS):
            continue
        if isinstance(m, nn.Flatten) and not flattened:
            flattened = True
            continue
        if _is_consumer(m) and not (flattened and not isinstance(m, nn.Linear)):
            return j
        return None
    return None


def _param(array: np.ndarray, like: Tensor) -> nn.Parameter:
    return nn.Parameter(np.ascontiguousarray(array), device=like.device, dtype=like.dtype)


def _slice_param(module, attr, keep, axis):
    t = getattr(module, attr)
    if t is None:
        return
    arr = np.take(t.numpy(), keep, axis=axis)
    if isinstance(t, nn.Parameter):
        setattr(module, attr, _param(arr, t))
    else:
        setattr(module, attr, Tensor(arr, device=t.device, dtype=t.dtype, requires_grad=False))


def _slice_outputs(m: nn.Module, keep: np.ndarray) -> None:
    """Keep only the output units ``keep`` of a producer."""
    if hasattr(m, "slice_outputs"):
        m.slice_outputs(keep)
        return
    for attr in ("weight", "weight_mask", "bias", "bias_mask"):
        if getattr(m, attr, None) is not None:
            _slice_param(m, attr, keep, axis=-1)
    if isinstance(m, nn.Linear):
        m.out_features = int(keep.size)
    else:
        m.out_channels = int(keep.size)


def _slice_inputs(m: nn.Module, keep: np.ndarray, flatten_units: int | None) -> None:
    """Keep only the inputs ``keep`` of a consumer; ``flatten_units`` = channels before a
    Flatten of NHWC activations (rows ``p * C + c`` of a Linear), else None."""
    if hasattr(m, "slice_inputs"):
        m.slice_inputs(keep)
        return
    if isinstance(m, nn.Linear):
        if flatten_units is not None:
            pixels = m.in_features // flatten_units
            keep = (np.arange(pixels)[:, None] * flatten_units + keep[None, :]).reshape(-1)
        for attr in ("weight", "weight_mask"):
            if getattr(m, attr, None) is not None:
                _slice_param(m, attr, keep, axis=0)
        m.in_features = int(keep.size)
    else:  # Conv: (K, K, C_in, C_out)
        for attr in ("weight", "weight_mask"):
            if getattr(m, attr, None) is not None:
                _slice_param(m, attr, keep, axis=2)
        m.in_channels = int(keep.size)


def _slice_norm(m: nn.Module, keep: np.ndarray) -> None:
    for attr in ("weight", "bias", "running_mean", "running_var"):
        if getattr(m, attr, None) is not None:
            _slice_param(m, attr, keep, axis=0)
    m.dim = int(keep.size)


def _units(m: nn.Module) -> int:
    if hasattr(m, "out_channels"):
        return m.out_channels
    return m.out_features


def prune_channels(model: nn.Module, amount: float, plan=None) -> nn.Module:
    """A **smaller copy** of ``model`` with a fraction ``amount`` of each hidden layer's
    units (a Linear's outputs, a Conv's output channels) removed, the next layer's
    matching inputs with them.

    The last layer's outputs (the classes) are never removed: only units some later
    layer reads. ``plan`` (from :func:`channel_plan`) chooses the units instead of the
    L1 norms. The original model is not modified. Masks from ``prune_magnitude`` are
    sliced along with their weights.
    """
    plan = channel_plan(model, amount) if plan is None else plan
    small = clone(model)
    chain = _leaves(small)
    for i, keep in plan:
        keep = np.asarray(keep, dtype=np.int64)
        producer = chain[i]
        units = _units(producer)
        if keep.size == 0 or keep.min() < 0 or keep.max() >= units:
            raise IndexError(f"prune_channels: kept units must lie in [0, {units}) and be "
                             f"at least one; got {keep.size} units")
        j = _consumer_after(chain, i)
        flatten_units = None
        for m in chain[i + 1:j]:
            if isinstance(m, _NORMS):
                _slice_norm(m, keep)
            elif isinstance(m, nn.Flatten):
                flatten_units = units
        _slice_outputs(producer, keep)
        _slice_inputs(chain[j], keep, flatten_units)
    return small

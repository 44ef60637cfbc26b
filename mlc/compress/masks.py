"""Unstructured and semi-structured pruning with masks: set weights to zero, keep them zero.

**Magnitude pruning** (Han et al. 2015, "Learning both Weights and Connections"): the
weights with the smallest ``|w|`` matter least, so set them to zero. ``amount`` is the
*target sparsity*: after ``prune_magnitude(model, 0.9)`` 90% of the prunable weights
are zero, however many were zero before (so a schedule 0.5, 0.75, 0.9 prunes further at
each step). Two ways to choose which:

- ``scope="layer"``: every layer loses the same fraction of its own weights;
- ``scope="global"``: one threshold over all layers together, so layers with many small
  weights (usually the big ones) lose more and small, crowded layers keep more.

**Masks.** A zero written into a weight does not stay zero: the next optimiser step moves
it again. So the pruned positions are recorded in a 0/1 buffer ``weight_mask`` on the
module and the forward pass uses ``weight * weight_mask`` (a forward pre-hook swaps it
in for the call). The gradient of a masked entry is then exactly zero, and whatever the
optimiser does to the stored value, the weight the model *computes with* stays zero.
:func:`remove_masks` folds the mask into the weight for good and removes the hooks.
(PyTorch's ``torch.nn.utils.prune`` works the same way, which is why a pruned PyTorch
model is exactly as big and as slow as before: zeros are still stored and still
multiplied. See ``structured.py`` and ``sparse.py`` for the two ways to turn zeros into
savings.)

**2:4 semi-structured sparsity** (NVIDIA Ampere's sparse tensor cores): in every group of
four consecutive weights along the *input* dimension keep the two largest. Exactly 50%
sparse, and regular enough that a kernel can store two values and two 2-bit positions
per group (``sparse.Sparse24Matrix``).

Prunable weights are the ``weight`` of ``nn.Linear`` (shape ``(in, out)``) and
``nn.Conv`` (``(K, K, C_in, C_out)``) and any module that lists its own in
``prunable_weights`` (the depthwise-separable convolution); biases and normalisation
parameters are few and are left alone.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor

__all__ = ["prunable", "prune_magnitude", "prune_semi_structured", "prune_2_4", "sparsity",
           "remove_masks", "apply_mask", "get_mask", "effective_weight", "layer_sparsity",
           "nm_mask"]

MASK_SUFFIX = "_mask"


# -- which weights ------------------------------------------------------------------------

def _weight_names(module: nn.Module) -> list[str]:
    names = getattr(module, "prunable_weights", None)
    if names is not None:
        return list(names)
    if isinstance(module, (nn.Linear, nn.Conv)):
        return ["weight"]
    return []


def prunable(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(dotted name, module, attribute)`` of every prunable weight, in model order."""
    out = []
    for prefix, m in model.named_modules():
        for attr in _weight_names(m):
            out.append((f"{prefix}.{attr}" if prefix else attr, m, attr))
    return out


# -- masks on modules ---------------------------------------------------------------------

def get_mask(module: nn.Module, attr: str = "weight") -> np.ndarray | None:
    """The 0/1 mask of ``module.<attr>`` as a numpy array, or None when it has none."""
    m = getattr(module, attr + MASK_SUFFIX, None)
    return None if m is None else m.numpy()


def effective_weight(module: nn.Module, attr: str = "weight") -> np.ndarray:
    """The weight the forward pass computes with: ``weight * mask`` (numpy)."""
    w = getattr(module, attr).numpy()
    mask = get_mask(module, attr)
    return w if mask is None else w * mask


def _apply_masks(module: nn.Module, args) -> None:
    """Forward pre-hook: every masked weight is ``weight * mask`` for this call.

    The product is an ordinary autodiff expression, so backward sends ``grad * mask`` to
    the stored weight: zero wherever the mask is zero. The hooks are module-level
    functions that receive the module, never closures over it, so a deep copy of a
    masked model (``models.clone``) masks its own weights.
    """
    _restore_weights(module)  # a forward that raised left the products in place
    module._unmasked = {attr: getattr(module, attr) for attr in module._masked}
    for attr, w in module._unmasked.items():
        object.__setattr__(module, attr, w * getattr(module, attr + MASK_SUFFIX))


def _restore_weights(module: nn.Module, args=None, output=None) -> None:
    """Forward hook: put the stored weights (the Parameters) back after the call."""
    for attr, w in vars(module).pop("_unmasked", {}).items():
        object.__setattr__(module, attr, w)


def apply_mask(module: nn.Module, mask: np.ndarray, attr: str = "weight") -> None:
    """Keep ``module.<attr>`` multiplied by ``mask`` (0/1, the weight's shape) from now on.

    The mask becomes the buffer ``<attr>_mask`` (saved by ``state_dict``); the stored
    weight is zeroed where the mask is zero, and ``module.forward`` computes with
    ``weight * mask``. Applying a new mask replaces the old one.
    """
    w = getattr(module, attr)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != w.shape:
        raise ValueError(f"apply_mask: mask of shape {mask.shape} for {attr} of shape "
                         f"{w.shape}")
    if not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError("apply_mask: a mask holds only 0 and 1")
    module.register_buffer(attr + MASK_SUFFIX,
                           Tensor(mask, device=w.device, dtype=w.dtype, requires_grad=False))
    w.data = Tensor(w.numpy() * mask, device=w.device, dtype=w.dtype, requires_grad=False)
    masked = list(vars(module).get("_masked", []))
    if attr not in masked:
        masked.append(attr)
    module._masked = masked
    if _apply_masks not in vars(module).get("_forward_pre_hooks", ()):
        module.register_forward_pre_hook(_apply_masks)
        module.register_forward_hook(_restore_weights)


def remove_masks(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight (``w = w * mask``) and drop it; returns ``model``.

    The model then computes the same function with plain layers: the zeros are in the
    weights themselves and stay only as long as nothing trains them.
    """
    for _, m in model.named_modules():
        _restore_weights(m)
        for attr in list(vars(m).get("_masked", [])):
            w = getattr(m, attr)
            w.data = Tensor(effective_weight(m, attr), device=w.device, dtype=w.dtype,
                            requires_grad=False)
            delattr(m, attr + MASK_SUFFIX)
            m._buffers.remove(attr + MASK_SUFFIX)
        if "_masked" in vars(m):
            del m._masked
            m._forward_pre_hooks.remove(_apply_masks)
            m._forward_hooks.remove(_restore_weights)
    return model


# -- measuring ----------------------------------------------------------------------------

def layer_sparsity(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(name, zeros, size)`` of each prunable weight, masks applied."""
    out = []
    for name, m, attr in prunable(model):
        w = effective_weight(m, attr)
        out.append((name, int(w.size - np.count_nonzero(w)), int(w.size)))
    return out


def sparsity(model: nn.Module) -> float:
    """Fraction of the prunable weights that are zero (masks applied); 0 when none."""
    rows = layer_sparsity(model)
    size = sum(r[2] for r in rows)
    return sum(r[1] for r in rows) / size if size else 0.0


# -- magnitude pruning --------------------------------------------------------------------

def _check_amount(amount: float, fn: str) -> None:
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"{fn}: amount is the fraction of weights to zero, in [0, 1]; "
                         f"got {amount}")


def _smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """A 0/1 mask with zeros at the ``k`` smallest scores (exactly ``k``, ties by order)."""
    keep = np.ones(scores.size, dtype=np.float32)
    if k > 0:
        keep[np.argsort(scores.reshape(-1), kind="stable")[:k]] = 0.0
    return keep.reshape(scores.shape)


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global") -> nn.Module:
    """Zero the smallest-magnitude weights until a fraction ``amount`` of them is zero.

    ``scope="global"`` ranks all prunable weights of the model together;
    ``scope="layer"`` ranks each layer's weights on their own, so every layer ends at
    ``amount``. Weights already pruned score 0 and stay pruned. Works in place and
    returns ``model``; the masks keep the zeros through training (see the module doc).
    """
    _check_amount(amount, "prune_magnitude")
    if scope not in ("global", "layer"):
        raise ValueError(f"prune_magnitude: scope must be 'global' or 'layer', got {scope!r}")
    layers = prunable(model)
    if not layers:
        raise ValueError(f"prune_magnitude: {type(model).__name__} has no prunable weights "
                         "(Linear or Conv)")
    scores = [np.abs(effective_weight(m, attr)) for _, m, attr in layers]
    if scope == "layer":
        masks = [_smallest(s, int(round(amount * s.size))) for s in scores]
    else:
        flat = np.concatenate([s.reshape(-1) for s in scores])
        keep = _smallest(flat, int(round(amount * flat.size)))
        sizes = np.cumsum([0] + [s.size for s in scores])
        masks = [keep[a:b].reshape(s.shape)
                 for a, b, s in zip(sizes[:-1], sizes[1:], scores, strict=True)]
    for (_, m, attr), mask in zip(layers, masks, strict=True):
        apply_mask(m, mask, attr)
    return model


# -- N:M semi-structured pruning ----------------------------------------------------------

def nm_mask(weight: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """Keep the ``n`` largest ``|w|`` of every ``m`` consecutive inputs (axis ``-2``
    after flattening all but the output axis: a Linear's ``in``, a Conv's ``K*K*C_in``)."""
    w = np.asarray(weight)
    rows = int(np.prod(w.shape[:-1]))
    if rows % m:
        raise ValueError(f"{n}:{m} pruning needs the input dimension ({rows}) to be a "
                         f"multiple of {m}")
    cols = w.shape[-1]
    groups = np.abs(w.reshape(rows // m, m, cols))
    order = np.argsort(-groups, axis=1, kind="stable")  # largest first
    mask = np.zeros_like(groups, dtype=np.float32)
    np.put_along_axis(mask, order[:, :n, :], 1.0, axis=1)
    return mask.reshape(w.shape)


def prune_semi_structured(model: nn.Module, n: int = 2, m: int = 4) -> nn.Module:
    """N:M pruning of every prunable weight whose input dimension divides by ``m``
    (others are left dense); in place, masks as in :func:`prune_magnitude`."""
    if not 0 < n <= m:
        raise ValueError(f"prune_semi_structured: need 0 < n <= m, got {n}:{m}")
    for _, mod, attr in prunable(model):
        w = effective_weight(mod, attr)
        if int(np.prod(w.shape[:-1])) % m == 0:
            keep = nm_mask(w, n, m)
            old = get_mask(mod, attr)
            apply_mask(mod, keep if old is None else keep * old, attr)
    return model


def prune_2_4(model: nn.Module) -> nn.Module:
    """2:4 semi-structured pruning: two of every four weights along the input dimension."""
    return prune_semi_structured(model, 2, 4)

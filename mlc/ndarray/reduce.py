"""Reductions (``sum``, ``max``) over any set of axes, with one kernel per backend.

A backend reduces the middle axis of a compact array seen as ``(outer, reduce, inner)``:

- reducing axes that are one contiguous block ``s..e-1`` of a compact array needs no data
  movement at all: ``outer = prod(shape[:s])``, ``reduce = prod(shape[s:e])``,
  ``inner = prod(shape[e:])``. Summing rows (axis 1 of a matrix) has ``inner = 1``;
  summing columns (axis 0) has ``outer = 1``.
- any other set of axes (say 0 and 2 of a 3-d array) is first permuted to the end and
  compacted, as needle does, and then reduced with ``inner = 1``.
"""

from __future__ import annotations

from . import shapes as S
from .ndarray import NDArray


def output_dtype(op: str, dtype: str) -> str:
    """Sums of narrow integers accumulate in int32 (int8 activations' dot products);
    int64 (token ids, indices) stays int64."""
    S.check_arithmetic(op, dtype)
    if op == "sum" and dtype in ("int8", "uint8", "int32"):
        return "int32"
    return dtype


def reduce(op: str, a: NDArray, axis=None, keepdims: bool = False) -> NDArray:
    axes = S.normalize_axes(axis, a.ndim)
    kept = tuple(i for i in range(a.ndim) if i not in axes)
    if keepdims:
        out_shape = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
    else:
        out_shape = tuple(a.shape[i] for i in kept)
    reduce_size = S.prod(a.shape[i] for i in axes)
    if op == "max" and reduce_size == 0:
        raise ValueError(f"max over axes {axes} of an array of shape {a.shape}: the "
                         "reduced axes are empty and max has no identity")
    dtype = output_dtype(op, a.dtype)
    if not axes:  # nothing to reduce: a copy (in the output dtype)
        return a.astype(dtype).reshape(out_shape)

    if axes == tuple(range(axes[0], axes[-1] + 1)):
        x, inner = a.compact(), S.prod(a.shape[axes[-1] + 1:])
    else:  # the reduced axes moved last, in a single copy even when a is itself a view
        x, inner = a.permute(kept + axes).compact(), 1
    out = NDArray.make(out_shape, device=a.device, dtype=dtype)
    getattr(a.device, f"reduce_{op}")(x.handle, out.handle, reduce_size, inner)
    return out

"""Making arrays: from data, filled with a value, random, and by joining arrays.

Random arrays are drawn on the host with numpy's RNG and copied to the device, so
``np.random.seed(0)`` (or an explicit ``rng=np.random.default_rng(0)``) makes them
reproducible on every device.
"""

from __future__ import annotations

import numpy as np

from . import shapes as S
from .ndarray import NDArray


def array(obj, dtype="float32", device=None) -> NDArray:
    """A new array holding a copy of ``obj`` (NDArray, numpy array, nested lists, scalar).

    ``dtype=None`` keeps the dtype of an NDArray or numpy ``obj`` when it is supported.
    """
    return NDArray(obj, device=device, dtype=dtype)


def empty(shape, dtype="float32", device=None) -> NDArray:
    """An array of ``shape`` whose elements are whatever the buffer held."""
    return NDArray.make(shape, device=device, dtype=dtype)


def full(shape, fill_value, dtype="float32", device=None) -> NDArray:
    arr = empty(shape, dtype, device)
    arr.fill(fill_value)
    return arr


def zeros(shape, dtype="float32", device=None) -> NDArray:
    return full(shape, 0, dtype, device)


def ones(shape, dtype="float32", device=None) -> NDArray:
    return full(shape, 1, dtype, device)


def _shape_args(shape) -> tuple[int, ...]:
    # randn(2, 3) and randn((2, 3)) both work
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return S.as_shape(shape)


def rand(*shape, dtype="float32", device=None, rng=None) -> NDArray:
    """Uniform samples in [0, 1) from ``rng`` (default: numpy's global RNG)."""
    shape = _shape_args(shape)
    data = rng.random(shape) if rng is not None else np.random.rand(*shape)
    return NDArray(np.asarray(data), device=device, dtype=dtype)


def randn(*shape, dtype="float32", device=None, rng=None) -> NDArray:
    """Standard normal samples from ``rng`` (default: numpy's global RNG)."""
    shape = _shape_args(shape)
    data = rng.standard_normal(shape) if rng is not None else np.random.randn(*shape)
    return NDArray(np.asarray(data), device=device, dtype=dtype)


def _check_same(arrays, what: str):
    """The arrays as a list, and the dtype they promote to; all must share one device."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError(f"{what} needs at least one array")
    if not all(isinstance(a, NDArray) for a in arrays):
        raise TypeError(f"{what} expects NDArrays")
    dev, dtype = arrays[0].device, arrays[0].dtype
    for a in arrays[1:]:
        if a.device != dev:
            raise ValueError(f"{what}: arrays are on different devices: {dev!r} and "
                             f"{a.device!r}")
        dtype = S.result_dtype("add", dtype, a.dtype)
    return arrays, dtype


def concatenate(arrays, axis: int = 0) -> NDArray:
    """Join arrays along an existing axis (all other axes must match).

    Each input is written into a slice of the output with ``__setitem__``: one strided
    copy per input, no Python loop over elements.
    """
    arrays, dtype = _check_same(arrays, "concatenate")
    first = arrays[0]
    axis = S.normalize_axis(axis, first.ndim)
    for a in arrays[1:]:
        if a.ndim != first.ndim or any(n != m for i, (n, m) in
                                       enumerate(zip(a.shape, first.shape, strict=True))
                                       if i != axis):
            raise ValueError(f"concatenate along axis {axis}: shape {a.shape} does not match "
                             f"{first.shape} outside that axis")
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = empty(tuple(shape), dtype, first.device)
    start = 0
    for a in arrays:
        idx = (slice(None),) * axis + (slice(start, start + a.shape[axis]),)
        out[idx] = a
        start += a.shape[axis]
    return out


def stack(arrays, axis: int = 0) -> NDArray:
    """Join arrays of equal shape along a new axis ``axis``."""
    arrays, dtype = _check_same(arrays, "stack")
    first = arrays[0]
    for a in arrays[1:]:
        if a.shape != first.shape:
            raise ValueError(f"stack needs arrays of one shape, got {first.shape} and "
                             f"{a.shape}")
    axis = S.normalize_axis(axis, first.ndim + 1)
    shape = first.shape[:axis] + (len(arrays),) + first.shape[axis:]
    out = empty(shape, dtype, first.device)
    for i, a in enumerate(arrays):
        out[(slice(None),) * axis + (i,)] = a
    return out


def split(a: NDArray, axis: int = 0) -> list[NDArray]:
    """The inverse of ``stack``: compact copies of each slice along ``axis``."""
    axis = S.normalize_axis(axis, a.ndim)
    return [a[(slice(None),) * axis + (i,)].compact() for i in range(a.shape[axis])]


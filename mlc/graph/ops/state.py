"""State that a compiled graph keeps between calls: ``cache_write``, the KV cache's update.

A decoder runs one small graph per token, and each run must add the new token's key and
value to a cache that the next run reads. Passing the cache in and out of every call
would copy it twice per token; instead the cache is *state*: a buffer the executable
owns, and ``cache_write`` writes the new slots into it in place::

    %k_cache = input                                   float32[1, 4, 8, 11]   (state)
    %k_all   = cache_write(%k_cache, %k_new, %pos) {axis: 3}
                                                       float32[1, 4, 8, 11]
    %scores  = matmul(%q, %k_all)                      float32[1, 4, 1, 11]

As a value the op is pure, which is what :func:`mlc.graph.interpret` runs: the cache with
``new`` written at positions ``start[b] .. start[b] + n - 1`` of ``axis`` (``n`` is
``new``'s length there), every other slot unchanged. Its :class:`OpDef` says
``inplace=0``: the output *is* input 0 updated, so a built graph gives the output that
input's buffer, and the :class:`~mlc.graph.executor.Executable` keeps such an input as
state (allocated once, never passed by the caller, never copied; see its ``state``). The
write touches ``n`` slots per batch row, not the cache: the cost of a token does not
grow with the cache's length.

A position outside the cache is refused with an ``IndexError`` naming it before anything
is written (the kernel checks every row first: Numba does not check bounds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ... import ndarray as nd
from ...autograd.tensor import TensorOp
from .registry import OpDef, register


def _shape(shapes, attrs):
    cache, new, start = shapes
    ax = attrs["axis"]
    if len(new) != len(cache) or not 0 < ax < len(cache) or any(
            a != b for i, (a, b) in enumerate(zip(cache, new, strict=True)) if i != ax):
        raise ValueError(f"cache_write: new {new} must match the cache {cache} on every axis "
                         f"but axis {ax} (and axis 0 is the batch)")
    if new[ax] > cache[ax]:
        raise ValueError(f"cache_write: {new[ax]} new slots do not fit a cache of "
                         f"{cache[ax]} on axis {ax}")
    if start != (cache[0], 1):
        raise ValueError(f"cache_write: start must have shape ({cache[0]}, 1) (one position "
                         f"per batch row), got {start}")
    return cache


def _dtype(dtypes, attrs):
    cache, new, start = dtypes
    if cache != new:
        raise TypeError(f"cache_write: the cache is {cache} but new is {new}")
    if not start.startswith("int"):
        raise TypeError(f"cache_write: start must be an integer position, got {start}")
    return cache


def _as3(shape, axis) -> tuple:
    """``shape`` as ``(batch * before, slots, after)``: the slot axis in the middle."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


@njit(cache=True)
def _bad_start(start, n, slots):
    """The first batch row whose ``n`` slots from ``start`` leave the cache, else -1."""
    for b in range(start.shape[0]):
        if start[b] < 0 or start[b] + n > slots:
            return b
    return -1


@njit(cache=True)
def _write(out, new, start, rows_per_batch):
    """``out[r, start[r // rows_per_batch] + j, :] = new[r, j, :]`` (3-D views)."""
    bad = _bad_start(start, new.shape[1], out.shape[1])
    if bad >= 0:                           # every row checked before any write
        return bad
    n = new.shape[1]
    for r in range(out.shape[0]):
        s = start[r // rows_per_batch]
        for j in range(n):
            for c in range(out.shape[2]):
                out[r, s + j, c] = new[r, j, c]
    return -1


def _refuse(start, b, n, slots):
    raise IndexError(f"cache_write: batch row {b} writes {n} slot(s) from position "
                     f"{int(start[b])}, outside a cache of {slots} slots")


def _write_slots(cache, new, start, out, c3, n3):
    """``out`` = ``cache`` with ``new`` at ``start`` (``c3``/``n3``: their 3-D shapes); only
    the new slots are written when ``out`` is ``cache``, as the executor arranges."""
    if out is not cache:
        out[...] = cache
    st = start.reshape(-1)
    bad = _write(out.reshape(c3), new.reshape(n3), st, c3[0] // st.shape[0])
    if bad >= 0:
        _refuse(st, bad, n3[1], c3[1])
    return out


def _reference(attrs, cache, new, start):
    c, n, s = (a.numpy() for a in (cache, new, start))
    ax = attrs["axis"]
    st = s.reshape(-1).astype(np.int64)
    bad = _bad_start(st, n.shape[ax], c.shape[ax])
    if bad >= 0:
        _refuse(st, bad, n.shape[ax], c.shape[ax])
    out, k = np.array(c, copy=True), n.shape[ax]
    for b, p in enumerate(st):
        out[(b,) + (slice(None),) * (ax - 1) + (slice(int(p), int(p) + k),)] = n[b]
    return nd.array(out, dtype=str(out.dtype), device=cache.device)


def _bind(node):
    """The per-call kernel of a built graph, its 3-D shapes worked out once."""
    ax = node.attrs["axis"]
    c3, n3 = _as3(node.shape, ax), _as3(node.inputs[1].shape, ax)
    return lambda cache, new, start, out: _write_slots(cache, new, start, out, c3, n3)


def _extern(node, cache, new, start):
    ax = node.attrs["axis"]
    return _write_slots(cache, new, start, np.empty_like(cache), _as3(cache.shape, ax),
                        _as3(new.shape, ax))


_extern.bind = _bind


class CacheWrite(TensorOp):
    """The eager (and traced) form: a new tensor, ``cache`` with ``new`` written at
    ``start`` along ``axis`` (no gradient: a cache is inference state)."""

    def __init__(self, axis: int):
        self.axis = int(axis)

    def compute(self, cache, new, start):
        return _reference({"axis": self.axis}, cache, new, start)

    def gradient(self, out_grad, node):
        raise NotImplementedError("cache_write has no gradient: it updates inference state")


def cache_write(cache, new, start, axis: int):
    """``cache`` with ``new`` written at positions ``start`` (``(batch, 1)`` ints) along
    ``axis``; compiled, an in-place write into the executable's state (module docstring)."""
    return CacheWrite(axis)(cache, new, start)


register(OpDef("cache_write", "opaque", _shape, _reference, None, dtype=_dtype, arity=3,
               flops=lambda n: 0, traces=(CacheWrite,),
               attrs_of=lambda op: {"axis": op.axis}, extern=_extern, inplace=0,
               doc="``cache_write(cache, new, start)``: the cache with ``new`` written at "
                   "``start`` along ``axis``; in place in a built graph (state)"))

"""What a matmul kernel reads of B, and in which order: the unit 03 checks run the student's
``@njit`` function as plain Python on a B that logs every element read (by its flat index),
and judge the loop nest from that record (:mod:`.cpu_operators`)."""

from __future__ import annotations

import numpy as np


class TracedB(np.ndarray):
    """B in a traced run: every element of B read is logged by its flat index.

    A scalar read (``B[k, j]``) logs one index; a view (``B[k, j0:j1]``) logs nothing until
    it is read: by indexing, by a ufunc (``a * Bk``), by a numpy function or a copy, each of
    which logs every element it covers."""

    _ids = None
    _log = None

    def __array_finalize__(self, obj):
        self._ids, self._log = None, getattr(obj, "_log", None)

    def _record(self):
        if self._ids is not None and self._log is not None:
            self._log.extend(np.ravel(self._ids).tolist())

    def __getitem__(self, idx):
        out = np.ndarray.__getitem__(self, idx)
        ids = None if self._ids is None else self._ids[idx]
        if isinstance(out, np.ndarray):
            out = out.view(TracedB)
            out._ids, out._log = ids, self._log
            return out
        if ids is not None and self._log is not None:
            self._log.append(int(ids))
        return out

    def copy(self, order="C"):
        self._record()
        return np.ndarray.copy(self.view(np.ndarray), order)

    @staticmethod
    def _plain(args):
        out = []
        for x in args:
            if isinstance(x, TracedB):
                x._record()
                x = x.view(np.ndarray)
            elif isinstance(x, (list, tuple)):
                x = type(x)(TracedB._plain(x))
            out.append(x)
        return out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(self._plain(kwargs["out"]))
        return getattr(ufunc, method)(*self._plain(inputs), **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        plain = self._plain(kwargs.values())
        return func(*self._plain(args), **dict(zip(kwargs, plain, strict=True)))


def traced_run(fn, tile, A, B, C):
    """Run the student's njit function as plain Python (with ``TILE = tile`` unless
    ``tile`` is None): the flat indices of the elements of B it read, in order."""
    import types

    py = getattr(fn, "py_func", fn)
    g = dict(py.__globals__)
    if tile is not None:
        g["TILE"] = tile
    plain = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
    log = []
    Bt = B.view(TracedB)
    Bt._ids, Bt._log = np.arange(B.size).reshape(B.shape), log
    plain(A, Bt, C)
    return np.asarray(log, dtype=np.int64)


def window_distinct(reads, window):
    """The mean number of distinct elements in consecutive windows of ``window`` reads."""
    n = reads.size // window
    if n == 0:
        return float(np.unique(reads).size)
    return float(np.mean([np.unique(reads[w * window:(w + 1) * window]).size
                          for w in range(n)]))

"""Sparse weight formats, their stored bytes, and the products that use them.

Zeros only save something when the format stops storing them and the kernel stops
multiplying by them. Four formats for an ``M x K`` float32 weight with ``nnz`` nonzeros:

=============  ====================================================  ====================
format         what is stored                                        bytes
=============  ====================================================  ====================
``dense``      every value                                           ``4 M K``
``int8``       every value as int8, one float32 scale per row        ``M K + 4 M``
``csr``        nonzero values (float32), their column (int32), and   ``8 nnz + 4 (M + 1)``
               where each row starts (``indptr``, int32)
``int8-csr``   as CSR with int8 values and a float32 scale per row   ``5 nnz + 4 (M + 1)
                                                                     + 4 M``
``2:4``        two float32 values per group of four, 2 bits each     ``2 M K + M K / 8``
               for their positions (needs a 2:4 pattern)
=============  ====================================================  ====================

CSR pays 8 bytes per *kept* weight against dense's 4 per weight: it only stores less
above 50% sparsity, and the int32 column index costs more than an int8 value, so
quantizing the values of a CSR matrix saves less than one would hope. 2:4 stores 56% of
dense at exactly 50% sparsity, with no per-row bookkeeping.

:class:`CSRMatrix` and :class:`Sparse24Matrix` check their arrays when they are built
(shapes, dtypes, ``indptr`` nondecreasing from 0 to ``nnz``, every column in
``[0, K)``), and :func:`csr_matmul` / :func:`sparse24_matmul` check the dense operand,
before any Numba kernel runs: the kernels do not check bounds, and an index out of range
would read or write memory silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sparse_kernels import csr_kernel, sparse24_kernel

__all__ = ["CSRMatrix", "Sparse24Matrix", "to_csr", "to_2_4", "csr_matmul",
           "sparse24_matmul", "stored_bytes", "FORMATS", "is_2_4"]

FORMATS = ("dense", "int8", "csr", "int8-csr", "2:4")


def _as_2d_float32(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {a.shape}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {a.dtype}")
    return np.ascontiguousarray(a)


@dataclass(frozen=True)
class CSRMatrix:
    """An ``M x K`` matrix in compressed sparse row form (validated on construction)."""

    indptr: np.ndarray   # (M + 1,) int32: row i is data[indptr[i]:indptr[i + 1]]
    indices: np.ndarray  # (nnz,) int32: the column of each stored value
    data: np.ndarray     # (nnz,) float32: the values
    shape: tuple

    def __post_init__(self):
        m, k = (int(s) for s in self.shape)
        if m < 0 or k < 0:
            raise ValueError(f"CSRMatrix: bad shape {self.shape}")
        ip, ix, dt = (np.asarray(self.indptr), np.asarray(self.indices),
                      np.asarray(self.data))
        for name, arr, dtype in (("indptr", ip, np.int32), ("indices", ix, np.int32),
                                 ("data", dt, np.float32)):
            if arr.ndim != 1:
                raise ValueError(f"CSRMatrix: {name} must be 1-D, got shape {arr.shape}")
            if arr.dtype != dtype:
                raise TypeError(f"CSRMatrix: {name} must be {np.dtype(dtype).name}, "
                                f"got {arr.dtype}")
        if ip.size != m + 1:
            raise ValueError(f"CSRMatrix: indptr needs M + 1 = {m + 1} entries, got {ip.size}")
        if ix.size != dt.size:
            raise ValueError(f"CSRMatrix: {ix.size} indices for {dt.size} values")
        if ip[0] != 0 or ip[-1] != dt.size or (np.diff(ip) < 0).any():
            raise ValueError("CSRMatrix: indptr must rise from 0 to nnz "
                             f"({dt.size}) without decreasing")
        if ix.size and (ix.min() < 0 or ix.max() >= k):
            raise IndexError(f"CSRMatrix: column indices must lie in [0, {k}), got range "
                             f"[{ix.min()}, {ix.max()}]")
        object.__setattr__(self, "shape", (m, k))
        for name, arr in (("indptr", ip), ("indices", ix), ("data", dt)):
            object.__setattr__(self, name, np.ascontiguousarray(arr))

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    def __matmul__(self, x):
        return csr_matmul(self, x)


def to_csr(dense) -> CSRMatrix:
    """The CSR form of a float32 matrix: every nonzero kept, in row order."""
    a = _as_2d_float32(dense, "to_csr: the matrix")
    rows, cols = np.nonzero(a)
    indptr = np.zeros(a.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=a.shape[0]), out=indptr[1:])
    return CSRMatrix(indptr, cols.astype(np.int32), a[rows, cols].astype(np.float32), a.shape)


def is_2_4(dense) -> bool:
    """Whether every group of four along each row holds at most two nonzeros."""
    a = np.asarray(dense)
    if a.ndim != 2 or a.shape[1] % 4:
        return False
    return bool((np.count_nonzero(a.reshape(a.shape[0], -1, 4), axis=2) <= 2).all())


@dataclass(frozen=True)
class Sparse24Matrix:
    """An ``M x K`` matrix with at most 2 nonzeros in each group of 4 columns of a row.

    ``values`` ``(M, K/2)`` float32 holds the two kept values of group ``g`` at
    ``2g, 2g+1``; ``meta`` ``(M, ceil(K/8))`` uint8 their positions (0..3), two bits
    each, four bits per group, the first in the low bits.
    """

    values: np.ndarray
    meta: np.ndarray
    shape: tuple

    def __post_init__(self):
        m, k = (int(s) for s in self.shape)
        if k % 4:
            raise ValueError(f"Sparse24Matrix: K = {k} is not a multiple of 4")
        v, meta = np.asarray(self.values), np.asarray(self.meta)
        if v.dtype != np.float32:
            raise TypeError(f"Sparse24Matrix: values must be float32, got {v.dtype}")
        if meta.dtype != np.uint8:
            raise TypeError(f"Sparse24Matrix: meta must be uint8, got {meta.dtype}")
        if v.shape != (m, k // 2):
            raise ValueError(f"Sparse24Matrix: values must have shape {(m, k // 2)}, "
                             f"got {v.shape}")
        if meta.shape != (m, (k // 4 + 1) // 2):
            raise ValueError(f"Sparse24Matrix: meta must have shape "
                             f"{(m, (k // 4 + 1) // 2)}, got {meta.shape}")
        # every 2-bit position is in 0..3 by construction, so no index can leave its group
        object.__setattr__(self, "shape", (m, k))
        object.__setattr__(self, "values", np.ascontiguousarray(v))
        object.__setattr__(self, "meta", np.ascontiguousarray(meta))

    def positions(self) -> np.ndarray:
        """``(M, K/2)`` int: the column of each stored value."""
        m, k = self.shape
        g = np.arange(k // 4)
        nib = (self.meta[:, g >> 1] >> ((g & 1) * 4)) & 15
        pos = np.stack([nib & 3, nib >> 2], axis=2).reshape(m, k // 2)
        return pos + 4 * np.repeat(g, 2)[None, :]

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        np.put_along_axis(out, self.positions(), self.values, axis=1)
        return out

    def __matmul__(self, x):
        return sparse24_matmul(self, x)


def to_2_4(dense) -> Sparse24Matrix:
    """Compress a float32 matrix whose rows are 2:4 sparse (see :func:`is_2_4`).

    A group with fewer than two nonzeros stores zeros at unused positions. Prune first
    (``masks.nm_mask`` or ``prune_2_4``) to get the pattern.
    """
    a = _as_2d_float32(dense, "to_2_4: the matrix")
    m, k = a.shape
    if k % 4:
        raise ValueError(f"to_2_4: K = {k} is not a multiple of 4")
    if not is_2_4(a):
        raise ValueError("to_2_4: some group of four holds more than two nonzeros; prune "
                         "to 2:4 first")
    groups = a.reshape(m, k // 4, 4)
    # the two positions per group: nonzeros first (stable), then the rest; kept in order
    order = np.argsort(groups == 0, axis=2, kind="stable")[:, :, :2]
    order.sort(axis=2)
    values = np.take_along_axis(groups, order, axis=2).reshape(m, k // 2)
    nib = (order[:, :, 0] | (order[:, :, 1] << 2)).astype(np.uint8)  # (m, k/4)
    if nib.shape[1] % 2:
        nib = np.concatenate([nib, np.zeros((m, 1), np.uint8)], axis=1)
    meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return Sparse24Matrix(values.astype(np.float32), meta, (m, k))


def _dense_operand(x, k: int, fn: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != k:
        raise ValueError(f"{fn}: the dense operand must be ({k}, N) for a matrix with "
                         f"{k} columns, got shape {x.shape}")
    if x.dtype != np.float32:
        raise TypeError(f"{fn}: the dense operand must be float32, got {x.dtype}")
    return np.ascontiguousarray(x)


def csr_matmul(a: CSRMatrix, x, out: np.ndarray | None = None,
               parallel: bool | None = None) -> np.ndarray:
    """``a @ x`` for CSR ``a`` (M x K) and dense float32 ``x`` (K x N, or (K,)): (M x N).

    ``parallel=None`` runs the threaded build when the work (``nnz * N`` multiply-adds)
    is large enough to pay for waking the threads.
    """
    if not isinstance(a, CSRMatrix):
        raise TypeError(f"csr_matmul: expects a CSRMatrix, got {type(a).__name__}")
    x = _dense_operand(x, a.shape[1], "csr_matmul")
    out = _out(out, (a.shape[0], x.shape[1]), "csr_matmul")
    csr_kernel.pick(a.nnz * x.shape[1], parallel)(a.indptr, a.indices, a.data, x, out)
    return out


def sparse24_matmul(a: Sparse24Matrix, x, out: np.ndarray | None = None,
                    parallel: bool | None = None) -> np.ndarray:
    """``a @ x`` for a 2:4 compressed ``a`` (M x K) and dense float32 ``x`` (K x N)."""
    if not isinstance(a, Sparse24Matrix):
        raise TypeError(f"sparse24_matmul: expects a Sparse24Matrix, got {type(a).__name__}")
    x = _dense_operand(x, a.shape[1], "sparse24_matmul")
    out = _out(out, (a.shape[0], x.shape[1]), "sparse24_matmul")
    sparse24_kernel.pick(a.values.size * x.shape[1], parallel)(a.values, a.meta, x, out)
    return out


def _out(out, shape, fn):
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32 \
            or not out.flags.c_contiguous:
        raise ValueError(f"{fn}: out must be a C-contiguous float32 array of shape {shape}")
    return out


def stored_bytes(weight, fmt: str = "dense") -> int | None:
    """Bytes to store the 2-D ``weight`` (rows = output units) in format ``fmt``.

    A weight of more axes is read as ``(prod of all but the last, last)`` and transposed
    (``nn.Linear`` keeps ``(in, out)``). ``"2:4"`` gives None when the weight does not
    have the 2:4 pattern. See the table in the module docstring.
    """
    w = np.asarray(weight)
    w = w.reshape(-1, w.shape[-1]).T if w.ndim >= 2 else w.reshape(1, -1)
    m, k = w.shape
    nnz = int(np.count_nonzero(w))
    if fmt == "dense":
        return 4 * m * k
    if fmt == "int8":
        return m * k + 4 * m
    if fmt == "csr":
        return 8 * nnz + 4 * (m + 1)
    if fmt == "int8-csr":
        return 5 * nnz + 4 * (m + 1) + 4 * m
    if fmt == "2:4":
        return 2 * m * k + m * ((k // 4 + 1) // 2) if is_2_4(w) else None
    raise ValueError(f"stored_bytes: unknown format {fmt!r}; one of {FORMATS}")

"""Non-uniform quantization: a k-means codebook of ``2**bits`` shared values.

The affine grid (:mod:`.affine`) spaces its codes evenly over a range. Trained weights
are not spread evenly: most sit near 0, a few far out. **Weight sharing** (Han, Mao and
Dally, *Deep Compression*, ICLR 2016) lets the data place the levels: cluster the
values of a tensor into ``2**bits`` groups with k-means (Lloyd's algorithm), store each
value as the index of its cluster (``bits`` bits) and the cluster centres once, as a
small float **codebook**::

    codes[i] = argmin_c |x[i] - codebook[c]|      # the nearest level
    x_hat[i] = codebook[codes[i]]                 # a table lookup

Lloyd's algorithm alternates the two steps that each lower the squared error: assign
every value to its nearest level, then move each level to the mean of its values. In
one dimension both are cheap on sorted data: the nearest level is found by binary search
among the midpoints between levels.

:func:`kmeans_quantize` starts from the levels of the min/max affine grid with the same
number of codes (Han et al.'s *linear* initialisation, which they found best because it
keeps levels out at the rare large weights). Its first assignment is exactly the
uniform quantizer's rounding, and no Lloyd step raises the error, so **the codebook is
never worse than the uniform grid it started from** (in squared error on the data it
was fitted to). What it costs: the codebook (``2**bits`` floats per tensor), and a
kernel that cannot multiply codes as integers: it looks each one up and computes in
float. It is a storage format (like the weight-only formats of :mod:`.weightonly`),
which is why integer hardware uses uniform grids and compression pipelines use
codebooks.
"""

from __future__ import annotations

import numpy as np

from .affine import as_numpy, dequantize, qparams, qrange

__all__ = ["KMeansWeight", "kmeans_quantize", "uniform_levels"]


def uniform_levels(x, bits: int) -> np.ndarray:
    """The ``2**bits`` values of the asymmetric min/max affine grid of ``x`` (sorted,
    float64): ``s * (q - z)`` for every code ``q``, as :func:`~mlc.quant.dequantize`
    would give them."""
    x = np.asarray(as_numpy(x))
    s, z = qparams(float(x.min()), float(x.max()), "int8", num_bits=bits)
    lo, hi = qrange("int8", bits)
    return dequantize(np.arange(lo, hi + 1), s, z).astype(np.float64)


def _assign(xs: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``levels`` for each value (ties to the lower)."""
    mid = (levels[1:] + levels[:-1]) / 2
    return np.searchsorted(mid, xs, side="left")


class KMeansWeight:
    """A tensor stored as ``bits``-bit indices into a float32 codebook.

    ``codes`` (uint8, the tensor's shape), ``codebook`` (``2**bits`` float32 levels,
    sorted), ``history`` (the mean squared error after each Lloyd step, never rising).
    ``nbytes`` counts what a packed file holds: ``bits`` bits per value and the codebook.
    """

    def __init__(self, codes: np.ndarray, codebook: np.ndarray, bits: int, history):
        self.codes, self.codebook, self.bits = codes, codebook, bits
        self.history = list(history)

    @property
    def shape(self):
        return self.codes.shape

    @property
    def nbytes(self) -> int:
        return -(-self.codes.size * self.bits // 8) + self.codebook.nbytes

    def dequantize(self) -> np.ndarray:
        """``codebook[codes]``: the float32 tensor the codes stand for."""
        return self.codebook[self.codes]

    def __repr__(self):
        return f"KMeansWeight({self.shape}, {self.bits} bits, {self.codebook.size} levels)"


def kmeans_quantize(x, bits: int = 4, iters: int = 30, tol: float = 1e-7) -> KMeansWeight:
    """Cluster the values of ``x`` into ``2**bits`` levels with Lloyd's algorithm, from
    the uniform min/max grid (:func:`uniform_levels`); stop after ``iters`` steps or when
    the error improves by less than ``tol`` (relative).

    Lloyd's algorithm finds a *local* minimum. Below, the uniform start puts two of the
    four levels between the clusters, where no value is nearest to them; they stay
    there, unused (a smarter start, k-means++, would split the cluster near 0 instead)::

    >>> kw = kmeans_quantize(np.array([0.0, 0.1, 0.11, 5.0]), bits=2)
    >>> kw.codebook.tolist(), kw.codes.tolist()
    ([0.07000000029802322, 1.6666666269302368, 3.3333332538604736, 5.0], [0, 0, 0, 3])
    """
    x = np.asarray(as_numpy(x))
    qrange("int8", bits)                             # validates bits: 2..8
    if x.size == 0:
        raise ValueError("kmeans_quantize: cannot cluster an empty tensor")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"kmeans_quantize expects real numbers, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("kmeans_quantize: the tensor holds NaN or infinity")
    if not isinstance(iters, (int, np.integer)) or iters < 0:
        raise ValueError(f"iters must be a non-negative integer, got {iters!r}")
    xs = np.sort(x.astype(np.float64).ravel())
    levels = uniform_levels(xs, bits)
    history = []
    for _ in range(int(iters) + 1):
        idx = _assign(xs, levels)
        err = float(np.mean((xs - levels[idx]) ** 2))
        if history and history[-1] - err <= tol * max(history[-1], 1e-300):
            history.append(err)
            break
        history.append(err)
        count = np.bincount(idx, minlength=levels.size)
        total = np.bincount(idx, weights=xs, minlength=levels.size)
        # an empty cluster keeps its level: moving it could not lower the error
        levels = np.where(count > 0, total / np.maximum(count, 1), levels)
    codebook = levels.astype(np.float32)
    # the final assignment, on the float32 codebook a file stores
    codes = _assign(x.astype(np.float64).ravel(), codebook.astype(np.float64))
    return KMeansWeight(codes.astype(np.uint8).reshape(x.shape), codebook, int(bits), history)

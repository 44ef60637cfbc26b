"""``HistogramObserver``: the range that minimises the quantization error.

Min/max calibration lets one outlier decide the grid spacing for every value. Clipping
the range to ``[lo, hi]`` trades two errors: values outside are *clipped* (error
``|x - clip(x)|``), values inside are *rounded* on a finer grid (error about
``step^2 / 12`` each, ``step = (hi - lo) / (2^bits - 1)``). The observer keeps a
histogram of everything it has seen and picks the ``[lo, hi]`` with the least total
squared error.

How (the idea of PyTorch's ``HistogramObserver._non_linear_param_search``, itself from
Caffe2's ``NormMinimization``; this code is written from the description, not copied):

1. **Histogram.** ``bins`` (2048) equal bins over the min/max seen so far. When a batch
   widens the range, the old histogram is re-binned onto the new, wider bins by
   interpolating its cumulative counts (mass is assumed uniform inside a bin), then the
   batch's own counts are added.
2. **Candidates.** Start from the full range and repeatedly trim one bin from the end
   whose outermost bin holds *less* mass (cutting there clips the fewest values). This
   gives a nested path of ranges, from everything down to a 1/16 of the bins.
3. **Error of a candidate** ``[lo, hi]``, from the histogram with mass uniform in each bin
   of width ``w`` and centre ``c``: a bin inside costs ``count * step^2 / 12`` (rounding
   noise, whatever the bin's width), a bin outside costs
   ``count * ((c - edge)^2 + w^2 / 12)`` (it is clipped to the nearest edge).
4. **Choice.** The candidate with the least error on the whole path (PyTorch stops at the
   first candidate whose error goes up; taking the minimum over the path is the same
   when the error curve has one valley, and safer when it has two).

Per-tensor only (``axis`` is refused): a histogram per channel costs ``bins`` floats per
channel for little gain, and weights, the per-channel case, are better served by min/max.
"""

from __future__ import annotations

import numpy as np

from .observers import Observer


class HistogramObserver(Observer):
    def __init__(self, dtype="int8", symmetric=False, axis=None, num_bits=None,
                 bins: int = 2048, min_fraction: float = 1 / 16):
        if axis is not None:
            raise ValueError("HistogramObserver is per-tensor: axis must be None (use "
                             "MinMaxObserver(axis=...) for per-channel ranges)")
        super().__init__(dtype, symmetric, None, num_bits)
        if bins < 16:
            raise ValueError(f"bins must be at least 16, got {bins}")
        self.bins = int(bins)
        self.min_fraction = float(min_fraction)
        self.histogram = np.zeros(self.bins)
        self.min_val = self.max_val = None

    # -- statistics -----------------------------------------------------------------------
    def update(self, x):
        x = x.reshape(-1)
        lo, hi = float(x.min()), float(x.max())
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        elif lo < self.min_val or hi > self.max_val:
            new_lo, new_hi = min(lo, self.min_val), max(hi, self.max_val)
            self.histogram = self._rebin(new_lo, new_hi)
            self.min_val, self.max_val = new_lo, new_hi
        if self.max_val == self.min_val:
            self.histogram[0] += x.size
            return
        counts, _ = np.histogram(x, bins=self.bins, range=(self.min_val, self.max_val))
        self.histogram += counts

    def _rebin(self, new_lo: float, new_hi: float) -> np.ndarray:
        """The current histogram spread over ``bins`` equal bins on ``[new_lo, new_hi]``."""
        if self.max_val == self.min_val:  # all mass at one point
            out = np.zeros(self.bins)
            k = min(int((self.min_val - new_lo) / (new_hi - new_lo) * self.bins), self.bins - 1)
            out[k] = self.histogram.sum()
            return out
        old_edges = np.linspace(self.min_val, self.max_val, self.bins + 1)
        cdf = np.concatenate([[0.0], np.cumsum(self.histogram)])
        new_edges = np.linspace(new_lo, new_hi, self.bins + 1)
        return np.diff(np.interp(new_edges, old_edges, cdf))

    # -- the search -----------------------------------------------------------------------
    def candidates(self) -> np.ndarray:
        """``(n, 2)`` int array of ``(first_bin, last_bin)`` ranges, widest first."""
        h = self.histogram
        start, end = 0, self.bins - 1
        path = [(start, end)]
        min_bins = max(2, int(self.bins * self.min_fraction))
        while end - start + 1 > min_bins:
            if h[start] <= h[end]:
                start += 1
            else:
                end -= 1
            path.append((start, end))
        return np.array(path)

    def errors(self, path: np.ndarray) -> np.ndarray:
        """The estimated total squared quantization error of each candidate range."""
        from .affine import qrange

        q_min, q_max = qrange(self.dtype, self.num_bits)
        w = (self.max_val - self.min_val) / self.bins
        centres = self.min_val + (np.arange(self.bins) + 0.5) * w
        lo = self.min_val + path[:, :1] * w               # (n, 1)
        hi = self.min_val + (path[:, 1:] + 1) * w
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)  # the grid always holds 0
        step = (hi - lo) / (q_max - q_min)
        clipped = np.clip(centres[None, :], lo, hi)
        outside = (centres[None, :] < lo) | (centres[None, :] > hi)
        per_bin = np.where(outside, (centres - clipped) ** 2 + w * w / 12.0, step * step / 12.0)
        return per_bin @ self.histogram

    def range(self):
        if self.max_val == self.min_val:
            return self.min_val, self.max_val
        path = self.candidates()
        best = path[int(np.argmin(self.errors(path)))]
        w = (self.max_val - self.min_val) / self.bins
        return self.min_val + best[0] * w, self.min_val + (best[1] + 1) * w

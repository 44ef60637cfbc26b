"""Observers: watch the values a tensor takes, then propose ``(scale, zero_point)``.

Post-training quantization runs a few calibration batches through the float model; at
each point to be quantized an observer records what it sees. They are small
interchangeable objects with one protocol (as in ``torch.ao.quantization``)::

    obs = MinMaxObserver(dtype="int8", symmetric=False)
    for batch in calibration:
        obs(batch)                      # update the statistics; returns its input
    scale, zero_point = obs.qparams()   # from the range the statistics give

What differs is *which range* they choose:

* :class:`MinMaxObserver`: the smallest and largest value ever seen. No value is
  clipped, but one outlier stretches the grid for everyone.
* :class:`MovingAverageMinMaxObserver`: an exponential moving average of each batch's
  min and max (what QAT uses while the weights move).
* :class:`PercentileObserver`: the ``p``-th and ``(100 - p)``-th percentiles (averaged
  over batches): outliers are clipped on purpose.
* :class:`~mlc.quant.histogram.HistogramObserver`: the range that minimises the
  quantization error of a histogram of everything seen.

``axis=k`` keeps one range per slice along axis ``k`` (per-channel: weights, axis = the
output-channel axis). Asking for qparams before any data, or a bad dtype or axis, is a
clear error.
"""

from __future__ import annotations

import numpy as np

from .affine import as_numpy, check_axis, check_dtype, qparams, qrange


class Observer:
    """Base class: subclasses define :meth:`update` (statistics) and :meth:`range`."""

    def __init__(self, dtype: str = "int8", symmetric: bool = False, axis: int | None = None,
                 num_bits: int | None = None):
        self.dtype = check_dtype(dtype)
        qrange(self.dtype, num_bits)  # validates num_bits
        self.symmetric = bool(symmetric)
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an int or None, got {axis!r}")
        self.axis = axis
        self.num_bits = num_bits
        self.batches = 0
        self.ndim = None

    # -- the protocol ----------------------------------------------------------------------
    def __call__(self, x):
        a = as_numpy(x)
        if a.size == 0:
            raise ValueError(f"{type(self).__name__}: cannot observe an empty tensor")
        if self.ndim is None:
            self.ndim = a.ndim
            if self.axis is not None:
                check_axis(self.axis, a.ndim)
        elif a.ndim != self.ndim:
            raise ValueError(f"{type(self).__name__}: saw a {a.ndim}-D tensor after "
                             f"{self.ndim}-D ones")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{type(self).__name__}: the tensor holds inf or nan")
        self.update(a.astype(np.float64, copy=False))
        self.batches += 1
        return x

    def update(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def range(self):
        """``(min, max)``: floats, or arrays with one entry per channel."""
        raise NotImplementedError

    def qparams(self):
        """``(scale, zero_point)`` from :meth:`range` (see :func:`mlc.quant.qparams`)."""
        if self.batches == 0:
            raise RuntimeError(f"{type(self).__name__}.qparams(): no data observed yet; call "
                               "the observer on calibration data first")
        lo, hi = self.range()
        return qparams(lo, hi, self.dtype, self.symmetric, self.num_bits)

    # -- helpers ---------------------------------------------------------------------------
    def _reduce_axes(self, x: np.ndarray):
        if self.axis is None:
            return None
        ax = check_axis(self.axis, x.ndim)
        return tuple(i for i in range(x.ndim) if i != ax)

    def _minmax(self, x: np.ndarray):
        axes = self._reduce_axes(x)
        if axes is None:
            return float(x.min()), float(x.max())
        return x.min(axis=axes), x.max(axis=axes)

    def _check_channels(self, old, new):
        if np.ndim(old) and np.shape(old) != np.shape(new):
            raise ValueError(f"{type(self).__name__}: saw {np.shape(new)[0]} channels after "
                             f"{np.shape(old)[0]}")

    def __repr__(self) -> str:
        per = "per-tensor" if self.axis is None else f"axis={self.axis}"
        return (f"{type(self).__name__}({self.dtype}, "
                f"{'symmetric' if self.symmetric else 'affine'}, {per})")


class MinMaxObserver(Observer):
    """The running minimum and maximum of everything observed."""

    def __init__(self, dtype="int8", symmetric=False, axis=None, num_bits=None):
        super().__init__(dtype, symmetric, axis, num_bits)
        self.min_val = self.max_val = None

    def update(self, x):
        lo, hi = self._minmax(x)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self._check_channels(self.min_val, lo)
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)

    def range(self):
        return self.min_val, self.max_val


class MovingAverageMinMaxObserver(MinMaxObserver):
    """``min <- min + c * (batch_min - min)`` (and the same for max), ``c`` the
    ``averaging_constant``; the first batch sets the range."""

    def __init__(self, dtype="int8", symmetric=False, axis=None, num_bits=None,
                 averaging_constant: float = 0.01):
        super().__init__(dtype, symmetric, axis, num_bits)
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must lie in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)

    def update(self, x):
        lo, hi = self._minmax(x)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
            return
        self._check_channels(self.min_val, lo)
        c = self.averaging_constant
        self.min_val = self.min_val + c * (lo - self.min_val)
        self.max_val = self.max_val + c * (hi - self.max_val)


class PercentileObserver(Observer):
    """The ``percentile``-th largest magnitude, clipping the rarest values.

    Each batch contributes its ``100 - percentile`` and ``percentile`` percentiles (per
    channel with ``axis=``); the range is their average over batches weighted by batch
    size. With ``percentile=100`` this is the (batch-averaged) min/max.
    """

    def __init__(self, dtype="int8", symmetric=False, axis=None, num_bits=None,
                 percentile: float = 99.99):
        super().__init__(dtype, symmetric, axis, num_bits)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (50, 100], got {percentile}")
        self.percentile = float(percentile)
        self._lo = self._hi = None
        self._n = 0

    def update(self, x):
        axes = self._reduce_axes(x)
        if axes is None:
            flat = x.reshape(-1)
        else:
            ax = check_axis(self.axis, x.ndim)
            flat = np.moveaxis(x, ax, 0).reshape(x.shape[ax], -1)
        lo = np.percentile(flat, 100.0 - self.percentile, axis=-1)
        hi = np.percentile(flat, self.percentile, axis=-1)
        n = flat.shape[-1]
        if self._lo is None:
            self._lo, self._hi = lo * n, hi * n
        else:
            self._check_channels(self._lo, lo)
            self._lo, self._hi = self._lo + lo * n, self._hi + hi * n
        self._n += n

    def range(self):
        lo, hi = self._lo / self._n, self._hi / self._n
        if np.ndim(lo) == 0:
            return float(lo), float(hi)
        return lo, hi


OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
             "percentile": PercentileObserver}


def make_observer(spec, **kwargs) -> Observer:
    """An observer from a name (``"minmax"``, ``"histogram"``, ...), a class, or a factory."""
    from .histogram import HistogramObserver

    table = dict(OBSERVERS, histogram=HistogramObserver)
    if isinstance(spec, str):
        try:
            spec = table[spec]
        except KeyError:
            raise ValueError(f"unknown observer {spec!r}; choose from {sorted(table)}") from None
    if not callable(spec):
        raise TypeError(f"observer must be a name, an Observer class or a factory, got {spec!r}")
    obs = spec(**kwargs)
    if not isinstance(obs, Observer):
        raise TypeError(f"observer factory returned {type(obs).__name__}, not an Observer")
    return obs

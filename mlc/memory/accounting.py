"""Measured memory: the peak of live NDArray bytes while some code runs.

Every device counts the bytes its buffers hold (``mlc.ndarray.accounting``). This module
turns the counters into measurements::

    with memory.track() as t:          # all devices
        loss = model(x).sum(); loss.backward()
    t.peak                              # most bytes live at once above the start, in bytes
    t.peak_absolute                     # the same including what was live before
    memory.peak_bytes(fn, x)            # the same for one call: fn(x)

The baseline is what was live when the block started (after a garbage collection, so
that leftovers of earlier code that are already unreachable do not count): ``t.peak``
is what the block itself needed on top. Blocks nest: an inner ``track()`` does not
disturb the outer one's peak.

With several devices, ``peak`` adds up each device's own peak: exact when one device
does the work (the usual case), an upper bound otherwise.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

from ..ndarray.accounting import COUNTERS


class MemoryTrace:
    """What :func:`track` measured: ``start``/``end``/``peak`` per device, in bytes."""

    def __init__(self, devices):
        self.devices = list(devices)
        self.start = {d: COUNTERS[d].live for d in self.devices}
        self.peak_by_device = dict(self.start)
        self.end = dict(self.start)

    @property
    def peak(self) -> int:
        """The most bytes live at once during the block, above what was live at its start."""
        return sum(self.peak_by_device[d] - self.start[d] for d in self.devices)

    @property
    def peak_absolute(self) -> int:
        """The peak including the bytes already live at the start."""
        return sum(self.peak_by_device.values())

    @property
    def retained(self) -> int:
        """Bytes still live at the end that were not at the start."""
        return sum(self.end[d] - self.start[d] for d in self.devices)

    def __repr__(self) -> str:
        return (f"MemoryTrace(peak={self.peak} B above a start of "
                f"{sum(self.start.values())} B, retained {self.retained} B)")


def _devices(device):
    if device is None:
        return list(COUNTERS)
    names = [device] if isinstance(device, str) or hasattr(device, "name") else list(device)
    return [getattr(d, "name", d) for d in names]


@contextmanager
def track(device=None, collect: bool = True):
    """Measure the live bytes of ``device`` (a device, its name, a list; None: all)."""
    if collect:
        gc.collect()
    names = _devices(device)
    outer = {d: COUNTERS[d].peak for d in names}
    for d in names:
        COUNTERS[d].reset_peak()
    trace = MemoryTrace(names)
    try:
        yield trace
    finally:
        for d in names:
            c = COUNTERS[d]
            trace.peak_by_device[d] = c.peak
            trace.end[d] = c.live
            c.peak = max(c.peak, outer[d])     # give an enclosing track() its peak back


def peak_bytes(fn, *args, device=None, **kwargs) -> int:
    """The peak of live NDArray bytes while ``fn(*args, **kwargs)`` runs, above the bytes
    live when it started (see :func:`track`). The result of ``fn`` is dropped."""
    with track(device) as t:
        fn(*args, **kwargs)
    return t.peak


def live_bytes(device=None) -> int:
    """The bytes held right now by the buffers of ``device`` (None: all devices)."""
    return sum(COUNTERS[d].live for d in _devices(device))

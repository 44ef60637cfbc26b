"""Memory accounting: every device counts the bytes its buffers hold.

Each backend's ``Array`` (the flat buffer under an NDArray) reports its size here when it
is made and again when Python frees it. Views share their buffer, so a view costs
nothing; a buffer is freed when the last NDArray (or view) over it goes away::

    dev = nd.cpu()
    before = dev.memory.live              # bytes held by cpu() buffers right now
    a = nd.empty((256, 256), device=dev)  # +262144 bytes
    b = a.permute((1, 0))                 # a view: +0
    del a, b                              # -262144: the buffer is gone
    dev.memory.peak                       # the most ever held at once since reset_peak()

``live`` is exact for ``cpu_numpy()`` and ``cpu()`` (numpy buffers, freed by reference
counting the moment the last reference dies); for ``cuda()`` it counts the device arrays
made through the backend (also in Numba's simulator), not what the CUDA driver keeps in
its own pools. ``mlc.memory.track()`` and ``mlc.memory.peak_bytes`` are built on this.
"""

from __future__ import annotations

import threading


class MemoryCounter:
    """The bytes one device's buffers hold: ``live`` now, ``peak`` since the last reset.

    ``allocs`` / ``frees`` count buffers, ``allocated`` the total bytes ever handed out.
    """

    __slots__ = ("name", "live", "peak", "allocs", "frees", "allocated", "_lock")

    def __init__(self, name: str):
        self.name = name
        self.live = self.peak = self.allocs = self.frees = self.allocated = 0
        self._lock = threading.Lock()

    def alloc(self, nbytes: int) -> None:
        with self._lock:
            self.live += nbytes
            self.allocs += 1
            self.allocated += nbytes
            if self.live > self.peak:
                self.peak = self.live

    def free(self, nbytes: int) -> None:
        with self._lock:
            self.live -= nbytes
            self.frees += 1

    def reset_peak(self) -> int:
        """Start a new peak from what is live now; returns that baseline."""
        with self._lock:
            self.peak = self.live
            return self.live

    def __repr__(self) -> str:
        return (f"MemoryCounter({self.name}: live={self.live} B, peak={self.peak} B, "
                f"{self.allocs} allocs, {self.frees} frees)")


COUNTERS: dict[str, MemoryCounter] = {name: MemoryCounter(name)
                                      for name in ("cpu", "cpu_numpy", "cuda")}


def counter(device_name: str) -> MemoryCounter:
    """The counter of the device called ``device_name`` ("cpu", "cpu_numpy", "cuda")."""
    return COUNTERS[device_name]


class CountedBuffer:
    """Mixin for a backend ``Array``: call ``_count(nbytes)`` once the buffer exists.

    The subclass sets ``_counter`` (a :class:`MemoryCounter`); ``__del__`` gives the
    bytes back. A buffer that failed to allocate was never counted, so it frees nothing.
    """

    _counter: MemoryCounter
    _nbytes = 0

    def _count(self, nbytes: int) -> None:
        self._nbytes = int(nbytes)
        self._counter.alloc(self._nbytes)

    def __del__(self):
        if self._nbytes:
            self._counter.free(self._nbytes)
            self._nbytes = 0

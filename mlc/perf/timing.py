"""The one timer of the course: :func:`timeit` for benchmarks, :func:`stopwatch` for a
single stretch of code.

Timings on a shared laptop are noisy. Three habits make them honest, and :func:`timeit`
has all three, on top of the standard library's :class:`timeit.Timer`:

- **warm up** first: the first call pays for Numba's compilation, for page faults and for
  cold caches, none of which the next million calls will see;
- **time many calls together** when one call is short: a clock reads in tens of
  nanoseconds, so a 1 µs kernel timed alone is mostly clock. ``number=None`` chooses the
  count by *autoranging* (1, 2, 5, 10, 20, 50, ... calls, until one batch lasts
  ``min_time``), as ``python -m timeit`` does;
- **repeat** the batch and report the **median** (typical) and the **min** (best case:
  other programs on the machine can only ever slow a round down, so the fastest round is
  the closest to what the code alone costs).

Every time in the course is seconds *per call*, and every speed is reported as a ratio
to a reference (numpy) measured in the same run, never as an absolute promise.
"""

from __future__ import annotations

import statistics
import time
import timeit as _timeit
from collections.abc import Callable, Sequence

__all__ = ["Timing", "timeit", "Stopwatch", "stopwatch"]

# The clock behind everything here: timeit.Timer's default, monotonic and the finest the
# system offers. Nothing else in mlc reads a clock directly.
_clock = time.perf_counter

# Autoranging stops growing the batch here, even if ``fn`` is so fast that the batch is
# still shorter than ``min_time`` (a function that does nothing, for instance).
_MAX_NUMBER = 1 << 24


class Timing(float):
    """Seconds per call of a timed function; the float's value is the **median** round.

    Because it *is* a float, ``t * 1e3``, ``t_numpy / t`` or ``f"{t:.3g}"`` work as with
    any number. The details stay attached:

    - ``times``: seconds per call in each round (``len(times)`` rounds);
    - ``number``: calls per round;
    - ``median`` (the value itself) and ``min`` (the fastest round).
    """

    times: tuple
    number: int

    def __new__(cls, times: Sequence[float], number: int):
        times = tuple(float(t) for t in times)
        if not times:
            raise ValueError("a Timing needs at least one round")
        self = super().__new__(cls, statistics.median(times))
        self.times, self.number = times, int(number)
        return self

    @property
    def median(self) -> float:
        return float(self)

    @property
    def min(self) -> float:
        return min(self.times)

    def __reduce__(self):  # pickle and copy rebuild it from its rounds
        return (Timing, (self.times, self.number))

    # print(t) shows the number, as for any float; repr(t) (what a notebook shows) the rest.
    __str__ = float.__repr__

    def __repr__(self) -> str:
        return (f"Timing(median={_fmt(self.median)}, min={_fmt(self.min)}, "
                f"{len(self.times)} rounds x {self.number} calls)")


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _autorange(timer: _timeit.Timer, min_time: float) -> int:
    """Calls per round: the first of 1, 2, 5, 10, 20, 50, ... whose batch lasts
    ``min_time`` seconds (``Timer.autorange`` does the same with a fixed 0.2 s)."""
    if min_time <= 0:
        return 1
    base = 1
    while True:
        for mult in (1, 2, 5):
            number = base * mult
            if number >= _MAX_NUMBER or timer.timeit(number) >= min_time:
                return min(number, _MAX_NUMBER)
        base *= 10


def timeit(fn: Callable[[], object], repeat: int = 5, number: int | None = None,
           warmup: int = 1, min_time: float = 0.2) -> Timing:
    """Seconds per call of ``fn()``: a :class:`Timing`, the median of ``repeat`` rounds.

    ``warmup`` calls run first, untimed. Each round then times ``number`` calls together
    (``timeit.Timer(fn).repeat(repeat, number)``) and divides by ``number``. With
    ``number=None`` the count is chosen so that one round lasts at least ``min_time``
    seconds, which keeps the clock's resolution out of the result for fast kernels; pass
    ``number=1`` for a slow function you want called exactly ``repeat`` times.

    ::

        t = perf.timeit(lambda: a @ b)
        print(f"{t * 1e3:.2f} ms, best round {t.min * 1e3:.2f} ms")

    Like ``python -m timeit``, the timed rounds run with the garbage collector paused, so
    a collection triggered by earlier code does not land in one round by chance.
    """
    if not callable(fn):
        raise TypeError(f"timeit needs a function to call, got {type(fn).__name__}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    if number is not None and number < 1:
        raise ValueError(f"number must be at least 1 (or None to choose), got {number}")
    timer = _timeit.Timer(fn, timer=_clock)
    for _ in range(max(warmup, 0)):
        fn()
    if number is None:
        number = _autorange(timer, min_time)
    totals = timer.repeat(repeat=repeat, number=number)
    return Timing([t / number for t in totals], number)


class Stopwatch:
    """Wall-clock seconds of one stretch of code, run once.

    For a one-off duration (a compilation, a tuning run, a training loop), not for
    comparing kernels: one run has no warm-up and no repeats, so use :func:`timeit` for
    that. ``seconds`` reads the time so far while running and the final time once stopped.
    """

    def __init__(self):
        self._start: float | None = None
        self._stop: float | None = None

    def start(self) -> Stopwatch:
        self._start, self._stop = _clock(), None
        return self

    def stop(self) -> float:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        self._stop = _clock()
        return self.seconds

    @property
    def seconds(self) -> float:
        if self._start is None:
            raise RuntimeError("the stopwatch was never started")
        end = self._stop if self._stop is not None else _clock()
        return end - self._start

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def __repr__(self) -> str:
        if self._start is None:
            return "Stopwatch(not started)"
        state = "running" if self._stop is None else "stopped"
        return f"Stopwatch({_fmt(self.seconds)}, {state})"


def stopwatch() -> Stopwatch:
    """A started :class:`Stopwatch`; as a context manager it stops at the block's end::

        with perf.stopwatch() as sw:
            train(model)
        print(f"trained in {sw.seconds:.1f} s")
    """
    return Stopwatch().start()

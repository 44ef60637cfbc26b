"""Schedules: legal, recorded transformations of a PrimFunc's loops.

``Schedule(func)`` holds the program being transformed; its primitives (split, fuse,
reorder, parallel, vectorize, unroll, bind, cache_read, cache_write, compute_at,
reverse_compute_at, compute_inline, reverse_compute_inline, decompose_reduction, and the
sampling primitives) each check their preconditions and raise :class:`ScheduleError`
when one fails. ``sch.trace`` records every call and replays it.

One file per family of primitives: ``loops.py``, ``compute_location.py``, ``cache.py``,
``inline.py``, ``reduction.py``, ``sampling.py``; ``state.py`` holds the handles and the
tree surgery they share, ``trace.py`` the trace, ``examples.py`` worked schedules.
"""

from .errors import ScheduleError
from .schedule import Schedule
from .state import BlockRV, IntRV, LoopRV
from .trace import Instruction, Trace

__all__ = ["Schedule", "ScheduleError", "BlockRV", "LoopRV", "IntRV", "Trace", "Instruction"]

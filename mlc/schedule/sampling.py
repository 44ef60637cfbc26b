"""Sampling primitives: the random choices a search explores.

``sample_perfect_tile(loop, n)`` picks ``n`` factors whose product is the loop's extent
(a "perfect" tiling, no remainder); ``sample_categorical(candidates, probs)`` picks one
candidate. Both return plain-looking ints (:class:`IntRV`) to pass to ``split``, ``unroll``
decisions and so on, and both record their *decision* in the trace, so a trace replays the
same program, and a tuner can replay it with a mutated decision.
"""

from __future__ import annotations

import math
import random

from .state import IntRV, fail


def divisors(n: int) -> list:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def perfect_tiles(extent: int, n: int, max_innermost_factor: int | None = None) -> list:
    """Every ordered ``n``-tuple of positive ints with product ``extent`` (and innermost
    factor at most ``max_innermost_factor``)."""
    out = []

    def rec(rest, k, acc):
        if k == 1:
            if max_innermost_factor is None or rest <= max_innermost_factor:
                out.append(acc + [rest])
            return
        for d in divisors(rest):
            rec(rest // d, k - 1, acc + [d])

    rec(extent, n, [])
    return out


def sample_perfect_tile(sch, loop_rv, n: int, max_innermost_factor, decision, rng: random.Random):
    loop, _ = sch._loop(loop_rv)
    name = loop.loop_var.name
    if not isinstance(n, int) or n < 1:
        fail(f"sample_perfect_tile: n must be a positive int, got {n!r}")
    if max_innermost_factor is not None and max_innermost_factor < 1:
        fail(f"sample_perfect_tile: max_innermost_factor must be >= 1, got "
             f"{max_innermost_factor}")
    if decision is not None:
        decision = [int(d) for d in decision]
        if len(decision) != n or math.prod(decision) != loop.extent or min(decision) < 1:
            fail(f"sample_perfect_tile: decision {decision} is not {n} positive factors of "
                 f"extent {loop.extent} of loop {name}")
        if max_innermost_factor is not None and decision[-1] > max_innermost_factor:
            fail(f"sample_perfect_tile: decision {decision} has innermost factor above "
                 f"{max_innermost_factor}")
    else:
        choices = perfect_tiles(loop.extent, n, max_innermost_factor)
        decision = list(rng.choice(choices))
    return [IntRV(d) for d in decision], decision


def sample_categorical(candidates, probs, decision, rng: random.Random):
    candidates, probs = list(candidates), [float(p) for p in probs]
    if not candidates or len(candidates) != len(probs):
        fail(f"sample_categorical: {len(candidates)} candidates but {len(probs)} "
             "probabilities")
    if any(not isinstance(c, int) or isinstance(c, bool) for c in candidates):
        fail(f"sample_categorical: candidates must be ints, got {candidates}")
    if any(p < 0 for p in probs) or sum(probs) <= 0:
        fail(f"sample_categorical: probabilities must be >= 0 with a positive sum, got {probs}")
    if decision is None:
        decision = rng.choices(range(len(candidates)), weights=probs)[0]
    elif not isinstance(decision, int) or not 0 <= decision < len(candidates):
        fail(f"sample_categorical: decision {decision!r} is not an index into "
             f"{len(candidates)} candidates")
    return IntRV(candidates[decision]), int(decision)

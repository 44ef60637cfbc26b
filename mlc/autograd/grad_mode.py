"""Grad mode: whether tensor ops record the computational graph.

Recording costs memory (every intermediate stays alive until backward) and time, and
inference or an optimiser's parameter update needs none of it. ``with mlc.no_grad():``
switches recording off for a block; ``enable_grad`` switches it back on inside one.
"""

from __future__ import annotations

import functools
import threading

# Per thread, as in PyTorch: `mlc.dist.local` runs ranks as threads, and one rank's
# backward pass (grad mode off) must not stop another rank's forward pass recording.
_STATE = threading.local()


def is_grad_enabled() -> bool:
    """Whether new ops record their inputs (False inside ``no_grad``) in this thread."""
    return getattr(_STATE, "enabled", True)


class _GradMode:
    """Context manager (and decorator) that sets grad mode and restores it on exit."""

    enabled = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _STATE.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _STATE.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """``with mlc.no_grad():`` ops compute values but build no graph.

    Tensors made inside have ``requires_grad=False`` and no ``op``: nothing is kept alive
    for a backward pass that will never come. Also usable as a decorator.
    """

    enabled = False


class enable_grad(_GradMode):
    """Turn graph recording back on inside a ``no_grad`` block."""

    enabled = True

"""The exercise registry: stable ids, points, and the checks that grade them.

A check is an ordinary function that receives the student's namespace (the notebook's
globals) and a :class:`Tester`. It lives in the package, not in the notebook, so it can
try cases the student never sees. Register one with :func:`exercise`::

    @exercise("welcome.saxpy", points=2, notebook="00_welcome",
              hint="out[i] = a * x[i] + y[i] for every i")
    def _(ns, t):
        saxpy = t.need(ns, "saxpy")
        x, y = np.arange(5.0), np.ones(5)
        t.close(saxpy(2.0, x, y), 2 * x + y, "saxpy(2.0, x, y) on 5 elements")

Grading is all or nothing per exercise: the first failed case stops the check. Split an
exercise into several ids when partial credit makes sense.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """A case of a check did not hold; the message says what was expected."""


@dataclass
class Exercise:
    id: str
    points: float
    notebook: str
    check: Callable[[dict, Tester], None]
    hint: str = ""
    timeout: float | None = None  # seconds; None means the grader's default
    simulator: bool = False  # grade the whole notebook in Numba's CUDA simulator


@dataclass
class Tester:
    """What a check uses to state its cases; it records the ones that passed."""

    passed: list[str] = field(default_factory=list)

    def need(self, ns: dict, name: str, callable_: bool = True) -> Any:
        """The student's definition of ``name``, or a kind failure when it is missing."""
        if name not in ns:
            raise CheckFailed(f"`{name}` is not defined: run the cell that defines it first")
        obj = ns[name]
        if callable_ and not callable(obj):
            raise CheckFailed(f"`{name}` should be a function, but it is a {type(obj).__name__}")
        self.passed.append(f"`{name}` is defined")
        return obj

    def true(self, cond: Any, what: str, detail: str = "") -> None:
        if not bool(cond):
            raise CheckFailed(f"{what}: failed" + (f" ({detail})" if detail else ""))
        self.passed.append(what)

    def equal(self, actual: Any, expected: Any, what: str) -> None:
        ok = actual == expected
        if isinstance(ok, np.ndarray):
            ok = np.shape(actual) == np.shape(expected) and bool(ok.all())
        if not ok:
            raise CheckFailed(f"{what}: expected {_short(expected)}, got {_short(actual)}")
        self.passed.append(what)

    def close(self, actual: Any, expected: Any, what: str, rtol: float = 1e-5,
              atol: float = 1e-6) -> None:
        try:
            a = np.asarray(actual, dtype=np.float64)
        except (TypeError, ValueError):
            raise CheckFailed(f"{what}: expected numbers, got {_short(actual)}") from None
        e = np.asarray(expected, dtype=np.float64)
        if a.shape != e.shape:
            raise CheckFailed(f"{what}: expected shape {e.shape}, got shape {a.shape}")
        if not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            bad = np.argwhere(~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True))
            where = tuple(int(v) for v in bad[0]) if a.ndim else ()
            msg = f"{what}: expected {_short(e)}, got {_short(a)}"
            if a.ndim:
                msg += f" (first mismatch at index {where}: {a[where]!r} vs {e[where]!r})"
            raise CheckFailed(msg)
        self.passed.append(what)

    def raises(self, exc: type[BaseException] | tuple, fn: Callable[[], Any], what: str) -> None:
        try:
            fn()
        except exc:
            self.passed.append(what)
            return
        except Exception as err:  # noqa: BLE001 - the student's code may raise anything
            raise CheckFailed(
                f"{what}: expected {_name(exc)}, got {type(err).__name__}: {err}") from None
        raise CheckFailed(f"{what}: expected {_name(exc)} to be raised, nothing was")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (tracebacks in messages stay out)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def call(what: str, fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` for a check: an exception from the student's code fails the
    case ``what`` and names it. ``NotImplementedError`` (the exercise is not done yet) and
    ``CheckFailed`` (a verdict from a callback the check passed in) go through unchanged."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        raise CheckFailed(f"{what}: your code raised {type(err).__name__}: "
                          f"{first_line(err)}") from None


def _name(exc) -> str:
    if isinstance(exc, tuple):
        return " or ".join(e.__name__ for e in exc)
    return exc.__name__


def _short(v: Any, limit: int = 160) -> str:
    text = np.array2string(v, threshold=12, precision=5) if isinstance(v, np.ndarray) else repr(v)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REGISTRY: dict[str, Exercise] = {}
_LOADED = False


def exercise(id: str, points: float, notebook: str, hint: str = "",
             timeout: float | None = None, simulator: bool = False):
    """Register the decorated function as the check of exercise ``id``.

    ``simulator=True`` says the check needs Numba's CUDA simulator (it counts memory
    traffic, which only the simulator can see), so ``mlc grade`` runs that notebook with
    ``NUMBA_ENABLE_CUDASIM=1`` even on a machine with a GPU.
    """

    def deco(fn):
        if id in _REGISTRY and _REGISTRY[id].check.__module__ != fn.__module__:
            raise ValueError(f"exercise id {id!r} is registered twice")
        _REGISTRY[id] = Exercise(id, float(points), notebook, fn, hint, timeout, simulator)
        return fn

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    from . import checks

    for info in pkgutil.iter_modules(checks.__path__):
        importlib.import_module(f"{checks.__name__}.{info.name}")
    _LOADED = True


def get(id: str) -> Exercise:
    _load_all()
    if id not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"no exercise with id {id!r}; known ids: {known}")
    return _REGISTRY[id]


def all_exercises() -> dict[str, Exercise]:
    _load_all()
    return dict(_REGISTRY)


def for_notebook(stem: str) -> list[Exercise]:
    """The exercises of notebook ``stem`` (e.g. ``"00_welcome"``), in registration order."""
    _load_all()
    return [ex for ex in _REGISTRY.values() if ex.notebook == stem]

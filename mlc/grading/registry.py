"""The exercise registry: stable ids, points, and the checks that grade them.

A check is written in three parts, because grading happens in two processes and only one
of them may be trusted:

``cases()``  (the grader)
    The inputs, hidden ones included: a list of dicts, each with a ``"what"`` that says
    in words what the case is. Keys that start with ``_`` never leave the grader (an
    expected answer, a reference computed in advance).
``observe(ns, case)``  (the worker, next to the student's code)
    Calls the student's definitions in ``ns`` on the case's inputs and returns *plain
    data*: arrays, numbers, strings, lists, dicts (see :mod:`mlc.grading.wire`). It
    decides nothing: it only reports what the student's code did.
``judge(case, obs, t)``  (the grader)
    Compares an observation with the grader's own reference through the :class:`Tester`
    ``t``; the first case that does not hold fails the exercise.

and, optionally, ``inspect(src, t)`` (the grader), which reads the notebook's *source*
(:class:`~mlc.grading.source.Sources`), e.g. "compact must not call as_strided".

A student's cell can replace any function in its own process, write any file and print
anything; all it reaches is the worker, which holds neither the verdict nor the expected
answers. Forging an observation that the judge accepts means computing the right answer,
which is solving the exercise. Register a check with :func:`exercise`::

    @exercise("welcome.intensity", points=1, notebook="00_welcome", needs=("intensity",),
              hint="count the bytes of every array the op touches once")
    class _(Check):
        def cases(self):
            return [{"what": "intensity(8)", "n": 8}]

        def observe(self, ns, case):
            return ns["intensity"](case["n"])

        def judge(self, case, obs, t):
            t.close(obs, 2 * case["n"] / 12, case["what"])

Grading is all or nothing per exercise. ``hint`` is the nudge shown after a *wrong*
answer (never for an untouched stub, and never the solution itself).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """A case of a check did not hold; the message says what was expected."""


class Missing(CheckFailed):
    """A name the exercise needs is not defined (no hint: nothing was tried yet)."""


class Check:
    """Base class of a check: override ``cases``, ``observe`` and ``judge`` (and
    ``inspect`` for source checks). ``needs`` are the functions the student defines,
    ``values`` the non-callable names (constants such as ``TILE``)."""

    def cases(self) -> list[dict]:
        raise NotImplementedError("a Check defines cases()")  # abstract

    def observe(self, ns: dict, case: dict) -> Any:
        raise NotImplementedError("a Check defines observe()")  # abstract

    def judge(self, case: dict, obs: Any, t: Tester) -> None:
        raise NotImplementedError("a Check defines judge()")  # abstract

    def inspect(self, src, t: Tester) -> None:
        """Source checks in the grader; by default none."""


@dataclass
class Exercise:
    id: str
    points: float
    notebook: str
    check: Check
    hint: str = ""
    timeout: float | None = None  # seconds; None means the grader's default
    simulator: bool = False  # grade the whole notebook in Numba's CUDA simulator
    needs: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    rebuilds: tuple[str, ...] = ()  # "module:attr.path" of the library code it rebuilds
    fresh: str = ""  # a case with this key is observed in a fresh process (.fresh)


@dataclass
class Tester:
    """What a judge uses to state its verdicts; it records the ones that passed."""

    passed: list[str] = field(default_factory=list)

    def true(self, cond: Any, what: str, detail: str = "") -> None:
        if not (cond is True or (isinstance(cond, (bool, np.bool_)) and bool(cond))):
            raise CheckFailed(f"{what}: failed" + (f" ({detail})" if detail else ""))
        self.passed.append(what)

    def equal(self, actual: Any, expected: Any, what: str) -> None:
        if not _equal(actual, expected):
            raise CheckFailed(f"{what}: expected {_short(expected)}, got {_short(actual)}")
        self.passed.append(what)

    def close(self, actual: Any, expected: Any, what: str, rtol: float = 1e-5,
              atol: float = 1e-6) -> None:
        try:
            a = np.asarray(actual, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
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

    def raised(self, obs: Any, expected: type[BaseException] | tuple, what: str) -> None:
        """``obs`` is what :func:`raised` observed; it must name one of ``expected``."""
        names = {e.__name__ for e in (expected if isinstance(expected, tuple) else (expected,))}
        want = " or ".join(sorted(names))
        if not isinstance(obs, dict) or "raised" not in obs:
            raise CheckFailed(f"{what}: malformed observation")
        if obs["raised"] is None:
            raise CheckFailed(f"{what}: expected {want} to be raised, nothing was")
        mro = obs.get("mro") or []
        if not (isinstance(mro, list) and names & {str(m) for m in mro}):
            raise CheckFailed(f"{what}: expected {want}, got {obs['raised']}")
        self.passed.append(what)

    def fail(self, message: str) -> None:
        raise CheckFailed(message)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, np.ndarray) or isinstance(expected, np.ndarray):
        try:
            return bool(np.shape(actual) == np.shape(expected)
                        and np.array_equal(np.asarray(actual), np.asarray(expected)))
        except (TypeError, ValueError):
            return False
    try:
        ok = actual == expected
        return ok is True or (isinstance(ok, (bool, np.bool_)) and bool(ok))
    except Exception:  # noqa: BLE001 - a forged observation may compare strangely
        return False


# ---- helpers for observe (they run in the worker, next to the student's code) ----------------

def need(ns: dict, name: str, callable_: bool = True) -> Any:
    """The student's definition of ``name``, or :class:`Missing` when it is not there."""
    if name not in ns:
        raise Missing(f"`{name}` is not defined: run the cell that defines it first")
    obj = ns[name]
    if callable_ and not callable(obj):
        raise CheckFailed(f"`{name}` should be a function, but it is a {type(obj).__name__}")
    return obj


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (tracebacks in messages stay out)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def call(what: str, fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` for an observe: an exception from the student's code fails
    the case ``what`` and names it. ``NotImplementedError`` (the exercise is not done yet)
    and ``CheckFailed`` go through unchanged."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        raise CheckFailed(f"{what}: your code raised {type(err).__name__}: "
                          f"{first_line(err)}") from None


def raised(fn: Callable, *args, **kwargs) -> dict:
    """Run ``fn`` expecting an exception; report which one (for :meth:`Tester.raised`)."""
    try:
        fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        return {"raised": f"{type(err).__name__}: {first_line(err)}",
                "mro": [c.__name__ for c in type(err).__mro__]}
    return {"raised": None, "mro": []}


def _short(v: Any, limit: int = 160) -> str:
    text = np.array2string(v, threshold=12, precision=5) if isinstance(v, np.ndarray) else repr(v)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- hidden cases: drawn from a seed the grader keeps --------------------------------------------

_HIDDEN_SEED: int | None = None


def hidden_seed(salt: int) -> int:
    """The seed of a check's hidden cases, for its ``cases()``:
    ``np.random.default_rng(hidden_seed(20))``.

    Outside the grader it is ``salt`` itself, so a student's ``check()`` in the notebook
    is reproducible; inside ``mlc grade`` it is mixed with a secret the grader draws for
    each run (:func:`hidden_cases`), so no shipped file says what the hidden cases are.
    Visible cases keep fixed seeds of their own."""
    if _HIDDEN_SEED is None:
        return salt
    state = np.random.SeedSequence([_HIDDEN_SEED, salt]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


@contextmanager
def hidden_cases(secret: int):
    """Within this block, :func:`hidden_seed` mixes in ``secret`` (the grader's)."""
    global _HIDDEN_SEED
    old, _HIDDEN_SEED = _HIDDEN_SEED, int(secret)
    try:
        yield
    finally:
        _HIDDEN_SEED = old


# ---- the registry -----------------------------------------------------------------------------

_REGISTRY: dict[str, Exercise] = {}
_LOADED = False


def exercise(id: str, points: float, notebook: str, hint: str = "",
             timeout: float | None = None, simulator: bool = False,
             needs: tuple[str, ...] = (), values: tuple[str, ...] = (),
             rebuilds: tuple[str, ...] = (), fresh: str = ""):
    """Register the decorated :class:`Check` subclass as the check of exercise ``id``.

    ``rebuilds`` names the library code the exercise asks the student to write again, as
    ``"module:attribute.path"`` (e.g. ``"mlc.graph.passes:eliminate_dead_code"``): while
    ``mlc grade`` runs the notebook it is replaced by a stand-in that raises.

    ``fresh`` names a case key (e.g. ``"speed"``): a case that has it is observed in a
    fresh process holding only the student's definitions (:mod:`mlc.grading.fresh`), so
    that no cell of the notebook can script its timer.

    ``needs``/``values`` name what the student must define (functions / other values):
    the grader reports a missing one before any case runs. ``simulator=True`` says the
    check needs Numba's CUDA simulator (it counts memory traffic, which only the
    simulator can see), so ``mlc grade`` runs that notebook with ``NUMBA_ENABLE_CUDASIM=1``
    even on a machine with a GPU.
    """

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Check)):
            raise TypeError(f"@exercise({id!r}) decorates a Check subclass, not {cls!r}")
        if id in _REGISTRY and type(_REGISTRY[id].check).__module__ != cls.__module__:
            raise ValueError(f"exercise id {id!r} is registered twice")
        _REGISTRY[id] = Exercise(id, float(points), notebook, cls(), hint, timeout, simulator,
                                 tuple(needs), tuple(values), tuple(rebuilds), fresh)
        return cls

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

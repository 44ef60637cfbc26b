"""The measuring instruments as they were imported, put back after the student's definitions.

In the fresh process (:mod:`.fresh`) the student's definitions run before a case is
measured, and loading them runs code: a decorator, a default argument, a class body. Such
code could patch what measures (``mlc.perf``'s counting arrays, ``count_memory``'s code,
the CUDA simulator's classes, the clock) before the measurement starts, or leave something
behind that patches it later: a thread, a trace or profile hook, a signal handler.

:func:`snapshot` records, before the definitions run, every attribute of the instrument
modules, of the classes they define and the code of their functions; :meth:`Snapshot.restore`
puts them back after the definitions ran, and refuses (:class:`CheckFailed`) what a restore
cannot undo. What the kernel or function does *during* its own measured call is the
check's to judge (:func:`.checks.gpu_launch.python_in_kernel` refuses kernels that run
Python no GPU runs).
"""

from __future__ import annotations

import signal
import sys
import threading
import types

from .registry import CheckFailed

# the modules whose objects measure: the timer and the counter, the clock, the simulator,
# and numpy's namespace (np.full, np.empty make the arrays that count)
_PREFIXES = ("mlc.perf", "time", "numba.cuda.simulator")
_FUNCTION = ("__code__", "__defaults__", "__kwdefaults__")


def _modules() -> list[types.ModuleType]:
    return [m for name, m in list(sys.modules.items()) if isinstance(m, types.ModuleType)
            and (name == "numpy" or any(name == p or name.startswith(p + ".")
                                        for p in _PREFIXES))]


def _functions(obj) -> list[types.FunctionType]:
    """The Python functions a module-level object holds: itself, or a class's methods
    and its properties' getters and setters."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    if not isinstance(obj, type):
        return []
    out = []
    for v in vars(obj).values():
        parts = (v.fget, v.fset) if isinstance(v, property) else (getattr(v, "__func__", v),)
        out += [f for f in parts if isinstance(f, types.FunctionType)]
    return out


def _hooks() -> tuple:
    handlers = []
    for sig in signal.valid_signals():
        try:
            handlers.append((sig, signal.getsignal(sig)))
        except (OSError, ValueError):
            continue
    return (threading.active_count(), sys.gettrace(), sys.getprofile(),
            getattr(threading, "_trace_hook", None), getattr(threading, "_profile_hook", None),
            tuple(handlers))


class Snapshot:
    """What :func:`snapshot` recorded; ``restore()`` puts it back."""

    def __init__(self):
        self.modules = {m: dict(vars(m)) for m in _modules()}
        self.classes, self.functions = {}, {}
        for module, names in self.modules.items():
            for obj in names.values():
                if getattr(obj, "__module__", None) != module.__name__:
                    continue  # another module's object, recorded there if it measures
                if isinstance(obj, type):
                    self.classes[obj] = dict(vars(obj))
                for fn in _functions(obj):
                    self.functions[fn] = tuple(getattr(fn, a) for a in _FUNCTION)
        self.hooks = _hooks()

    def restore(self) -> None:
        """Put everything back; CheckFailed if the definitions left a thread or a hook."""
        for module, saved in self.modules.items():
            sys.modules[module.__name__] = module
            for name in set(vars(module)) - set(saved):  # a name that shadows a builtin
                if not isinstance(vars(module)[name], types.ModuleType):  # (not a submodule)
                    delattr(module, name)
            vars(module).update(saved)
        for cls, saved in self.classes.items():
            for name in set(vars(cls)) - set(saved):
                delattr(cls, name)
            for name, value in saved.items():
                if vars(cls).get(name, value) is not value or name not in vars(cls):
                    try:
                        setattr(cls, name, value)
                    except (AttributeError, TypeError):  # __dict__, __weakref__: fixed
                        continue
        for fn, saved in self.functions.items():
            for name, value in zip(_FUNCTION, saved, strict=True):
                setattr(fn, name, value)
        if _hooks() != self.hooks:
            raise CheckFailed("loading your definitions started a thread or installed a "
                              "trace, profile or signal handler: a cell that defines the "
                              "exercise's functions should only define them")


def snapshot() -> Snapshot:
    return Snapshot()

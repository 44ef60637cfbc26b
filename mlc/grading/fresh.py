"""Measurements the notebook cannot script: a speed case timed in a fresh interpreter.

In the worker, the student's cells have run: they may have replaced ``mlc.perf.timeit``,
``time.perf_counter`` or the timer's internals, started a thread, installed a profiler.
A timing taken there measures whatever the notebook arranged. So a check's speed case
is not observed in the worker but by :func:`measure`, which starts a clean
interpreter (``python -I``, its ``mlc.grading`` read from the worker's memory) that

1. imports the exercise's check, ``mlc.perf`` and the clock *before* any of the student's
   code exists in that process;
2. seals ``mlc.grading`` and the library code the exercise rebuilds, as the worker does,
   and makes ``mlc.perf.timeit`` put back the real timer and clock before every call (a
   function that patches them while it is timed changes nothing after);
3. runs only the student's *definitions* (the source of the functions the exercise needs,
   as the notebook wrote them, what they use, and numeric constants such as ``TILE``),
   none of the notebook's other cells;
4. calls the check's ``observe`` on the case and writes the plain-data result
   (:mod:`.wire`) to a pipe the worker reads.

An exercise asks for this with ``@exercise(..., fresh="speed")``: its cases that have the
key ``"speed"`` are observed this way (:func:`mlc.grading.protocol.observe_case`).

The worker forwards that result as the case's observation; the grader judges it as
before. What the student's function does *during* its timed call still runs in the
process that times it: a fresh process narrows the reach to that one call.
"""

from __future__ import annotations

import ast
import dis
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

from .isolate import prime_numba_cache
from .registry import CheckFailed
from .wire import from_plain, to_plain

_PRELUDE = "import math\nimport numpy as np\nimport numba\nfrom numba import njit, prange\n"
# as the worker started, before any cell could change them
_ENV, _PYTHON, _POPEN = dict(os.environ), sys.executable, subprocess.Popen
_TOP = os.path.dirname(os.path.abspath(__file__))


def freeze_environment() -> None:
    """The environment every fresh process gets from now on: the worker calls this once
    it is set up (its private Numba cache, its HOME), before the notebook's first cell."""
    _ENV.clear()
    _ENV.update(os.environ)


def _read_bundle() -> dict[str, str]:
    """The text of every module of ``mlc.grading``, read at import: an isolated worker
    imports its checks first and then cannot read these files any more (they are
    hollowed), so the fresh process gets them from the worker, not from the disk."""
    out = {}
    for root, _, files in os.walk(_TOP):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    out[os.path.relpath(os.path.join(root, name), _TOP)] = f.read()
    return out


_BUNDLE = _read_bundle()

# The fresh process's first code: serve mlc.grading from the bundle on stdin, then main().
_BOOT = """
import importlib.abc, importlib.util, json, os, sys
job = json.loads(sys.stdin.buffer.read())
bundle, top = job.pop("bundle"), job.pop("top")
class Bundle(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != "mlc.grading" and not name.startswith("mlc.grading."):
            return None
        rel = name[len("mlc.grading."):].replace(".", "/") if "." in name[4:] else ""
        for key, package in ((os.path.join(rel, "__init__.py"), True), (rel + ".py", False)):
            if key in bundle:
                spec = importlib.util.spec_from_loader(name, self, is_package=package,
                                                       origin=os.path.join(top, key))
                spec.has_location = True
                if package:
                    spec.submodule_search_locations = [os.path.dirname(spec.origin)]
                return spec
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        origin = module.__spec__.origin
        exec(compile(bundle[os.path.relpath(origin, top)], origin, "exec"), vars(module))
sys.meta_path.insert(0, Bundle())
from mlc.grading import fresh
sys.exit(fresh.main(sys.argv[1:], job))
"""


def _globals_used(fn) -> set[str]:
    """The global names ``fn``'s code (nested functions included) reads; not attribute
    names (``sch.split`` does not need the notebook's ``split``)."""
    names, codes = set(), [getattr(fn, "py_func", fn).__code__]
    while codes:
        code = codes.pop()
        names.update(i.argval for i in dis.get_instructions(code)
                     if i.opname in ("LOAD_GLOBAL", "LOAD_NAME"))
        codes += [c for c in code.co_consts if hasattr(c, "co_names")]
    return names


def _import_of(name: str, obj, ns: dict) -> list[str]:
    """``from MODULE import ATTR as name`` for an object the notebook imported (a module
    it imported, numpy or numba holds it), else nothing."""
    if obj is None:
        return []
    if getattr(obj, "__module__", None) == ns.get("__name__"):
        return []  # the notebook's own, without a source: nothing to import it from
    homes = [getattr(obj, "__module__", None)] + [
        m.__name__ for m in ns.values() if inspect.ismodule(m)] + ["numpy", "numba"]
    for home in homes:
        module = sys.modules.get(home) if isinstance(home, str) else None
        for attr, value in (vars(module).items() if module else ()):
            if value is obj and not attr.startswith("__"):
                return [f"from {home} import {attr} as {name}\n"]
    return []


def _lambda_text(source: str) -> str:
    """The first ``lambda`` expression in a line of source (``getsource`` gives the line)."""
    start = source.index("lambda")
    for end in range(len(source), start, -1):
        try:
            ast.parse(source[start:end], mode="eval")
            return source[start:end]
        except SyntaxError:
            continue
    raise CheckFailed("a lambda whose source cannot be read: define it with def")


def definitions(ns: dict, names: tuple[str, ...], values: tuple[str, ...] = ()) -> str:
    """The source of the student's definitions of ``names`` (the notebook's own text, as
    IPython keeps it) after the numeric ``values`` and whatever they use: the notebook's
    own functions and classes (their source), constants, and imports."""
    consts, funcs, seen = [], [], set()
    for name in values:
        if isinstance(ns.get(name), (int, float)) and not isinstance(ns[name], bool):
            consts.append(f"{name} = {ns[name]!r}\n")
            seen.add(name)
    todo = [(name, ns) for name in names]  # a name, and the globals it is looked up in
    while todo:
        name, scope = todo.pop(0)
        if name in seen or name not in scope:
            continue
        seen.add(name)
        obj = scope[name]
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            consts.append(f"{name} = {obj!r}\n")
            continue
        if inspect.ismodule(obj):  # `import numba as nb` for `@nb.njit`
            consts.append(f"import {obj.__name__} as {name}\n")
            continue
        fn = getattr(obj, "py_func", obj)
        if not ((inspect.isfunction(fn) or inspect.isclass(fn))
                and (name in names or fn.__module__ == scope.get("__name__"))):
            consts += _import_of(name, obj, scope)  # numba's objmode, numpy's sqrt, ...
            continue
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise CheckFailed(f"the source of `{name}` cannot be found: define it in a "
                              "notebook cell") from None
        inner = fn.__globals__ if inspect.isfunction(fn) else scope
        if fn.__name__ == "<lambda>":  # `f = lambda sch: sch`: the expression alone
            funcs.append(f"{name} = {_lambda_text(source)}\n")
            todo += [(n, inner) for n in sorted(_globals_used(fn))]
            continue
        tree = ast.parse(source).body[0]
        if tree.name != name:  # defined under another name, then assigned
            funcs.append(f"{name} = {tree.name}\n")
        funcs.append(source)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} \
            if inspect.isclass(fn) else _globals_used(fn)
        used |= {n.id for d in tree.decorator_list for n in ast.walk(d)
                 if isinstance(n, ast.Name)}
        todo += [(n, inner) for n in sorted(used)]
    return "\n".join([_PRELUDE, *consts, *funcs[::-1]])


_monotonic = time.monotonic  # bound before any student code runs in this process


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to pipe ``fd`` until its writer closes it, or None at ``deadline``
    (the fd is closed either way)."""
    import selectors

    chunks = []
    with os.fdopen(fd, "rb", buffering=0) as f, selectors.DefaultSelector() as sel:
        sel.register(f, selectors.EVENT_READ)
        while True:
            left = deadline - _monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = f.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def measure(ex, ns: dict, case: dict, timeout: float = 120.0):
    """``ex.check.observe(fresh_ns, case)`` of exercise ``ex``, run in a fresh interpreter
    on the student's definitions (see the module docstring). A :class:`CheckFailed` there
    is raised here with its message."""
    job = json.dumps({"id": ex.id, "case": to_plain(case), "top": _TOP, "bundle": _BUNDLE,
                      "source": definitions(ns, ex.needs, ex.values)})
    read, write = os.pipe()
    errors = tempfile.TemporaryFile()  # not a pipe: a chatty child cannot block on it
    env = dict(_ENV)
    env.pop("MLC_GRADING", None)
    # None of the worker's cached code (its cache folder is the student's to write), but
    # the package's own compiled kernels, copied from their in-tree caches: compiling them
    # all again took minutes per speed case.
    cache = tempfile.mkdtemp(prefix="mlc-fresh-numba-")
    prime_numba_cache(Path(_TOP).parent, Path(cache))
    env["NUMBA_CACHE_DIR"] = cache
    proc = _POPEN([_PYTHON, "-I", "-c", _BOOT, str(write)],
                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                  stderr=errors, pass_fds=(write,), env=env)
    os.close(write)
    try:
        try:
            proc.stdin.write(job.encode("utf-8"))
            proc.stdin.close()
        except BrokenPipeError:  # it ended early: what it said is read below
            pass
        data = _read_until(read, _monotonic() + timeout)
        if data is None:  # a loop that never ends (or a recursion) must not hang the worker
            raise CheckFailed(f"{case.get('what', 'the speed case')}: no result within "
                              f"{timeout:.0f} s")
        proc.wait(timeout=timeout)
        errors.seek(max(0, errors.seek(0, 2) - 4000))
        said = errors.read().decode("utf-8", "replace").strip().splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(cache, ignore_errors=True)
        errors.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise CheckFailed(f"{case.get('what', 'the speed case')}: the fresh process that "
                          f"times it ended without a result (exit code {proc.returncode}"
                          f"{': ' + said[-1][:300] if said else ''})") from None
    if "error" in reply:
        raise CheckFailed(str(reply["error"]))
    return from_plain(reply["ok"])


def _guard_timer(worker: dict, real, restore) -> None:
    """Make ``mlc.perf.timeit`` put back the real timer, clock and itself before each
    call: a function that patches them while it is timed changes nothing after."""

    def timeit(*args, **kwargs):
        restore()
        return real(*args, **kwargs)

    timeit.__doc__, timeit.__wrapped__ = real.__doc__, real
    for name in ("mlc.perf", "mlc.perf.timing"):
        module, saved = worker["perf"][name]
        module.timeit = saved["timeit"] = timeit


def main(argv: list[str], job: dict) -> int:
    """The fresh process (``_BOOT``), its job read: measure, and write the result to FD."""
    from time import perf_counter  # noqa: F401 - the clock, bound before the student's code

    import mlc.perf.timing  # the real one, imported before the student's code

    from . import runner

    fd = int(argv[0])
    worker = runner.prepare({"exercises": [{"id": job["id"]}]})
    observe = worker["exercises"][job["id"]].check.observe
    case, encode = from_plain(job["case"]), to_plain
    runner.seal(worker)  # also snapshots mlc.perf and the clock
    _guard_timer(worker, mlc.perf.timing.timeit, lambda: runner._restore_perf(worker))
    folder = tempfile.mkdtemp(prefix="mlc-fresh-")
    path = os.path.join(folder, "definitions.py")  # a file: Numba's cache=True needs one
    with open(path, "w", encoding="utf-8") as f:
        f.write(job["source"])
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the whole process
    try:
        module = types.ModuleType("definitions")  # Numba finds globals through it
        module.__file__ = path
        sys.modules[module.__name__] = module
        exec(compile(job["source"], path, "exec"), vars(module))  # noqa: S102 - the defs
        reply = {"ok": encode(observe(vars(module), case))}
    except CheckFailed as err:
        reply = {"error": str(err)}
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        reply = {"error": f"{case.get('what', 'the speed case')}: your code raised "
                          f"{type(err).__name__}: {str(err).strip()[:200]}"}
    data = json.dumps(reply).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return 0

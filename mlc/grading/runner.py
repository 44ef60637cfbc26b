"""The grading worker: runs a notebook's code, then *observes* each exercise.

Started by :mod:`mlc.grading.grader` as ``python -m mlc.grading.runner JOB.json FD``, in a
process of its own so that nothing the student's code does (print without end, raise,
``sys.exit``, loop forever, crash the interpreter) can take the grader down with it.

The cells run in an IPython shell, as in JupyterLab: ``%time x = f()`` defines ``x``,
``display(...)`` displays, ``%%capture`` captures. Then, for each exercise, a fork of the
worker calls the student's definitions on the cases the grader sent and writes what they
returned to the channel ``FD`` (JSON lines, :mod:`mlc.grading.wire`). The worker holds
no expected answer and decides no score: the grader judges what arrives. The same channel
carries progress (which cell or exercise is running), so the grader knows what to stop,
skip and report when a cell outlives its time limit.

Before the first cell runs, :func:`prepare` imports everything the worker needs and
:func:`seal` puts stand-ins that raise in place of ``mlc.grading`` (its checks, their
references and cases) and of the library functions the exercises rebuild, whatever the
spelling (``import``, ``importlib``, ``__import__``, an attribute of ``mlc``). ``check()``
stays a no-op, as the exercise notebooks call it. Each observation starts from the
``mlc.perf`` (and clock) that the worker imported, not one a cell replaced.

Grading needs a POSIX system (Linux, macOS, WSL): each exercise runs in a ``fork``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import traceback
import types

from .check import GRADING_ENV


class Sealed(PermissionError):
    """What the student's code gets when it reaches for the grader's own code."""


class _SealedModule(types.ModuleType):
    def __getattr__(self, name):
        if name == "check":
            return _no_check
        if name.startswith("__"):  # __path__, __file__: what the import system probes
            raise AttributeError(f"{self.__name__} is sealed while your notebook is graded")
        raise Sealed(f"{self.__name__}.{name} is out of reach while your notebook is graded")


def _no_check(*args, **kwargs):
    """``check()`` under the grader: the grader runs every check itself."""


def _sealed_function(name: str, real=None, library: str | None = None):
    """A stand-in for ``real`` that raises when the student's code calls it.

    The library's own modules keep calling the real one (``memory.plan`` still plans with
    the library's liveness while the notebook rebuilds ``liveness``): the stand-in passes a
    call through when the calling code's file lies in the ``library`` directory. The
    notebook's cells are compiled under IPython's names, never a file of the package."""

    def stand_in(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if real is not None and library and caller.startswith(library):
            return real(*args, **kwargs)
        raise Sealed(f"{name} is what this exercise asks you to write; the library's own "
                     "is out of reach while your notebook is graded")

    stand_in.__name__ = stand_in.__qualname__ = name.rsplit(".", 1)[-1]
    return stand_in


def _seal_rebuilt(dotted: str, library: str) -> None:
    """Replace the library object ``"module:attr.path"`` wherever the package binds it.

    A function is replaced in its own module and in every ``mlc`` module that imported it
    (``mlc.quant.requantize`` and ``mlc.quant.fixedpoint.requantize`` alike); a method on
    its class; a class by sealing its ``__init__`` (``isinstance`` and the library's own
    subclasses keep working)."""
    import importlib

    module, _, rest = dotted.partition(":")
    owner = importlib.import_module(module)
    *path, attr = rest.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    if isinstance(real, type):
        init = real.__dict__.get("__init__", real.__init__)
        real.__init__ = _sealed_function(f"{module}.{rest}", init, library)
        return
    stand_in = _sealed_function(f"{module}.{rest}", real, library)
    if isinstance(owner, type):
        setattr(owner, attr, stand_in)
        return
    for name, mod in list(sys.modules.items()):
        if (name == "mlc" or name.startswith("mlc.")) and isinstance(mod, types.ModuleType) \
                and not isinstance(mod, _SealedModule):
            for key, value in list(vars(mod).items()):
                if value is real:
                    setattr(mod, key, stand_in)


class CellTimeout(BaseException):
    """Raised in the main thread by SIGALRM; a BaseException so `except Exception` misses it."""


class BoundedWriter(io.TextIOBase):
    """A stdout stand-in that keeps the first ``limit`` characters and drops the rest."""

    def __init__(self, limit: int = 4000):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def write(self, s):
        s = str(s)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def getvalue(self) -> str:
        tail = f"\n... ({self.dropped} more characters not shown)" if self.dropped else ""
        return "".join(self.parts) + tail


class Channel:
    """JSON lines to the grader over an inherited file descriptor."""

    def __init__(self, fd: int):
        self.fd = fd

    def __call__(self, **message):
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


def _alarm(seconds: float):
    def handler(signum, frame):
        raise CellTimeout()

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))


def _cancel_alarm():
    signal.setitimer(signal.ITIMER_REAL, 0)


def make_shell():
    """An IPython shell without a terminal or a kernel: magics and display work as in
    Jupyter; GUI event loops are refused quietly (``%matplotlib inline`` then draws
    with the non-interactive backend)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class GradingShell(InteractiveShell):
        def enable_gui(self, gui=None):
            return None

    config = Config()
    config.HistoryManager.enabled = False  # no history database shared between workers
    return GradingShell.instance(config=config)


def _error_of(result, timeout: float) -> str | None:
    err = result.error_before_exec or result.error_in_exec
    if err is None:
        return None
    if isinstance(err, CellTimeout):
        return f"did not finish within {timeout:g} s"
    if isinstance(err, SystemExit):
        return f"called sys.exit({err.code})"
    return f"{type(err).__name__}: {err}"


def run_cells(shell, cells, skip, timeout, send) -> None:
    """Run the notebook's cells in the shell's namespace, each under its own alarm."""
    for index, source in enumerate(cells):
        if index in skip:
            continue
        send(kind="cell", index=index, state="start")
        out = BoundedWriter()
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        error = None
        try:
            _alarm(timeout)
            error = _error_of(shell.run_cell(source, store_history=True), timeout)
        except CellTimeout:  # the alarm rang outside the cell's own code
            error = f"did not finish within {timeout:g} s"
        finally:
            _cancel_alarm()
            sys.stdout, sys.stderr = old
        send(kind="cell", index=index, state="end", error=error)


def prepare(job: dict) -> dict:
    """Import, before any student code runs, everything the worker will call: the checks
    of the job's exercises, the wire, IPython and ``mlc.perf``."""
    import IPython.core.interactiveshell  # noqa: F401 - imported while the files are trusted

    from . import fresh, protocol, wire
    from .registry import get

    import mlc.perf  # noqa: F401

    exercises = {j["id"]: get(j["id"]) for j in job["exercises"]}
    return {"exercises": exercises, "observe_case": protocol.observe_case,
            "observe_names": protocol.observe_names, "from_plain": wire.from_plain,
            "freeze_env": lambda: fresh.freeze_environment(
                start=any(ex.fresh for ex in exercises.values()))}


def _restore_perf(worker: dict) -> None:
    """Undo whatever the notebook did to ``mlc.perf`` and ``time`` (the measuring tools)."""
    import mlc

    for name, (mod, saved) in worker["perf"].items():
        sys.modules[name] = mod
        vars(mod).update(saved)
    mlc.perf = worker["perf"]["mlc.perf"][0]


def seal(worker: dict) -> None:
    """Replace ``mlc.grading`` and every module under it by stand-ins that raise, and the
    library functions the exercises rebuild (``Exercise.rebuilds``) by functions that raise."""
    import mlc

    library = os.path.dirname(os.path.abspath(mlc.__file__)) + os.sep
    for ex in worker["exercises"].values():  # before hollowing: a rebuilt object is found
        for dotted in ex.rebuilds:
            _seal_rebuilt(dotted, library)
    for name in [n for n in sys.modules if n == "mlc.grading" or n.startswith("mlc.grading.")]:
        sys.modules[name] = _SealedModule(name)
    mlc.grading = sys.modules["mlc.grading"]
    # what each observation starts from (a cell may patch the timer or the clock)
    worker["perf"] = {name: (mod, dict(vars(mod))) for name, mod in list(sys.modules.items())
                      if name in ("time", "mlc.perf") or name.startswith("mlc.perf.")}


def _observe_child(ex_id, cases, ns, timeout, send, worker) -> int:
    ex = worker["exercises"][ex_id]
    sys.stdout = sys.stderr = BoundedWriter()
    try:
        _alarm(timeout)
        names = worker["observe_names"](ex, ns)
        send(kind="names", id=ex_id, names=names)
        if any(names[n] == "missing" for n in (*ex.needs, *ex.values)):
            return 0
        for index, case in enumerate(cases):
            _restore_perf(worker)  # also what a previous case's call replaced
            obs = worker["observe_case"](ex, ns, worker["from_plain"](case))
            send(kind="obs", id=ex_id, case=index, obs=obs)
            if "error" in obs:
                break
    except CellTimeout:
        return 3
    finally:
        _cancel_alarm()
    return 0


def run_checks(exercises, ns, send, worker) -> None:
    """Observe each exercise in a fork of this process (a copy of the notebook's state
    that the student's code may break at will), under the exercise's time limit."""
    for job in exercises:
        ex_id, timeout = job["id"], float(job["timeout"])
        send(kind="check", id=ex_id, state="start")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _observe_child(ex_id, job["cases"], ns, timeout, send, worker)
            finally:
                os._exit(code)
        deadline = time.time() + timeout + 2.0
        status = "ok"
        while True:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.WIFEXITED(code) and os.WEXITSTATUS(code) == 3:
                    status = "timeout"
                elif not (os.WIFEXITED(code) and os.WEXITSTATUS(code) == 0):
                    status = "crashed"
                break
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
                break
            time.sleep(0.01)
        send(kind="check", id=ex_id, state="end", status=status)


def main(argv=None) -> int:
    """``python -m mlc.grading.runner JOB.json FD`` (not isolated: see :mod:`.isolate`)."""
    argv = sys.argv[1:] if argv is None else argv
    send = Channel(int(argv[1]))
    try:
        with open(argv[0], encoding="utf-8") as f:
            job = json.load(f)
        worker = prepare(job)
    except BaseException:  # noqa: BLE001 - report, never hang or die silently
        send(kind="runner", state="error", error=traceback.format_exc()[-2000:])
        return 1
    return serve(job, worker, send)


def serve(job: dict, worker: dict, send) -> int:
    """Run the job's cells, then observe each exercise; report progress on ``send``."""
    os.environ[GRADING_ENV] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, os.getcwd())
    worker["freeze_env"]()  # what a fresh measuring process starts from (see .fresh)
    try:
        seal(worker)
        shell = make_shell()
        run_cells(shell, job["cells"], set(job["skip"]), job["cell_timeout"], send)
        run_checks(job["exercises"], shell.user_ns, send, worker)
    except BaseException:  # noqa: BLE001 - report, never hang or die silently
        send(kind="runner", state="error", error=traceback.format_exc()[-2000:])
        return 1
    send(kind="runner", state="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

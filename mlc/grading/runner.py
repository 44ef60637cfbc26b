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

from .check import GRADING_ENV


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


def _observe_child(ex_id, cases, ns, timeout, send) -> int:
    from .protocol import observe_case, observe_names
    from .registry import get
    from .wire import from_plain

    ex = get(ex_id)
    sys.stdout = sys.stderr = BoundedWriter()
    try:
        _alarm(timeout)
        names = observe_names(ex, ns)
        send(kind="names", id=ex_id, names=names)
        if any(names[n] == "missing" for n in (*ex.needs, *ex.values)):
            return 0
        for index, case in enumerate(cases):
            obs = observe_case(ex, ns, from_plain(case))
            send(kind="obs", id=ex_id, case=index, obs=obs)
            if "error" in obs:
                break
    except CellTimeout:
        return 3
    finally:
        _cancel_alarm()
    return 0


def run_checks(exercises, ns, send) -> None:
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
                code = _observe_child(ex_id, job["cases"], ns, timeout, send)
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
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    send = Channel(int(argv[1]))
    os.environ[GRADING_ENV] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, os.getcwd())
    try:
        shell = make_shell()
        run_cells(shell, job["cells"], set(job["skip"]), job["cell_timeout"], send)
        run_checks(job["exercises"], shell.user_ns, send)
    except BaseException:  # noqa: BLE001 - report, never hang or die silently
        send(kind="runner", state="error", error=traceback.format_exc()[-2000:])
        return 1
    send(kind="runner", state="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

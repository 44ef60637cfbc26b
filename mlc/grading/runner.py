"""The grading worker: runs a notebook's code, then each exercise's check.

Started by :mod:`mlc.grading.grader` as ``python -m mlc.grading.runner JOB.json``, in a
process of its own so that nothing the student's code does (print without end, raise,
``sys.exit``, loop forever, crash the interpreter) can take the grader down with it.

It reports progress as JSON lines appended to a file, so the grader always knows which
cell or check is running and for how long: that is how a cell that ignores the alarm
(a compiled Numba loop, say) is still stopped, skipped and reported.
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


def transform_magics(source: str) -> str | None:
    """Make IPython-only syntax plain Python: drop line magics and shell escapes.

    Returns None for a cell whose cell magic runs something other than Python (%%bash).
    """
    lines = source.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split()[0] if len(lines[0].strip()) > 2 else ""
        if magic not in {"time", "timeit", "capture"}:
            return None
        lines = lines[1:]
    out = []
    for line in lines:
        body = line.lstrip()
        if body.startswith(("%", "!")):
            out.append(line[: len(line) - len(body)] + "pass")
        else:
            out.append(line)
    return "\n".join(out)


class _Progress:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, **event):
        event["t"] = time.time()
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()


def _alarm(seconds: float):
    def handler(signum, frame):
        raise CellTimeout()

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))


def _cancel_alarm():
    signal.setitimer(signal.ITIMER_REAL, 0)


def _display(*objs, **kwargs):
    for obj in objs:
        print(repr(obj))


def run_cells(cells, skip, timeout, progress, src_dir: str) -> dict:
    """Run the notebook's cells in one namespace, each under its own alarm.

    Each cell is written to ``src_dir/cell_N.py`` and compiled under that file name, so
    tools that need a real source file work as they do in Jupyter: tracebacks show the
    student's lines, and ``numba.njit(cache=True)`` finds a place for its cache.
    """
    ns = {"__name__": "__main__", "display": _display}
    for index, source in enumerate(cells):
        if index in skip:
            continue
        code = transform_magics(source)
        progress(kind="cell", index=index, state="start")
        error = None
        if code is not None:
            out = BoundedWriter()
            old = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = out
            try:
                _alarm(timeout)
                exec(compile(code, _source_file(src_dir, index, code), "exec"), ns)
            except CellTimeout:
                error = f"did not finish within {timeout:g} s"
            except SystemExit as err:
                error = f"called sys.exit({err.code})"
            except BaseException as err:  # noqa: BLE001 - anything the student's code raises
                error = f"{type(err).__name__}: {err}"
            finally:
                _cancel_alarm()
                sys.stdout, sys.stderr = old
        progress(kind="cell", index=index, state="end", error=error)
    return ns


def _source_file(src_dir: str, index: int, code: str) -> str:
    os.makedirs(src_dir, exist_ok=True)
    path = os.path.join(src_dir, f"cell_{index}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    return path


def _child_check(ex_id, ns, timeout, out_path):
    from .check import run_check

    sink = BoundedWriter()
    sys.stdout = sys.stderr = sink
    try:
        _alarm(timeout)
        rec = run_check(ex_id, ns)
    except CellTimeout:
        rec = {"id": ex_id, "score": 0.0, "message": f"timed out after {timeout:g} s"}
    except BaseException as err:  # noqa: BLE001
        rec = {"id": ex_id, "score": 0.0, "message": f"{type(err).__name__}: {err}"}
    finally:
        _cancel_alarm()
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(rec, f)


def run_checks(ids, ns, timeouts, outdir, progress) -> None:
    for ex_id in ids:
        progress(kind="check", id=ex_id, state="start")
        out_path = os.path.join(outdir, f"check-{ex_id}.json")
        if hasattr(os, "fork"):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: a copy of the notebook's state to break at will
                try:
                    _child_check(ex_id, ns, timeouts[ex_id], out_path)
                finally:
                    os._exit(0)
            deadline = time.time() + timeouts[ex_id] + 2.0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.time() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
        else:  # no fork (Windows): run in-process; the grader's watchdog stops a hang
            _child_check(ex_id, ns, timeouts[ex_id], out_path)
        progress(kind="check", id=ex_id, state="end")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    os.environ[GRADING_ENV] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    progress = _Progress(job["progress"])
    sys.path.insert(0, os.getcwd())
    try:
        ns = run_cells(job["cells"], set(job["skip"]), job["cell_timeout"], progress,
                       src_dir=os.path.join(job["outdir"], "cells"))
        run_checks(job["ids"], ns, job["timeouts"], job["outdir"], progress)
    except BaseException:  # noqa: BLE001 - report, never hang or die silently
        progress(kind="runner", state="error", error=traceback.format_exc()[-2000:])
        return 1
    progress(kind="runner", state="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``mlc grade``: grade a notebook in a separate process, each exercise under a time limit.

The notebook is only read, never written. Its code cells run in a worker process
(:mod:`mlc.grading.runner`), which then *observes* each exercise in a fork of itself: it
calls the student's definitions on the cases this process chose and sends back what they
returned. The verdict is made here, in a process that never runs student code, against
references computed here (:mod:`mlc.grading.protocol`); the worker has no score to
forge. A watchdog follows the worker's progress on the same channel: when a cell outlives
its limit in a way the worker cannot interrupt, or kills the interpreter, the worker is
stopped and started again without that cell, so one broken exercise costs only its own
points. An instructor's grading passes ``isolation`` (:mod:`.isolate`): the worker then
runs as another user in namespaces of its own, out of reach of the grader, the package
and other students.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from ..perf import format_table  # imported now: nothing is imported after a worker ran
from .isolate import THREADS, Isolation, non_dumpable
from .limits import Limits, session_processes, user_processes
from .protocol import record
from .registry import Exercise, all_exercises, for_notebook, get, hidden_cases
from .session import Reader, Session
from .source import Sources, cell_label
from .wire import public, to_plain

_CHECK_CALL = re.compile(r"""check\(\s*["']([\w.\-]+)["']""")
_SECRET = secrets.randbits(63)  # this grading run's hidden cases (registry.hidden_seed)


@dataclass
class Result:
    id: str
    score: float
    max_score: float
    message: str
    passed: list[str] = field(default_factory=list)
    hint: str = ""


@dataclass
class NotebookReport:
    notebook: str
    results: list[Result]
    notes: list[str]
    seconds: float

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.results)


def exercises_of(path: Path, cells: list[str]) -> list[Exercise]:
    """The exercises of the notebook's own unit, and only those: the unit named by the
    file (a renamed copy such as ``"00_welcome-Copy1"`` by its number), else the one unit
    that every ``check(...)`` call of the notebook names. A ``check("graphs.cse")`` in
    another unit's notebook grades nothing extra."""
    unit = unit_of(path, cells)
    return for_notebook(unit) if unit else []


def unit_of(path: Path, cells: list[str]) -> str | None:
    """The unit (notebook stem) that ``path`` is a submission of, or None (see
    :func:`exercises_of`)."""
    stem = path.stem
    known = {ex.notebook for ex in all_exercises().values()}
    units = [nb for nb in known if nb == stem]
    prefix = stem.split("_")[0]
    if not units and prefix.isdigit():
        units = [nb for nb in known if nb.split("_")[0] == prefix]
    if not units:
        named = set()
        for source in cells:
            for ex_id in _CHECK_CALL.findall(source):
                try:
                    named.add(get(ex_id).notebook)
                except KeyError:
                    continue
        units = sorted(named)
    return units[0] if len(units) == 1 else None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    proc.wait()


# Grading a class runs several grade_notebook calls in threads of one process. A fork
# (starting a worker) while another thread is inside native code that registered fork
# handlers deadlocks: OpenBLAS's handler waits for a matmul that a judge is running. So
# forking and the grader's own computing (cases, judges) never overlap.
_NATIVE_LOCK = threading.Lock()


class NotebookError(ValueError):
    """A file that cannot be graded as a notebook (missing, truncated, not JSON)."""


def read_notebook(path: Path) -> list[str]:
    """The code cells of notebook ``path``; :class:`NotebookError` in one line otherwise."""
    try:
        nb = nbformat.read(path, as_version=4)
        return [str(c.source) for c in nb.cells if c.cell_type == "code"]
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotebookError(f"{path} is not a valid notebook: it is not JSON "
                            f"({type(err).__name__} at {getattr(err, 'pos', '?')}); "
                            "was it saved completely?") from None
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds for a bad file
        raise NotebookError(f"{path} is not a valid notebook: "
                            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None


def grade_notebook(path: str | Path, timeout: float = 60.0, limits: Limits | None = None,
                   isolation: Isolation | None = None, hide: tuple[Path, ...] = (),
                   data_files: bool = True) -> NotebookReport:
    """Grade every exercise of notebook ``path``; each cell and check gets ``timeout`` s.

    The worker runs under ``limits`` (memory and process caps; :mod:`.limits`), by
    default sized to this machine. With ``isolation`` (:func:`.isolate.detect`) it runs
    isolated, ``hide`` and the notebook's folder out of its sight; ``data_files`` copies
    the other files of that folder (not notebooks) into its private directory. Raises
    :class:`NotebookError` for a file that is not a notebook."""
    if not hasattr(os, "fork"):
        raise RuntimeError("mlc grade needs a POSIX system (Linux, macOS or WSL): each "
                           "exercise is observed in a fork of the grading worker")
    path = Path(path)
    limits = limits or Limits.default()
    if isolation is not None:
        non_dumpable()  # no worker of this user may read or write the grader's memory
    start = time.time()
    cells = read_notebook(path)
    sources = Sources(cells)
    exercises = exercises_of(path, cells)
    with _NATIVE_LOCK, hidden_cases(_SECRET):  # the grader's own cases, hidden ones too
        cases = {ex.id: ex.check.cases() for ex in exercises}
    timeouts = {ex.id: float(ex.timeout or timeout) for ex in exercises}
    notes: list[str] = []
    results: dict[str, dict] = {}
    skip: set[int] = set()
    grace = 5.0
    env = dict(os.environ, MLC_GRADING="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    # Each check runs in a fork of the worker. GNU OpenMP (Numba's default "omp" threading
    # layer on Linux) aborts a forked child whose parent already ran a prange loop, so a
    # notebook cell that tried a parallel kernel would zero every later parallel check.
    # Numba's "workqueue" layer is fork-safe.
    env.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    if any(ex.simulator for ex in exercises):
        env["NUMBA_ENABLE_CUDASIM"] = "1"
        notes.append("graded in Numba's CUDA simulator (only it can count memory traffic)")
    with tempfile.TemporaryDirectory(prefix="mlc-grade-") as tmp:
        tmp = Path(tmp)
        env["IPYTHONDIR"] = str(tmp / "ipython")
        for attempt in range(len(cells) + len(exercises) + 1):
            todo = [ex for ex in exercises if ex.id not in results]
            job = {"cells": cells, "skip": sorted(skip), "cell_timeout": timeout,
                   "exercises": [{"id": ex.id, "timeout": timeouts[ex.id],
                                  "cases": [to_plain(public(c)) for c in cases[ex.id]]}
                                 for ex in todo]}
            job_path = tmp / f"job-{attempt}.json"
            job_path.write_text(json.dumps(job), encoding="utf-8")
            log_path = tmp / f"worker-{attempt}.log"
            read_fd, write_fd = os.pipe()
            argv = [sys.executable, "-m", "mlc.grading.runner", str(job_path), str(write_fd)]
            preexec = limits.preexec()
            if isolation is not None:
                files = [p for p in path.parent.iterdir() if p.suffix != ".ipynb"] \
                    if data_files else []
                nproc = (user_processes(isolation.uid) + limits.max_processes + THREADS
                         if limits.max_processes and not isolation.userns else None)
                cpu = int(timeout * (len(cells) + len(todo) + 1) * 2)  # threads count twice
                argv = isolation.command(job_path, [tmp, path.parent, *hide], files,
                                         replace(limits, cpu_seconds=cpu), write_fd, nproc)
                preexec = None  # the caps are set inside, once the namespaces exist
            with open(log_path, "wb") as log:
                with _NATIVE_LOCK:
                    proc = subprocess.Popen(
                        argv, cwd=str(path.parent.resolve()), env=env, stdout=log,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True, pass_fds=(write_fd,), preexec_fn=preexec)
            os.close(write_fd)
            reader = Reader(read_fd)
            reader.start()
            stuck = None
            while proc.poll() is None:
                time.sleep(0.02)
                if reader.flooded:
                    last = reader.last_progress()
                    stuck = dict(last[1]) if last else {"kind": "runner"}
                    stuck["why"] = "flooded the grader's channel with messages"
                    break
                if limits.max_processes and session_processes(proc.pid) > limits.max_processes:
                    last = reader.last_progress()
                    stuck = dict(last[1]) if last else {"kind": "runner"}
                    stuck["why"] = (f"started more than {limits.max_processes} processes "
                                    "(the grader's process cap)")
                    break
                last = reader.last_progress()
                if last and last[1].get("state") == "start":
                    stamp, ev = last
                    limit = timeout if ev["kind"] == "cell" else timeouts.get(ev.get("id"), 0) + 2
                    if time.monotonic() - stamp > limit + grace:
                        stuck = ev
                        break
            _kill(proc)  # also whatever the notebook left running in its process group
            reader.join(timeout=10)
            session = Session(todo, cases, timeouts)
            for stamp, msg in list(reader.events):
                session.take(stamp, msg)
            notes += [n for n in session.notes if n not in notes]
            if reader.malformed:
                notes.append(f"{reader.malformed} malformed message(s) from the worker "
                             "were ignored")
            with _NATIVE_LOCK:
                for ex in todo:
                    rec = session.result(ex, sources, stuck)
                    if rec is not None:
                        results[ex.id] = rec
            if all(ex.id in results for ex in exercises):
                break
            last = stuck or (reader.last_progress() or (None, None))[1]
            final = [m for _, m in reader.events if m.get("kind") == "runner"]
            if last and last.get("kind") == "cell" and last.get("state") == "start" \
                    and isinstance(last.get("index"), int) and last["index"] not in skip:
                skip.add(last["index"])
                if stuck and stuck.get("why"):
                    why = stuck["why"]
                elif stuck:
                    why = f"did not finish within {timeout:g} s"
                else:
                    why = f"crashed the Python process within {timeout:g} s"
                notes.append(f"{cell_label(last['index'])} {why}; it was skipped and the notebook "
                             "run again without it")
            elif last and last.get("kind") == "check" and last.get("id") in results:
                continue  # that check hung or broke the worker; the others run again
            elif final and final[-1].get("state") == "done":
                notes.append("the worker finished without reporting every exercise")
                break
            else:
                tail = log_path.read_text(errors="replace")[-1500:]
                err = str(final[-1].get("error", "")) if final else ""
                notes.append("the grader's worker failed: " + (err or tail or "no output"))
                break
        for ex in exercises:
            results.setdefault(ex.id, record(ex, 0, [], "not graded: the notebook could not "
                                             "be run to this point"))
    ordered = [Result(r["id"], r["score"], r["max_score"], r["message"], r["passed"],
                      r.get("hint", "")) for r in (results[ex.id] for ex in exercises)]
    return NotebookReport(str(path), ordered, notes, time.time() - start)


def format_report(report: NotebookReport, width: int = 100) -> str:
    """The table of points, then, for each exercise that lost points, its whole message
    and its hint, wrapped to ``width`` (a message cut short hides the case that failed)."""
    short = 80  # longer messages go below the table, whole
    rows = [(r.id, f"{r.score:g}", f"{r.max_score:g}",
             _one_line(r.message) if len(_one_line(r.message)) <= short else "see below")
            for r in report.results]
    rows.append(("total", f"{report.score:g}", f"{report.max_score:g}", ""))
    lines = [f"{report.notebook}  ({report.seconds:.1f} s)", format_table(rows,
             ["exercise", "points", "max", "message"])]
    for r in report.results:
        if r.score < r.max_score and (len(_one_line(r.message)) > short or r.hint):
            lines.append(f"{r.id}:")
            lines.append(textwrap.fill(_one_line(r.message), width, initial_indent="  ",
                                       subsequent_indent="  "))
            if r.hint:
                lines.append(textwrap.fill(_one_line(r.hint), width, initial_indent="  hint: ",
                                           subsequent_indent="        "))
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def gradescope_json(reports: list[NotebookReport]) -> dict:
    """Results in Gradescope's format: ``score`` and one entry per exercise in ``tests``."""
    tests = []
    for rep in reports:
        for r in rep.results:
            out = r.message
            if r.passed:
                out += "\npassed: " + "; ".join(r.passed)
            tests.append({"name": r.id, "score": r.score, "max_score": r.max_score,
                          "output": out, "visibility": "visible"})
    notes = [f"{Path(rep.notebook).name}: {n}" for rep in reports for n in rep.notes]
    return {"score": sum(r.score for r in reports),
            "max_score": sum(r.max_score for r in reports),
            "execution_time": round(sum(r.seconds for r in reports), 2),
            "output": "\n".join(notes), "tests": tests}

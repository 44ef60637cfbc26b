"""``mlc grade``: grade a notebook in a separate process, each exercise under a time limit.

The notebook is only read, never written. Its code cells run in a worker process
(:mod:`mlc.grading.runner`), which then *observes* each exercise in a fork of itself: it
calls the student's definitions on the cases this process chose and sends back what they
returned. The verdict is made here, in a process that never runs student code, against
references computed here (:mod:`mlc.grading.protocol`); the worker has no score to
forge. A watchdog follows the worker's progress on the same channel: when a cell outlives
its limit in a way the worker cannot interrupt, or kills the interpreter, the worker is
stopped and started again without that cell, so one broken exercise costs only its own
points.
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
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from ..perf import format_table  # imported now: nothing is imported after a worker ran
from .isolate import THREADS, Isolation
from .limits import Limits, session_processes, user_processes
from .protocol import decode_observation, record, verdict
from .registry import Exercise, all_exercises, for_notebook, get, hidden_cases
from .source import Sources
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


class _Reader(threading.Thread):
    """Reads the worker's channel; stamps each message with the grader's own clock."""

    MAX_LINE = 64 << 20  # a longer line is dropped as malformed
    MAX_BYTES = 512 << 20  # past either cap the worker is stopped: its channel is flooded
    MAX_MESSAGES = 50_000

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.events, self.malformed, self.flooded, self.size = fd, [], 0, False, 0

    def run(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            self.size += len(chunk)
            if not chunk or self.flooded:
                break
            if self.size > self.MAX_BYTES or len(self.events) > self.MAX_MESSAGES:
                self.flooded = True  # the grader sees it, stops the worker
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._take(line)
            if len(buf) > self.MAX_LINE:
                buf, self.malformed = b"", self.malformed + 1
        if buf:
            self.malformed += 1  # a line cut short by a kill
        os.close(self.fd)

    def _take(self, line: bytes):
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            self.malformed += 1
            return
        if isinstance(msg, dict):
            self.events.append((time.monotonic(), msg))
        else:
            self.malformed += 1

    def last_progress(self):
        for stamp, msg in reversed(self.events[:]):
            if msg.get("kind") in ("cell", "check"):
                return stamp, msg
        return None


class _Session:
    """What one run of the worker reported, checked message by message.

    An exercise's observations count only between the start and the end of its own check,
    once per case, in time; anything else (a message for another exercise, a second copy,
    one that comes late or cannot be decoded) scores that exercise 0 with a note.
    """

    def __init__(self, todo: list[Exercise], cases: dict, timeouts: dict):
        self.todo = {ex.id: ex for ex in todo}
        self.cases, self.timeouts = cases, timeouts
        self.started: dict[str, float] = {}
        self.ended: dict[str, str] = {}
        self.names: dict[str, object] = {}
        self.obs: dict[str, dict[int, object]] = {i: {} for i in self.todo}
        self.tampered: dict[str, str] = {}
        self.notes: list[str] = []
        self.current: str | None = None

    def _bad(self, ex_id, why):
        if ex_id in self.todo:
            self.tampered.setdefault(ex_id, why)
        else:
            note = f"a message for {ex_id!r}, which was not asked, was ignored"
            if note not in self.notes:
                self.notes.append(note)

    def take(self, stamp: float, msg: dict) -> None:
        kind, ex_id = msg.get("kind"), msg.get("id")
        if kind == "cell":
            if msg.get("state") == "end" and msg.get("error"):
                note = f"cell {msg.get('index')}: {msg['error']}"
                if note not in self.notes:
                    self.notes.append(str(note))
            return
        if kind not in ("check", "names", "obs") or not isinstance(ex_id, str):
            return
        if kind == "check" and msg.get("state") == "start":
            if ex_id in self.started or self.current is not None:
                self._bad(ex_id, "its check was started twice")
            elif ex_id in self.todo:
                self.started[ex_id], self.current = stamp, ex_id
            else:
                self._bad(ex_id, "not asked")
            return
        if ex_id != self.current:
            self._bad(ex_id, "a message arrived outside its own check")
            return
        if kind == "check":
            if msg.get("state") == "end":
                self.ended[ex_id] = str(msg.get("status", "ok"))
                self.current = None
            return
        if stamp > self.started[ex_id] + self.timeouts[ex_id] + 3.0:
            self._bad(ex_id, "an observation arrived after the time limit")
        elif kind == "names":
            if ex_id in self.names:
                self._bad(ex_id, "the names were reported twice")
            self.names[ex_id] = msg.get("names")
        else:
            case = msg.get("case")
            n = len(self.cases[ex_id])
            if not (isinstance(case, int) and not isinstance(case, bool) and 0 <= case < n):
                self._bad(ex_id, f"an observation for case {case!r}, which does not exist")
            elif case in self.obs[ex_id]:
                self._bad(ex_id, f"the observation of case {case} arrived twice")
            else:
                self.obs[ex_id][case] = decode_observation(msg.get("obs"))

    def result(self, ex: Exercise, sources: Sources, stuck: dict | None) -> dict | None:
        """The record of ``ex``, or None when its check never ran in this attempt."""
        if ex.id in self.tampered:
            return record(ex, 0, [], f"the grader's channel was tampered with "
                          f"({self.tampered[ex.id]}); this exercise scores 0")
        if ex.id not in self.started:
            return None
        stuck = stuck if stuck and stuck.get("id") == ex.id else None
        status = self.ended.get(ex.id, "timeout" if stuck else "crashed")
        failure = None
        if stuck and stuck.get("why"):
            failure = f"your code {stuck['why']}"
        elif status == "timeout":
            failure = f"timed out after {self.timeouts[ex.id]:g} s"
        elif status != "ok":
            failure = "your code crashed the grader's worker"
        got = self.obs[ex.id]
        observations = [got.get(i) for i in range(len(self.cases[ex.id]))]
        while observations and observations[-1] is None:
            observations.pop()
        return verdict(ex, self.cases[ex.id], self.names.get(ex.id), observations, sources,
                       failure)


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
            reader = _Reader(read_fd)
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
            session = _Session(todo, cases, timeouts)
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
                notes.append(f"cell {last['index']} {why}; it was skipped and the notebook "
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


def format_report(report: NotebookReport) -> str:
    rows = [(r.id, f"{r.score:g}", f"{r.max_score:g}", _one_line(r.message))
            for r in report.results]
    rows.append(("total", f"{report.score:g}", f"{report.max_score:g}", ""))
    lines = [f"{report.notebook}  ({report.seconds:.1f} s)", format_table(rows,
             ["exercise", "points", "max", "message"])]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

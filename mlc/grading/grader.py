"""``mlc grade``: grade a notebook in a separate process, each exercise under a time limit.

The notebook is only read, never written. Its code cells run in a worker process
(:mod:`mlc.grading.runner`); every exercise's check then runs in a fork of that worker
with its own time limit. A watchdog here follows the worker's progress file: when a cell
outlives its limit in a way the worker cannot interrupt, or kills the interpreter, the
worker is stopped and started again without that cell, so one broken exercise costs only
its own points.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .registry import Exercise, all_exercises, for_notebook, get

_CHECK_CALL = re.compile(r"""check\(\s*["']([\w.\-]+)["']""")


@dataclass
class Result:
    id: str
    score: float
    max_score: float
    message: str
    passed: list[str] = field(default_factory=list)


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
    """The exercises graded in ``path``: those registered for its name, then any it checks."""
    stem = path.stem
    found = for_notebook(stem)
    if not found:  # a renamed copy such as "00_welcome-Copy1" still grades as unit 00
        prefix = stem.split("_")[0]
        known = {ex.notebook for ex in all_exercises().values()}
        match = [nb for nb in known if nb.split("_")[0] == prefix and prefix.isdigit()]
        if len(match) == 1:
            found = for_notebook(match[0])
    ids = [ex.id for ex in found]
    for source in cells:
        for ex_id in _CHECK_CALL.findall(source):
            if ex_id not in ids:
                try:
                    get(ex_id)
                except KeyError:
                    continue
                ids.append(ex_id)
    return [get(i) for i in ids]


def _read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by a kill
    return events


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    proc.wait()


def grade_notebook(path: str | Path, timeout: float = 60.0) -> NotebookReport:
    """Grade every exercise of notebook ``path``; each cell and check gets ``timeout`` s."""
    path = Path(path)
    start = time.time()
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    exercises = exercises_of(path, cells)
    timeouts = {ex.id: float(ex.timeout or timeout) for ex in exercises}
    notes: list[str] = []
    results: dict[str, Result] = {}
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
        for attempt in range(len(cells) + len(exercises) + 1):
            todo = [ex.id for ex in exercises if ex.id not in results]
            progress = tmp / f"progress-{attempt}.jsonl"
            job = {"cells": cells, "skip": sorted(skip), "cell_timeout": timeout, "ids": todo,
                   "timeouts": timeouts, "outdir": str(tmp), "progress": str(progress)}
            job_path = tmp / f"job-{attempt}.json"
            job_path.write_text(json.dumps(job), encoding="utf-8")
            log = open(tmp / f"worker-{attempt}.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "mlc.grading.runner", str(job_path)],
                                    cwd=str(path.parent.resolve()), env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            stuck = None
            while proc.poll() is None:
                time.sleep(0.05)
                events = _read_progress(progress)
                last = events[-1] if events else None
                if last and last.get("state") == "start":
                    limit = timeout if last["kind"] == "cell" else timeouts[last["id"]] + 2
                    if time.time() - last["t"] > limit + grace:
                        stuck = last
                        _kill(proc)
            log.close()
            events = _read_progress(progress)
            for ev in events:
                if ev.get("kind") == "cell" and ev.get("state") == "end" and ev.get("error"):
                    note = f"cell {ev['index']}: {ev['error']}"
                    if note not in notes:
                        notes.append(note)
            for ex_id in todo:
                out = tmp / f"check-{ex_id}.json"
                if out.exists():
                    rec = json.loads(out.read_text(encoding="utf-8"))
                    results[ex_id] = Result(ex_id, float(rec.get("score", 0.0)),
                                            get(ex_id).points, rec.get("message", ""),
                                            rec.get("passed", []))
                elif any(e.get("kind") == "check" and e.get("id") == ex_id
                         and e.get("state") == "end" for e in events):
                    results[ex_id] = Result(ex_id, 0.0, get(ex_id).points,
                                            f"timed out after {timeouts[ex_id]:g} s "
                                            "(or crashed the grader's worker)")
            last = stuck or (events[-1] if events else None)
            if all(ex.id in results for ex in exercises):
                break
            if last and last.get("kind") == "cell" and last.get("state") == "start":
                skip.add(last["index"])
                why = "did not finish" if stuck else "crashed the Python process"
                notes.append(f"cell {last['index']} {why} within {timeout:g} s; "
                             "it was skipped and the notebook run again without it")
            elif last and last.get("kind") == "check" and last.get("state") == "start":
                results[last["id"]] = Result(last["id"], 0.0, get(last["id"]).points,
                                             f"timed out after {timeouts[last['id']]:g} s")
            elif not events or last.get("kind") == "runner":
                tail = (tmp / f"worker-{attempt}.log").read_text(errors="replace")[-1500:]
                err = last.get("error", "") if last else ""
                notes.append("the grader's worker failed: " + (err or tail or "no output"))
                break
        for ex in exercises:
            results.setdefault(ex.id, Result(ex.id, 0.0, ex.points, "not graded: the notebook "
                                             "could not be run to this point"))
    ordered = [results[ex.id] for ex in exercises]
    return NotebookReport(str(path), ordered, notes, time.time() - start)


def format_report(report: NotebookReport) -> str:
    from ..bench import format_table

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

"""Grading a whole class: every submission of a folder, in parallel, into one CSV.

Course platforms export submissions as one folder per student (holding the notebook,
maybe among other files) or as one notebook per student. :func:`find_submissions` reads
both layouts; :func:`grade_roster` grades every notebook with a pool of workers, each
submission isolated as a single ``mlc grade`` is (its own worker process, time limits,
memory and process caps), and a submission that breaks the grader itself is reported as
such rather than stopping the class.
"""

from __future__ import annotations

import csv
import statistics
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .grader import NotebookError, NotebookReport, grade_notebook
from .limits import Limits


@dataclass
class Submission:
    student: str
    notebook: Path


@dataclass
class RosterRow:
    student: str
    notebook: str
    report: NotebookReport | None
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.report.score if self.report else 0.0


def _notebooks_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))


def find_submissions(folder: Path | str) -> list[Submission]:
    """One :class:`Submission` per notebook: ``folder/student/*.ipynb`` (the student is the
    subfolder's name) or ``folder/student.ipynb`` (the file's stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of submissions")
    subs = [Submission(p.stem, p) for p in sorted(folder.glob("*.ipynb"))
            if not p.name.startswith(".")]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        subs += [Submission(sub.name, nb) for nb in _notebooks_in(sub)]
    return subs


def _grade_one(sub: Submission, timeout: float, limits: Limits) -> RosterRow:
    try:
        report = grade_notebook(sub.notebook, timeout=timeout, limits=limits)
    except NotebookError as err:
        return RosterRow(sub.student, str(sub.notebook), None, str(err))
    except Exception as err:  # noqa: BLE001 - one submission never stops the class
        return RosterRow(sub.student, str(sub.notebook), None,
                         f"the grader failed on this submission: {type(err).__name__}: {err}")
    if not report.results:
        return RosterRow(sub.student, str(sub.notebook), report,
                         "no course exercise found in this notebook")
    return RosterRow(sub.student, str(sub.notebook), report, notes=list(report.notes))


def grade_roster(folder: Path | str, jobs: int = 1, timeout: float = 60.0,
                 limits: Limits | None = None, progress: bool = True) -> list[RosterRow]:
    """Grade every submission in ``folder`` with ``jobs`` parallel workers."""
    subs = find_submissions(folder)
    limits = limits or Limits.default(jobs)
    rows: list[RosterRow] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(subs), desc="grading", unit="notebook")
    # Threads suffice: each grade_notebook spends its time waiting on its own worker process.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_grade_one, sub, timeout, limits) for sub in subs]
        for fut in as_completed(futures):
            rows.append(fut.result())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows.sort(key=lambda r: (r.student, r.notebook))
    return rows


def write_csv(rows: list[RosterRow], path: Path | str) -> None:
    """One line per student and exercise: student, notebook, exercise, points, max, message."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["student", "notebook", "exercise", "points", "max_points", "message"])
        for row in rows:
            if row.report is None or not row.report.results:
                out.writerow([row.student, row.notebook, "", 0, 0, row.error])
                continue
            for r in row.report.results:
                out.writerow([row.student, row.notebook, r.id, f"{r.score:g}",
                              f"{r.max_score:g}", " ".join(r.message.split())])


def summary_rows(rows: list[RosterRow]) -> list[tuple]:
    """Per exercise: submissions graded, mean points, how many full marks, how many 0."""
    by_ex: dict[str, list] = {}
    for row in rows:
        for r in (row.report.results if row.report else []):
            by_ex.setdefault(r.id, []).append(r)
    out = []
    for ex_id, results in by_ex.items():
        most = results[0].max_score
        out.append((ex_id, len(results), f"{statistics.fmean(r.score for r in results):.2f}",
                    f"{most:g}", sum(r.score >= r.max_score for r in results),
                    sum(r.score == 0 for r in results)))
    return out


def format_summary(rows: list[RosterRow]) -> str:
    from ..perf import format_table

    lines = [format_table(summary_rows(rows), ["exercise", "graded", "mean", "max",
                                               "full marks", "zero"])]
    per_student: dict[str, float] = {}
    for row in rows:
        per_student[row.student] = per_student.get(row.student, 0.0) + row.total
    totals = list(per_student.values())
    if totals:
        lines.append(f"{len(rows)} notebooks from {len(totals)} students; total points per "
                     f"student: mean {statistics.fmean(totals):.2f}, median "
                     f"{statistics.median(totals):g}, max {max(totals):g}")
    problems = [row for row in rows if row.error]
    for row in problems:
        lines.append(f"problem: {row.student} ({Path(row.notebook).name}): {row.error}")
    return "\n".join(lines)


def plot_totals(rows: list[RosterRow], path: Path | str) -> None:
    """A histogram of the students' totals, saved as an image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    per_student: dict[str, float] = {}
    for row in rows:
        per_student[row.student] = per_student.get(row.student, 0.0) + row.total
    totals = list(per_student.values())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(totals, bins=min(20, max(1, len(set(totals)))), color="#4c72b0", edgecolor="white")
    ax.set_xlabel("total points")
    ax.set_ylabel("students")
    ax.set_title(f"totals of {len(totals)} students")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

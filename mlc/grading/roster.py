"""Grading a whole class: every submission of a folder, in parallel, into one CSV.

Course platforms export submissions as one folder per student (holding the notebook,
maybe among other files) or as one notebook per student. :func:`find_submissions` reads
both layouts; :func:`grade_roster` grades every notebook with a pool of workers, each
worker isolated (:mod:`.isolate`: another user, its own PID and mount namespaces, the
class's folder and the grader out of sight, caps), and a submission that breaks the
grader itself is reported as such rather than stopping the class. Each student is graded
once per unit: of several notebooks for one unit the latest counts, the others are
reported. Where this system cannot isolate, grading refuses unless ``unsafe=True``, and
then says so in its summary and in the first line of ``grades.csv``.
"""

from __future__ import annotations

import csv
import statistics
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..perf import format_table
from .grader import NotebookError, NotebookReport, grade_notebook, read_notebook, unit_of
from .isolate import Isolation, IsolationUnavailable, detect
from .limits import Limits
from .registry import for_notebook, get
from .similarity import near_copies

UNSAFE = ("NOT ISOLATED: students' code ran as the grader's user, with the package, the "
          "grader and other submissions in reach; these grades can be forged")


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


class Graded(list):
    """The rows of a graded class, with how it was graded (``isolation``: a sentence;
    ``unsafe``: True when the workers were not isolated)."""

    isolation: str = ""
    unsafe: bool = False


def _grade_one(sub: Submission, timeout: float, limits: Limits, isolation: Isolation | None,
               hide: tuple[Path, ...], data_files: bool) -> RosterRow:
    try:
        report = grade_notebook(sub.notebook, timeout=timeout, limits=limits,
                                isolation=isolation, hide=hide, data_files=data_files)
    except NotebookError as err:
        return RosterRow(sub.student, str(sub.notebook), None, str(err))
    except Exception as err:  # noqa: BLE001 - one submission never stops the class
        return RosterRow(sub.student, str(sub.notebook), None,
                         f"the grader failed on this submission: {type(err).__name__}: {err}")
    if not report.results:
        return RosterRow(sub.student, str(sub.notebook), report,
                         "no course exercise found in this notebook")
    return RosterRow(sub.student, str(sub.notebook), report, notes=list(report.notes))


def latest_per_unit(subs: list[Submission]) -> tuple[list[Submission], list[RosterRow]]:
    """One submission per student and unit, the latest (by modification time); a row
    saying "not graded" for each other copy."""
    groups: dict[tuple, list[Submission]] = {}
    for sub in subs:
        try:
            unit = unit_of(sub.notebook, read_notebook(sub.notebook))
        except NotebookError:
            unit = None
        key = (sub.student, unit or f"?{sub.notebook}")  # unknown units never merge
        groups.setdefault(key, []).append(sub)
    keep, dropped = [], []
    for (student, unit), group in groups.items():
        group.sort(key=lambda s: (s.notebook.stat().st_mtime, str(s.notebook)))
        keep.append(group[-1])
        dropped += [RosterRow(student, str(s.notebook), None,
                              f"not graded: {student} submitted {len(group)} notebooks for "
                              f"unit {unit}; the latest, {group[-1].notebook.name}, counts")
                    for s in group[:-1]]
    return keep, dropped


def grade_roster(folder: Path | str, jobs: int = 1, timeout: float = 60.0,
                 limits: Limits | None = None, progress: bool = True,
                 user: str | None = None, unsafe: bool = False,
                 hide: tuple[Path, ...] = ()) -> Graded:
    """Grade every submission in ``folder`` with ``jobs`` parallel workers, each isolated
    as ``user`` (as root; default ``nobody``) with ``folder`` and ``hide`` out of sight.

    Raises :class:`~.isolate.IsolationUnavailable` where workers cannot be isolated,
    unless ``unsafe``: then the class is graded without isolation and the result says so."""
    folder = Path(folder)
    pyplot()
    subs, rows = latest_per_unit(find_submissions(folder))
    limits = limits or Limits.default(jobs)
    rows = Graded(rows)
    try:
        isolation = detect(user)
        rows.isolation = isolation.describe()
    except IsolationUnavailable as err:
        if not unsafe:
            raise IsolationUnavailable(f"{err}; refusing to grade a class without isolating "
                                       "its code (pass --unsafe to grade anyway, and "
                                       "trust no grade)") from None
        isolation, rows.unsafe, rows.isolation = None, True, f"{UNSAFE} ({err})"
    bar = tqdm(total=len(subs), desc="grading", unit="notebook") if progress else None
    hide = (folder, *hide)
    # Threads suffice: each grade_notebook spends its time waiting on its own worker process.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_grade_one, sub, timeout, limits, isolation, hide,
                               sub.notebook.parent.resolve() != folder.resolve())
                   for sub in subs]
        for fut in as_completed(futures):
            rows.append(fut.result())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows.sort(key=lambda r: (r.student, r.notebook))
    return rows


def similar_pairs(rows: list[RosterRow]) -> list[tuple]:
    """Near-copies among the graded notebooks, per exercise (:mod:`.similarity`)."""
    by_unit: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        if row.report and row.report.results:
            unit = get(row.report.results[0].id).notebook
            by_unit.setdefault(unit, {})[row.student] = read_notebook(Path(row.notebook))
    return [pair for unit, subs in sorted(by_unit.items())
            for pair in near_copies(subs, for_notebook(unit))]


def write_csv(rows: list[RosterRow], path: Path | str) -> None:
    """One line per student and exercise: student, notebook, exercise, points, max, message
    (a class graded without isolation starts with a line ``# NOT ISOLATED: ...``)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        if getattr(rows, "unsafe", False):
            f.write(f"# {rows.isolation}\n")
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
    lines = [f"WARNING: {rows.isolation}"] if getattr(rows, "unsafe", False) else []
    lines += [format_table(summary_rows(rows), ["exercise", "graded", "mean", "max",
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


def pyplot():
    """matplotlib's pyplot, drawing to files; :func:`grade_roster` imports it before the
    first worker starts, as everything the grader runs afterwards."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_totals(rows: list[RosterRow], path: Path | str) -> None:
    """A histogram of the students' totals, saved as an image."""
    plt = pyplot()
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

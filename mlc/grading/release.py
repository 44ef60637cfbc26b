"""``mlc release``: write student notebooks (exercises/) from solution notebooks (solutions/).

In a solution notebook the student's part of a code cell sits between two markers::

    def saxpy(a, x, y):
        ### BEGIN SOLUTION
        return a * x + y
        ### END SOLUTION

The release replaces each marked region by ``raise NotImplementedError("your code here")``
at the indentation of the ``### BEGIN SOLUTION`` line, clears every output and execution
count, and keeps everything else. Markdown cells may mark prose answers the same way
(the region becomes "YOUR ANSWER HERE"). The release is idempotent: releasing a released
notebook changes nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_CODE = 'raise NotImplementedError("your code here")'
STUB_TEXT = "YOUR ANSWER HERE"
_NB_VERSION = 4


class ReleaseError(ValueError):
    """A solution notebook's markers are malformed; the message names notebook and cell."""


def strip_solution(source: str, where: str = "cell", code: bool = True) -> str:
    """Return ``source`` with every marked region replaced by the stub.

    Raises :class:`ReleaseError` for a BEGIN without END, an END without BEGIN, or a BEGIN
    inside an open region (nesting is not allowed).
    """
    out: list[str] = []
    open_at: int | None = None
    for lineno, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if open_at is not None:
                raise ReleaseError(f"{where}: nested '{BEGIN}' at line {lineno} "
                                   f"(the region opened at line {open_at} is not closed)")
            open_at = lineno
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + (STUB_CODE if code else STUB_TEXT))
        elif stripped.startswith(END):
            if open_at is None:
                raise ReleaseError(f"{where}: '{END}' at line {lineno} has no matching '{BEGIN}'")
            open_at = None
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise ReleaseError(f"{where}: '{BEGIN}' at line {open_at} is never closed by '{END}'")
    return "\n".join(out)


def has_markers(source: str) -> bool:
    return BEGIN in source or END in source


def release_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of solution notebook ``nb`` (a new object; ``nb`` is untouched)."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        where = f"{name}, cell {index}"
        if cell.cell_type == "code":
            cell.source = strip_solution(cell.source, where, code=True)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown" and has_markers(cell.source):
            cell.source = strip_solution(cell.source, where, code=False)
    student.metadata.pop("widgets", None)
    return student


def _dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=_NB_VERSION) + "\n"


def _pairs(solutions: Path, exercises: Path):
    if not solutions.is_dir():
        raise FileNotFoundError(f"no solutions folder at {solutions}")
    found = sorted(solutions.glob("*.ipynb"))
    if not found:  # run from the wrong folder, a CI step must fail rather than pass
        raise FileNotFoundError(f"no solution notebooks (*.ipynb) in {solutions}")
    for src in found:
        yield src, exercises / src.name


def release(solutions: Path | str = "solutions", exercises: Path | str = "exercises") -> list[Path]:
    """Write every student notebook; return the paths that changed."""
    solutions, exercises = Path(solutions), Path(exercises)
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for src, dst in _pairs(solutions, exercises):
        text = _dumps(release_notebook(nbformat.read(src, as_version=_NB_VERSION), src.name))
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            dst.write_text(text, encoding="utf-8")
            changed.append(dst)
    return changed


def check_release(solutions: Path | str = "solutions",
                  exercises: Path | str = "exercises") -> list[str]:
    """Problems that make exercises/ differ from what :func:`release` would write."""
    solutions, exercises = Path(solutions), Path(exercises)
    problems = []
    expected = set()
    for src, dst in _pairs(solutions, exercises):
        expected.add(dst.name)
        text = _dumps(release_notebook(nbformat.read(src, as_version=_NB_VERSION), src.name))
        if not dst.exists():
            problems.append(f"{dst} is missing")
        elif dst.read_text(encoding="utf-8") != text:
            problems.append(f"{dst} is stale: it differs from the release of {src}")
    if exercises.is_dir():
        for extra in sorted(exercises.glob("*.ipynb")):
            if extra.name not in expected:
                problems.append(f"{extra} has no solution notebook in {solutions}")
    return problems



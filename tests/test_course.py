"""The course as a whole: every unit's notebooks, exercise ids and grades agree."""

import re
from pathlib import Path

import nbformat
import pytest

from mlc.grading import all_exercises
from mlc.grading.grader import grade_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
LECTURES = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = re.compile(r"""check\(\s*["']([\w.\-]+)["']""")


def _checked_ids(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [i for c in nb.cells if c.cell_type == "code" for i in CHECK.findall(c.source)]


def test_every_registered_exercise_belongs_to_a_solution_notebook_that_checks_it():
    stems = {p.stem for p in SOLUTIONS}
    for ex in all_exercises().values():
        assert ex.notebook in stems, f"{ex.id} names notebook {ex.notebook!r}, not in solutions/"
        assert ex.id in _checked_ids(ROOT / "solutions" / f"{ex.notebook}.ipynb"), (
            f"solutions/{ex.notebook}.ipynb never calls check({ex.id!r})")
        assert ex.points > 0


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_checks_only_its_own_registered_exercises(path):
    registered = all_exercises()
    for ex_id in _checked_ids(path):
        assert ex_id in registered, f"{path.name} checks unknown exercise {ex_id!r}"
        assert registered[ex_id].notebook == path.stem, f"{ex_id} belongs to another unit"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_lectures_are_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, f"{path.name} has no code"
    missing = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not missing, f"{path.name}: code cells {missing} were never run"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_grades_in_full(path):
    report = grade_notebook(path, timeout=120)
    assert report.max_score > 0, f"{path.name} has no graded exercises"
    assert report.score == report.max_score, [(r.id, r.message) for r in report.results
                                              if r.score < r.max_score] + report.notes


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_exercise_grades_zero(path):
    report = grade_notebook(path, timeout=120)
    assert report.max_score > 0 and report.score == 0, [(r.id, r.score) for r in report.results]

"""The course as a whole: every unit's notebooks, exercise ids and grades agree."""

import re
from pathlib import Path

import nbformat
import pytest

from mlc.grading import all_exercises

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
def test_solution_runs_clean_and_grades_in_full(path, graded):
    # The solutions are not collected by nbval (see conftest.py): this one run of the
    # grader is what checks that every cell of a solution runs without an error.
    report = graded(path)
    assert report.max_score > 0, f"{path.name} has no graded exercises"
    cell_errors = [n for n in report.notes if n.startswith("cell ")]
    assert not cell_errors, cell_errors
    assert report.score == report.max_score, [(r.id, r.message) for r in report.results
                                              if r.score < r.max_score] + report.notes


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_exercise_grades_zero_and_hears_only_not_implemented(path, graded):
    report = graded(path)
    assert report.max_score > 0 and report.score == 0, [(r.id, r.score) for r in report.results]
    for r in report.results:  # an untouched stub gets no hint (issue 8: hints in stages)
        assert "not implemented yet" in r.message and not r.hint, (r.id, r.message, r.hint)


@pytest.mark.parametrize("ex_id", sorted(all_exercises()))
def test_every_exercise_reports_a_missing_definition_without_a_hint(ex_id):
    # Nothing was tried yet: say what is missing, give no hint (issue 8: hints in stages).
    from mlc.grading.check import run_check

    rec = run_check(ex_id, {})
    assert rec["score"] == 0 and "is not defined" in rec["message"], rec
    assert rec["hint"] == ""


@pytest.mark.parametrize("ex_id", sorted(all_exercises()))
def test_every_hint_is_a_short_nudge_without_code(ex_id):
    # Unit tests add the words that would give away their own unit's solution.
    hint = all_exercises()[ex_id].hint
    assert hint and len(hint) < 500, (ex_id, hint)
    assert not any(code in hint for code in ("def ", "return ", " == ", "lambda", "):\n")), hint

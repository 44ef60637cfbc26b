"""Grading a class: a folder of mixed submissions in parallel, resource caps, bad input,
and the course-platform autograder bundle."""

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from mlc.grading.autograder import build_bundle, resolve_unit
from mlc.grading.grader import NotebookError, grade_notebook
from mlc.grading.limits import GIB, Limits, parse_size
from mlc.grading.roster import find_submissions, format_summary, grade_roster, write_csv

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_welcome.ipynb"
EXERCISE = ROOT / "exercises" / "00_welcome.ipynb"
CAPS = Limits(memory_bytes=1 * GIB, max_processes=8)


def _variant(dest: Path, base: Path, *cells: str, replace: dict | None = None) -> Path:
    nb = nbformat.read(base, as_version=4)
    for cell in nb.cells:
        for name, source in (replace or {}).items():
            if cell.cell_type == "code" and f"def {name}(" in cell.source:
                cell.source = source
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


HANG = ("import numba\n@numba.njit\ndef saxpy(a, x, y):\n    i = 0\n    while i >= 0:\n"
        "        i = (i + 1) % 7\n    return x")
GREEDY = "import numpy as np\nhog = np.ones(2**28)  # 2 GiB of float64\nhog.sum()"
FORKS = ("import os, time\nkids = []\nfor _ in range(40):\n    pid = os.fork()\n"
         "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    kids.append(pid)\n")
TAMPER = ("from mlc.grading import registry\nfor ex in registry.all_exercises().values():\n"
          "    ex.points = 1000\n    ex.check.judge = lambda *a, **k: None\n")


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    top = tmp_path_factory.mktemp("submissions")
    _variant(top / "ada" / "00_welcome.ipynb", SOLUTION)
    _variant(top / "bob" / "00_welcome.ipynb", EXERCISE)
    _variant(top / "cyd" / "00_welcome.ipynb", SOLUTION, replace={"saxpy": HANG})
    _variant(top / "dan" / "00_welcome.ipynb", SOLUTION, "import os\nos._exit(3)")
    _variant(top / "eve" / "00_welcome.ipynb", SOLUTION, GREEDY)
    _variant(top / "fay" / "00_welcome.ipynb", EXERCISE, TAMPER)
    (top / "gus").mkdir()
    text = SOLUTION.read_text()
    (top / "gus" / "00_welcome.ipynb").write_text(text[: len(text) // 2])  # a truncated save
    _variant(top / "hal.ipynb", SOLUTION)  # one notebook per student also works
    return top


@pytest.fixture(scope="module")
def roster(class_folder):
    return grade_roster(class_folder, jobs=2, timeout=4, limits=CAPS, progress=False)


def test_a_mixed_class_is_graded_in_parallel_to_the_right_totals(roster):
    totals = {row.student: row.total for row in roster}
    assert totals == {"ada": 5, "bob": 0, "cyd": 3, "dan": 5, "eve": 5, "fay": 0, "gus": 0,
                      "hal": 5}, totals
    by = {row.student: row for row in roster}
    assert "timed out" in {r.id: r.message for r in by["cyd"].report.results}["welcome.saxpy"]
    assert any("MemoryError" in n for n in by["eve"].notes), by["eve"].notes
    assert any("crashed" in n for n in by["dan"].notes), by["dan"].notes
    assert "not a valid notebook" in by["gus"].error


def test_the_csv_and_summary(roster, tmp_path):
    path = tmp_path / "grades.csv"
    write_csv(roster, path)
    rows = list(csv.DictReader(path.open()))
    assert {r["student"] for r in rows} == {"ada", "bob", "cyd", "dan", "eve", "fay", "gus",
                                            "hal"}
    ada = {r["exercise"]: r for r in rows if r["student"] == "ada"}
    assert ada["welcome.saxpy"]["points"] == "2" and ada["welcome.saxpy"]["max_points"] == "2"
    gus = [r for r in rows if r["student"] == "gus"]
    assert len(gus) == 1 and "not a valid notebook" in gus[0]["message"]
    text = format_summary(roster)
    assert "welcome.saxpy" in text and "full marks" in text and "problem: gus" in text


def test_a_notebook_that_forks_in_a_loop_is_stopped_by_the_process_cap(tmp_path):
    path = _variant(tmp_path / "00_welcome.ipynb", SOLUTION, FORKS)
    report = grade_notebook(path, timeout=20, limits=CAPS)
    assert report.score == 5  # the forking cell is skipped; every exercise still graded
    assert any("more than 8 processes" in n for n in report.notes), report.notes


def test_limits_parse_and_defaults():
    assert parse_size("2G") == 2 * GIB and parse_size("512M") == 512 << 20
    assert parse_size("none") is None and parse_size(1000) == 1000
    with pytest.raises(ValueError, match="cannot read the size"):
        parse_size("lots")
    d = Limits.default(jobs=2)
    assert GIB <= d.memory_bytes <= 4 * GIB and d.max_processes == 64
    assert "GiB memory cap" in d.describe()


def test_find_submissions_reads_both_layouts(class_folder):
    students = [s.student for s in find_submissions(class_folder)]
    assert sorted(students) == ["ada", "bob", "cyd", "dan", "eve", "fay", "gus", "hal"]
    with pytest.raises(NotADirectoryError):
        find_submissions(class_folder / "nope")


def _mlc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlc.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_cli_a_truncated_notebook_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "00_welcome.ipynb"
    bad.write_text(SOLUTION.read_text()[:500])
    proc = _mlc("grade", str(bad))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and str(bad) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with pytest.raises(NotebookError, match="not a valid notebook"):
        grade_notebook(bad)


def test_cli_a_notebook_without_exercises_says_so_and_fails(tmp_path):
    empty = tmp_path / "scratch.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, empty)
    proc = _mlc("grade", str(empty))
    assert proc.returncode == 1 and "no course exercise found" in proc.stderr


def test_cli_release_check_without_solutions_fails(tmp_path):
    proc = _mlc("release", "--check", cwd=tmp_path)
    assert proc.returncode != 0 and "solutions" in proc.stderr
    (tmp_path / "solutions").mkdir()
    proc = _mlc("release", "--check", cwd=tmp_path)
    assert proc.returncode != 0 and "no solution notebooks" in proc.stderr


def test_cli_roster_writes_csv_and_histogram(tmp_path):
    top = tmp_path / "class"
    _variant(top / "ada" / "00_welcome.ipynb", SOLUTION)
    _variant(top / "bob" / "00_welcome.ipynb", EXERCISE)
    out = tmp_path / "out"
    proc = _mlc("grade", str(top), "--roster", "--jobs", "2", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (out / "grades.csv").exists() and (out / "totals.png").stat().st_size > 1000
    assert "welcome.saxpy" in proc.stdout


# ---- the autograder bundle ------------------------------------------------------------------

def _platform(tmp_path: Path, bundle: Path, notebook: Path | None) -> Path:
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    if notebook is not None:
        (root / "submission" / notebook.name).write_bytes(notebook.read_bytes())
    return root


def _run_autograder(root: Path) -> dict:
    script = root / "source" / "run_autograder"
    os.chmod(script, 0o755)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_autograder_bundle_grades_a_solution_and_an_exercise(tmp_path):
    bundle = build_bundle("00", tmp_path / "autograder.zip")
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "unit.txt"} <= names
        assert "mlc_src/pyproject.toml" in names and "mlc_src/mlc/grading/grader.py" in names
        assert z.getinfo("run_autograder").external_attr >> 16 & 0o111
    solved = _run_autograder(_platform(tmp_path / "a", bundle, SOLUTION))
    assert solved["score"] == 5 and len(solved["tests"]) == 3
    unsolved = _run_autograder(_platform(tmp_path / "b", bundle, EXERCISE))
    assert unsolved["score"] == 0
    nothing = _run_autograder(_platform(tmp_path / "c", bundle, None))
    assert nothing["score"] == 0 and "no notebook was submitted" in nothing["output"]


def test_autograder_units_resolve():
    assert resolve_unit("00") == resolve_unit("welcome") == "00_welcome"
    with pytest.raises(ValueError, match="known units"):
        resolve_unit("99")

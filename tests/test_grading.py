"""The autograder: isolation of exercises, time limits, JSON results, in-notebook check."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mlc.grading import check, get
from mlc.grading.check import run_check
from mlc.grading.grader import grade_notebook, gradescope_json

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_welcome.ipynb"
EXERCISE = ROOT / "exercises" / "00_welcome.ipynb"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edited_copy(tmp_path: Path, edits: dict[str, str], extra_cells=()) -> Path:
    """A copy of the welcome solution with the code cell defining each key replaced."""
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        for name, source in edits.items():
            if cell.cell_type == "code" and f"def {name}(" in cell.source:
                cell.source = source
    for index, source in extra_cells:
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(nb, path)
    return path


def test_solution_gets_full_marks_and_is_not_modified(graded):
    before = _digest(SOLUTION)
    report = graded(SOLUTION)
    assert report.max_score == 5 and report.score == 5, report.results
    assert _digest(SOLUTION) == before


def test_exercise_gets_zero_and_says_not_implemented(graded):
    report = graded(EXERCISE)
    assert report.score == 0 and report.max_score == 5
    assert all("not implemented" in r.message for r in report.results)


def test_hang_and_raise_cost_only_their_own_points(tmp_path):
    # saxpy never returns (in compiled code, deaf to signals); matmul_intensity raises.
    path = _edited_copy(tmp_path, {
        "saxpy": "@numba.njit\ndef saxpy(a, x, y):\n    i = 0\n    while i >= 0:\n"
                 "        i = (i + 1) % 7\n    return x",
        "matmul_intensity": "def matmul_intensity(n, k, m, bytes_per_element=4):\n"
                            "    raise ValueError('oops')",
    })
    before = _digest(path)
    t0 = time.time()
    report = grade_notebook(path, timeout=3)
    elapsed = time.time() - t0
    by_id = {r.id: r for r in report.results}
    assert by_id["welcome.saxpy"].score == 0 and "timed out" in by_id["welcome.saxpy"].message
    assert by_id["welcome.matmul_intensity"].score == 0
    assert "ValueError: oops" in by_id["welcome.matmul_intensity"].message
    assert by_id["welcome.roofline_time"].score == 2
    assert elapsed < 30, f"grading took {elapsed:.1f} s"
    assert _digest(path) == before


def test_cells_that_hang_exit_or_kill_the_interpreter_are_skipped(tmp_path):
    # A top-level Python loop (stopped by the alarm), a top-level call into a compiled
    # endless loop (the watchdog must kill the worker), sys.exit and os._exit.
    path = _edited_copy(tmp_path, {}, extra_cells=[
        (2, "while True:\n    pass"),
        (3, "import sys\nsys.exit(3)"),
        (4, "print('x' * 10_000_000)"),
        (5, "import numba\n@numba.njit\ndef spin():\n    i = 0\n    while i >= 0:\n"
            "        i = (i + 1) % 5\n    return i\nspin()"),
        (6, "import os\nos._exit(1)"),
    ])
    report = grade_notebook(path, timeout=2)
    assert report.score == 5, [(r.id, r.message) for r in report.results] + report.notes
    notes = " | ".join(report.notes)
    assert "did not finish within 2 s" in notes       # the Python loop, stopped by the alarm
    assert "sys.exit(3)" in notes
    assert "crashed the Python process" in notes      # os._exit
    assert "skipped" in notes


def test_gradescope_json_shape(graded):
    report = graded(SOLUTION)
    data = json.loads(json.dumps(gradescope_json([report])))
    assert data["score"] == 5
    assert {t["name"] for t in data["tests"]} == {
        "welcome.saxpy", "welcome.matmul_intensity", "welcome.roofline_time"}
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output"}
        assert test["score"] == test["max_score"]


def test_cli_grade_writes_json_and_exits_cleanly(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "grade", str(EXERCISE), "--json",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "total" in proc.stdout and "welcome.saxpy" in proc.stdout
    assert json.loads(out.read_text())["score"] == 0


def test_cli_grade_all_grades_a_folder(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("00_welcome.ipynb",):
        (folder / name).write_bytes(SOLUTION.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "grade", "--all", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    total = [ln for ln in proc.stdout.splitlines() if ln.startswith("total")]
    assert total and total[0].split()[1:3] == ["5", "5"], proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "grade", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--all" in proc.stderr


def test_check_in_notebook_reports_pass(capsys):
    import numba
    import numpy as np

    @numba.njit
    def saxpy(a, x, y):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = a * x[i] + y[i]
        return out

    check("welcome.saxpy", ns={"saxpy": saxpy, "np": np})
    out = capsys.readouterr().out
    assert out.startswith("PASS  welcome.saxpy  2/2 points")
    assert "ok    saxpy(1.5, x, y) with 7 elements" in out


def test_check_in_notebook_reports_expected_actual_and_hint(capsys):
    def roofline_time(flops, nbytes, peak, bw):
        return flops / peak + nbytes / bw  # adds instead of overlapping

    def bound_by(*args):
        return "compute"

    check("welcome.roofline_time", ns={"roofline_time": roofline_time, "bound_by": bound_by})
    out = capsys.readouterr().out
    assert out.startswith("FAIL  welcome.roofline_time  0/2 points")
    assert "expected" in out and "got" in out
    assert "hint:" in out


def test_check_uses_the_callers_globals(capsys):
    namespace = {"check": check}
    exec("def matmul_intensity(n, k, m, bytes_per_element=4):\n"
         "    return 2*n*k*m / ((n*k + k*m + n*m) * bytes_per_element)\n"
         "check('welcome.matmul_intensity')", namespace)
    assert "PASS  welcome.matmul_intensity" in capsys.readouterr().out


def test_check_missing_definition_and_unknown_id(capsys):
    rec = run_check("welcome.saxpy", {})
    assert rec["score"] == 0 and "`saxpy` is not defined" in rec["message"]
    with pytest.raises(KeyError, match="known ids"):
        get("welcome.nope")


def test_check_is_silent_under_the_grader(capsys, monkeypatch):
    monkeypatch.setenv("MLC_GRADING", "1")
    check("welcome.saxpy", ns={})
    assert capsys.readouterr().out == ""


def test_student_output_and_exit_do_not_break_a_check():
    def saxpy(a, x, y):
        print("spam" * 100_000)
        raise SystemExit(4)

    rec = run_check("welcome.saxpy", {"saxpy": saxpy})
    assert rec["score"] == 0


def test_grading_env_is_not_leaked(tmp_path):
    assert os.environ.get("MLC_GRADING") is None


def test_numba_cache_true_in_a_student_cell_works(tmp_path):
    # Numba's on-disk cache needs a real source file; cells compiled as "<notebook cell N>"
    # made @njit(cache=True) fail with "no locator available".
    path = _edited_copy(tmp_path, {
        "saxpy": "@numba.njit(cache=True)\ndef saxpy(a, x, y):\n    out = np.empty_like(x)\n"
                 "    for i in range(x.shape[0]):\n        out[i] = a * x[i] + y[i]\n"
                 "    return out",
    })
    report = grade_notebook(path, timeout=60)
    by_id = {r.id: r for r in report.results}
    assert by_id["welcome.saxpy"].score == by_id["welcome.saxpy"].max_score, by_id
    assert report.score == report.max_score


def test_traffic_graded_exercises_run_in_the_simulator_even_when_it_is_switched_off(
        monkeypatch):
    # On a GPU machine the worker would run kernels on the device, where memory traffic
    # cannot be counted; the grader must switch unit 04 to the simulator itself.
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    report = grade_notebook(ROOT / "solutions" / "04_gpu_operators.ipynb", timeout=120)
    # (graded here, not through the shared fixture: the environment differs on purpose)
    assert report.score == report.max_score, [(r.id, r.message) for r in report.results]
    assert any("simulator" in n for n in report.notes)

"""The `mlc` command: doctor and bench, and the README/CI contract."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mlc(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mlc.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_doctor_reports_versions_threads_devices_and_exits_zero():
    proc = _mlc("doctor")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for word in ("numpy", "numba", "numba threads", "CUDA:", "numba.njit kernel",
                 "numba.cuda kernel", "cpu_numpy", "ready"):
        assert word in out, f"{word!r} missing from:\n{out}"
    assert "[FAIL]" not in out


def test_bench_lists_and_rejects_unknown_names():
    listed = _mlc("bench")
    assert listed.returncode == 0 and "benchmarks:" in listed.stdout
    bad = _mlc("bench", "no_such_thing")
    assert bad.returncode == 2 and "no benchmark named" in bad.stderr


def test_grade_rejects_a_file_that_is_not_a_notebook(tmp_path):
    text = tmp_path / "x.txt"
    text.write_text("hello")
    proc = _mlc("grade", str(text))
    assert proc.returncode == 2 and "not a notebook" in proc.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- ci:test-command -->" in readme and "ci:test-command" in ci
    block = readme.split("<!-- ci:test-command -->", 1)[1].split("```")[1]
    assert "pytest" in block and 'pip install -e ".[dev]"' in block


def test_top_level_layout():
    expected = {"notebooks", "mlc", "exercises", "solutions", "tests", "benchmarks",
                "environment.yml", "pyproject.toml", "README.md", ".ci", "conftest.py"}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0 or not tracked.stdout:
        return  # not a git checkout (e.g. an sdist): nothing to compare
    top = {line.split("/")[0] for line in tracked.stdout.splitlines()}
    top = {name for name in top if not name.startswith(".") or name == ".ci"}
    assert top <= expected, f"unexpected top-level entries: {sorted(top - expected)}"

"""`mlc release`: marker stripping, its errors, idempotence and the --check mode."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc.grading.release import (
    ReleaseError,
    check_release,
    release,
    release_notebook,
    strip_solution,
)

ROOT = Path(__file__).resolve().parents[1]
STUB = 'raise NotImplementedError("your code here")'


def test_strip_keeps_indentation_and_surroundings():
    src = ("def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n"
           "    ### END SOLUTION\n\nprint(f)")
    assert strip_solution(src) == f"def f(x):\n    y = 1\n    {STUB}\n\nprint(f)"


def test_strip_several_regions_at_different_depths():
    src = ("### BEGIN SOLUTION\nA = 1\n### END SOLUTION\nclass K:\n    def g(self):\n"
           "        if True:\n            ### BEGIN SOLUTION\n            return 2\n"
           "            ### END SOLUTION")
    out = strip_solution(src)
    assert out.splitlines()[0] == STUB
    assert out.splitlines()[-1] == "            " + STUB
    compile(out, "<released>", "exec")


@pytest.mark.parametrize("src, words", [
    ("### BEGIN SOLUTION\nx = 1", ["line 1", "never closed"]),
    ("x = 1\n### END SOLUTION", ["line 2", "no matching"]),
    ("### BEGIN SOLUTION\n  ### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION",
     ["nested", "line 2"]),
])
def test_unbalanced_or_nested_markers_are_rejected(src, words):
    with pytest.raises(ReleaseError) as err:
        strip_solution(src, where="demo.ipynb, cell 3")
    assert "demo.ipynb, cell 3" in str(err.value)
    for w in words:
        assert w in str(err.value)


_line = st.text(alphabet="abc =+()1", max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(_line, min_size=1, max_size=3),
                          st.lists(_line, max_size=2)), max_size=4))
def test_strip_is_idempotent_and_removes_every_marked_line(blocks):
    lines = []
    for depth, secret, public in blocks:
        pad = "    " * depth
        lines += [pad + p for p in public]
        lines += [pad + "### BEGIN SOLUTION"] + [pad + "SECRET" + s for s in secret]
        lines += [pad + "### END SOLUTION"]
    src = "\n".join(lines)
    once = strip_solution(src)
    assert "SECRET" not in once and "### " not in once
    assert strip_solution(once) == once
    assert once.count(STUB) == len(blocks)


def _solution_nb():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n"
                                     "    ### END SOLUTION")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    code.execution_count = 3
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code,
                nbformat.v4.new_markdown_cell("Answer:\n### BEGIN SOLUTION\nforty-two\n"
                                              "### END SOLUTION")]
    return nb


def test_release_notebook_clears_outputs_and_keeps_the_rest():
    nb = _solution_nb()
    student = release_notebook(nb, "x.ipynb")
    assert student.cells[0].source == "# Title"
    assert student.cells[1].source == f"def f():\n    {STUB}"
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert "forty-two" not in student.cells[2].source
    assert "YOUR ANSWER HERE" in student.cells[2].source
    assert nb.cells[1].outputs and "return 1" in nb.cells[1].source  # the input is untouched


def test_release_error_names_notebook_and_cell(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nb = _solution_nb()
    nb.cells[1].source = "### BEGIN SOLUTION\nx = 1"
    nbformat.write(nb, sol / "07_broken.ipynb")
    with pytest.raises(ReleaseError, match=r"07_broken.ipynb, cell 1"):
        release(sol, ex)


def test_release_then_check_then_stale(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_solution_nb(), sol / "01_a.ipynb")
    before = (sol / "01_a.ipynb").read_bytes()
    assert check_release(sol, ex) == [f"{ex / '01_a.ipynb'} is missing"]
    assert release(sol, ex) == [ex / "01_a.ipynb"]
    assert release(sol, ex) == []                      # idempotent on disk
    assert check_release(sol, ex) == []
    assert (sol / "01_a.ipynb").read_bytes() == before  # solutions are never written
    nb = nbformat.read(sol / "01_a.ipynb", as_version=4)
    nb.cells[0].source = "# New title"
    nbformat.write(nb, sol / "01_a.ipynb")
    assert "stale" in check_release(sol, ex)[0]
    (ex / "99_orphan.ipynb").write_text((ex / "01_a.ipynb").read_text())
    assert any("99_orphan" in p for p in check_release(sol, ex))


def test_cli_release_check_passes_on_the_repository():
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "release", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_release_check_fails_and_names_stale_notebooks(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_solution_nb(), sol / "03_x.ipynb")
    cmd = [sys.executable, "-m", "mlc.cli", "release", "--solutions", str(sol),
           "--exercises", str(ex)]
    proc = subprocess.run(cmd + ["--check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "03_x.ipynb" in proc.stdout
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run(cmd + ["--check"], capture_output=True, timeout=60).returncode == 0

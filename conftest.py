"""Repository-wide pytest configuration: which notebooks are collected, and a shared grader.

- Lecture notebooks (``notebooks/``) are checked by nbval cell by cell against their
  stored outputs.
- Solution notebooks (``solutions/``) are not collected by nbval: the ``graded`` fixture
  runs each of them once per session through the real grader, and
  ``tests/test_course.py`` asserts that every cell ran clean and every exercise got full
  marks. Running them under nbval too would execute every solution twice.
- Exercise notebooks (``exercises/``) raise NotImplementedError by design: never run by
  nbval, graded once by the fixture (every exercise must score 0).

These hooks live here, in the repository, and not in an installed pytest plugin, so that
a project that merely has mlc installed collects its own notebooks as usual.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path, config):
    if ".ipynb_checkpoints" in collection_path.parts:
        return True
    if collection_path.suffix == ".ipynb" and (
            {"exercises", "solutions"} & set(collection_path.parts)):
        return True
    return None


@pytest.fixture(scope="session")
def graded():
    """``graded(path)``: the grader's report of a notebook, graded once per test session.

    Every test that needs a whole notebook graded (a solution's full marks, an exercise's
    zero, the Gradescope JSON of one) shares this one run.
    """
    from mlc.grading.grader import grade_notebook

    reports = {}

    def grade(path, timeout: float = 120.0):
        key = Path(path).resolve()
        if key not in reports:
            reports[key] = grade_notebook(key, timeout=timeout)
        return reports[key]

    return grade

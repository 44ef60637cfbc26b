"""The course's autograder.

- ``check("welcome.saxpy")`` in a notebook grades your definition right away.
- ``mlc grade NOTEBOOK [--json results.json]`` grades a whole notebook in a separate
  process, each exercise under a time limit, and never writes to the notebook.
- ``mlc release`` turns solution notebooks into exercise notebooks.
"""

from .check import check
from .registry import CheckFailed, Exercise, Tester, all_exercises, exercise, for_notebook, get

__all__ = [
           "CheckFailed",
           "Exercise",
           "Tester",
           "all_exercises",
           "check",
           "exercise",
           "for_notebook",
           "get",
]

"""What the tests of graded checks share: run a check on a reference namespace with some
names replaced, and assert that a wrong variant fails with a helpful message."""

from mlc.grading.check import run_check


def check_runner(reference):
    """``(run, fails)`` for exercises whose reference solutions are in ``reference`` (a
    namespace dict, or a function from exercise id to namespace).

    ``run(ex_id, **overrides)`` grades the reference with ``overrides`` swapped in and
    returns the check's record; ``fails(ex_id, *fragments, **overrides)`` asserts that it
    scores 0, that its message contains every fragment and that it gives a hint.
    """

    def run(ex_id, **overrides):
        ns = dict(reference(ex_id) if callable(reference) else reference)
        ns.update(overrides)
        return run_check(ex_id, ns)

    def fails(ex_id, *fragments, **overrides):
        rec = run(ex_id, **overrides)
        assert rec["score"] == 0, rec
        for fragment in fragments:
            assert fragment in rec["message"], rec["message"]
        assert rec["hint"], "a failed check should give a hint"
        return rec["message"]

    return run, fails


def grade_cell(folder, notebook, source, timeout):
    """``{exercise id: result}`` of the real grader (its worker, its time limit of
    ``timeout`` s) on a notebook ``notebook``.ipynb in ``folder`` holding the one cell
    ``source``: for wrong answers that only the time limit stops."""
    from pathlib import Path

    import nbformat

    from mlc.grading.grader import grade_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path = Path(folder) / f"{notebook}.ipynb"
    nbformat.write(nb, path)
    return {r.id: r for r in grade_notebook(path, timeout=timeout).results}

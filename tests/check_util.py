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

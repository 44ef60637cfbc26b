"""The error every schedule primitive raises when its preconditions do not hold."""


class ScheduleError(ValueError):
    """A schedule primitive was asked for an illegal transformation.

    The message names the primitive and the condition that failed, e.g. "cannot
    parallelize loop k: it binds a reduce iterator of block C". The schedule is left as
    it was before the call (primitives check everything before changing anything).
    """

"""What a tuning run returns: the best schedule, how it was found, and the curve."""

from __future__ import annotations

import math

SCHEDULE_ERROR = "schedule error: "  # the prefix of a draw the template rejected (never built)


class TuneResult:
    """The outcome of :func:`mlc.tune.tune`.

    * ``schedule`` — the best :class:`~mlc.schedule.Schedule` (``tir.build(result.schedule,
      target)`` compiles it), ``trace`` its trace (print it to read the recipe),
      ``decisions`` its sampling decisions, ``time`` its measured seconds;
    * ``history`` — one ``(trial, seconds, best_so_far, decisions)`` per measured
      candidate in order, ``seconds = inf`` for a failure (including draws the template
      rejected, which cost no trial); ``errors`` maps a failed trial to its message;
      ``n_measured`` counts the candidates actually built and run.
    """

    def __init__(self, schedule, time: float, decisions, history, errors, target: str,
                 strategy: str, tuning_seconds: float):
        self.schedule, self.time, self.decisions = schedule, time, decisions
        self.history, self.errors = history, errors
        self.target, self.strategy, self.tuning_seconds = target, strategy, tuning_seconds

    @property
    def trace(self):
        return self.schedule.trace

    @property
    def n_measured(self) -> int:
        return sum(1 for n, _, _, _ in self.history
                   if not self.errors.get(n, "").startswith(SCHEDULE_ERROR))

    @property
    def n_rejected(self) -> int:
        """Draws the template rejected with a ScheduleError (never built)."""
        return sum(e.startswith(SCHEDULE_ERROR) for e in self.errors.values())

    @property
    def n_failures(self) -> int:
        return sum(1 for _, t, _, _ in self.history if not math.isfinite(t))

    def build(self):
        """The best schedule compiled for the target it was tuned on."""
        from ..codegen import build

        return build(self.schedule, self.target)

    def plot(self, ax=None, label: str | None = None):
        """The tuning curve: each trial's time (dots) and the best so far (line), in ms.
        Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        ok = [(n, t * 1e3) for n, t, _, _ in self.history if math.isfinite(t)]
        best = [(n, b * 1e3) for n, _, b, _ in self.history if math.isfinite(b)]
        if ok:
            ax.scatter(*zip(*ok, strict=True), s=12, alpha=0.5, label="trial")
        if best:
            ax.step(*zip(*best, strict=True), where="post",
                    label=label or f"best ({self.strategy})")
        ax.set_yscale("log")
        ax.set_xlabel("trial")
        ax.set_ylabel("time (ms)")
        ax.set_title(f"tuning on {self.target}: best {self.time * 1e3:.3g} ms")
        ax.legend()
        return ax

    def __repr__(self):
        return (f"TuneResult(time={self.time * 1e3:.4g} ms, trials={self.n_measured}, "
                f"failures={self.n_failures} ({self.n_rejected} rejected draws), "
                f"target={self.target!r}, "
                f"strategy={self.strategy!r})")

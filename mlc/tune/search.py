"""``tune``: search a template's decisions for the fastest program, measuring real runs.

Two strategies share one loop of *propose, measure, record*:

* ``"random"`` — propose fresh random candidates. The baseline every search must beat.
* ``"evolutionary"`` — measure a random first generation, then repeat: fit the cost
  model on everything measured so far (features -> log seconds), breed a large pool of
  children from the fastest candidates (mutation: one decision steps or is re-drawn;
  crossover: each decision from one of two parents; plus fresh random ones), evolve the
  pool for a few generations with the *model* as the judge, and measure only the top of
  it, plus a few fresh random candidates so the model also sees what it did not choose
  (exploration: a model trained only on its own favourites never learns where it is
  wrong).

Measuring dominates the cost (a Numba compilation is ~1 s), ranking hundreds of children
with the model costs milliseconds each: that asymmetry is the whole point of a cost model.
"""

from __future__ import annotations

import math
import random

import numpy as np

from ..codegen import TARGETS
from ..perf import stopwatch
from ..schedule import ScheduleError
from ..tir.stmt import PrimFunc
from .cost_model import make_model
from .features import FEATURE_NAMES, extract
from .log import TuningLog, workload_key
from .measure import Measurer
from .result import SCHEDULE_ERROR, TuneResult
from .space import SearchSpace, decisions_key, main_block

STRATEGIES = ("random", "evolutionary")


class _Tuner:
    """The state of one search: what was measured, the log, the progress bar."""

    def __init__(self, space, measurer, trials, log, progress, strategy):
        from tqdm.auto import tqdm

        self.space, self.measurer, self.trials, self.log = space, measurer, trials, log
        self.block = main_block(space.func).name
        self.history, self.errors, self.seen = [], {}, set()
        self.measured = 0  # candidates built and run: what the ``trials`` budget counts
        self.X, self.y = [], []  # features and log-times of working candidates
        self.best, self.best_decisions = math.inf, None
        self.bar = tqdm(total=trials, disable=not progress, desc=f"tune {strategy}",
                        unit="trial", leave=False)
        if log is not None:
            for rec in log.records():
                t = rec["time"] if rec.get("time") is not None else math.inf
                self._record(rec["decisions"], t, rec.get("error"), sch=None, logged=True)

    @property
    def done(self) -> bool:
        return self.measured >= self.trials

    def features(self, sch, decisions=None) -> np.ndarray:
        cache = self.space.feature_cache
        key = decisions_key(decisions) if decisions is not None else None
        if key is not None and key in cache:
            return cache[key]
        try:
            out = extract(sch.func, self.block)
        except ValueError:  # a custom template renamed or removed the block
            out = np.zeros(len(FEATURE_NAMES))
        if key is not None and len(cache) < 4096:
            cache[key] = out
        return out

    def _record(self, decisions, seconds, error, sch, logged=False) -> None:
        if decisions is not None:
            self.seen.add(decisions_key(decisions))
        if math.isfinite(seconds):
            if sch is None:
                try:
                    sch = self.space.apply(decisions)
                except ScheduleError:
                    sch = None
            if sch is not None:
                self.X.append(self.features(sch, decisions))
                self.y.append(math.log(seconds))
            if seconds < self.best:
                self.best, self.best_decisions = seconds, decisions
        trial = len(self.history)
        self.history.append((trial, seconds, self.best, decisions))
        if not (error or "").startswith(SCHEDULE_ERROR):
            self.measured += 1
            self.bar.update(1)
        if error:
            self.errors[trial] = error
        if self.log is not None and not logged:
            self.log.append(decisions, seconds, error)
        if math.isfinite(self.best):
            self.bar.set_postfix(best=f"{self.best * 1e3:.4g} ms")

    def measure(self, decisions, sch=None) -> None:
        """Measure one candidate (built from ``decisions`` unless ``sch`` is given)."""
        if sch is None:
            try:
                sch = self.space.apply(decisions)
            except ScheduleError as e:
                self._record(decisions, math.inf, f"{SCHEDULE_ERROR}{e}", None)
                return
        seconds, error = self.measurer.measure(sch, self.best)
        self._record(decisions, seconds, error, sch)

    def measure_random(self, rng, count: int) -> None:
        """Measure up to ``count`` new random candidates."""
        target, attempts = self.measured + count, 0
        while self.measured < min(target, self.trials) and attempts < 50 * count:
            attempts += 1
            try:
                sch, decisions = self.space.sample(rng)
            except ScheduleError as e:
                # The template itself failed for these draws: a failed trial, logged.
                decisions = getattr(e, "decisions", None)
                if decisions is not None and decisions_key(decisions) in self.seen:
                    continue
                self._record(decisions, math.inf, f"{SCHEDULE_ERROR}{e}", None)
                continue
            if decisions_key(decisions) in self.seen:
                continue
            self.measure(decisions, sch)


def _parents(tuner, k: int) -> list:
    ok = sorted((t, d) for _, t, _, d in tuner.history if math.isfinite(t) and d is not None)
    return [d for _, d in ok[:k]]


def _breed(tuner, parents, rng, fresh: float, known=()):
    """One child: a fresh random draw (share ``fresh``), else a mutant of a tournament
    winner among ``parents`` (best first), sometimes crossed with another parent first.
    Returns ``(decisions, schedule)`` or None for an illegal child (it costs nothing: it
    is never measured). A mutant whose decisions are in ``known`` is dropped before it is
    built (None)."""
    u = rng.random()
    if u < fresh or not parents:
        try:
            sch, child = tuner.space.sample(rng)
            return child, sch
        except ScheduleError:
            return None
    # Tournament of two: the better of two random parents breeds.
    child = parents[min(rng.sample(range(len(parents)), min(2, len(parents))))]
    if u < fresh + 0.3 and len(parents) > 1:
        child = tuner.space.crossover(child, parents[rng.randrange(len(parents))], rng)
    child = tuner.space.mutate(child, rng)
    if decisions_key(child) in known:
        return None
    try:
        return child, tuner.space.apply(child)
    except ScheduleError:
        return None


class _Known:
    """``key in known``: in any of the given sets or dicts."""

    def __init__(self, *groups):
        self.groups = groups

    def __contains__(self, key):
        return any(key in g for g in self.groups)


def _propose(tuner, model, rng, parents, pool: int, generations: int = 3) -> list:
    """Unmeasured candidates, best predicted first: ``[(score, decisions, schedule)]``.

    Evolution runs *on the model*: a pool of fresh draws and mutants of the measured
    parents is scored, its best quarter breeds the next generation, and so on for
    ``generations`` rounds. Children can thus wander several mutations away from what
    was measured, guided by predictions that cost milliseconds instead of seconds.
    """
    scored: dict = {}

    def grow(elite, count, fresh):
        new = []
        for _ in range(count * 3):
            if len(new) >= count:
                break
            got = _breed(tuner, elite, rng, fresh, _Known(tuner.seen, scored))
            if got is None:
                continue
            key = decisions_key(got[0])
            if key in tuner.seen or key in scored:
                continue
            scored[key] = None
            new.append(got)
        if new:
            preds = model.predict(np.array([tuner.features(sch, d) for d, sch in new]))
            for (d, sch), p in zip(new, preds, strict=True):
                scored[decisions_key(d)] = (float(p), d, sch)

    grow(parents, pool, fresh=0.5)
    for _ in range(generations - 1):
        ranked = sorted((v for v in scored.values() if v), key=lambda v: v[0])
        elite = parents[:4] + [d for _, d, _ in ranked[:max(4, pool // 4)]]
        grow(elite, pool // 2, fresh=0.1)
    return sorted((v for v in scored.values() if v), key=lambda v: v[0])


def _evolve(tuner, rng, cost_model: str, population: int, batch: int, pool: int,
            explore: float) -> None:
    """The evolutionary loop (see the module docstring)."""
    tuner.measure_random(rng, max(0, population - tuner.measured))
    stale = 0
    while not tuner.done and stale < 5:
        parents = _parents(tuner, population)
        if len(tuner.y) < 3 or not parents:
            before = tuner.measured
            tuner.measure_random(rng, batch)
            stale = stale + 1 if tuner.measured == before else 0
            continue
        model = make_model(cost_model).fit(np.array(tuner.X), np.array(tuner.y))
        ranked = _propose(tuner, model, rng, parents, pool)
        if not ranked:
            stale += 1
            continue
        stale = 0
        n = min(batch, tuner.trials - tuner.measured, len(ranked))
        n_explore = int(round(explore * n)) if n > 1 else 0
        for _, decisions, sch in ranked[:n - n_explore]:
            if tuner.done:
                break
            if decisions_key(decisions) not in tuner.seen:
                tuner.measure(decisions, sch)
        # Exploration: fresh random candidates, which the model did not choose.
        tuner.measure_random(rng, n_explore)


def tune(func: PrimFunc, target: str = "cpu", trials: int = 64,
         strategy: str = "evolutionary", seed: int = 0, log_file=None, progress: bool = True,
         template=None, cost_model: str = "ensemble", repeat: int = 3,
         population: int | None = None, batch: int | None = None, pool: int = 256,
         explore: float = 0.25, measurer=None, space=None) -> TuneResult:
    """Find a fast schedule of ``func`` for ``target`` by measuring ``trials`` candidates.

    ``template(sch)`` defines the search space (default
    :func:`~mlc.tune.space.multi_level_tiling`). ``strategy`` is "evolutionary" (cost-model
    guided, see the module docstring) or "random". ``log_file`` (a path) records every
    trial as a JSON line; when it already holds trials of this workload they count toward
    ``trials``, train the cost model and are not measured again, so re-running a finished
    search costs only rebuilding its best schedule.

    Draws the template rejects (a ``ScheduleError``, e.g. a loop of extent 1 that cannot
    be parallelized) are recorded in the history and the log as failures but cost no
    trial, since nothing was built; candidates that fail to build, crash or compute a
    wrong result do.

    ``cost_model`` is "ensemble" (ridge + stumps), "stumps" or "ridge"; ``repeat`` the
    timing rounds per candidate; ``population`` the size of the random first generation
    and of the parent pool (default ``max(4, trials // 4)``); ``batch`` how many
    candidates each generation measures (default ``max(2, trials // 8)``); ``pool`` how
    many children the model ranks per generation; ``explore`` the share of each batch
    drawn at random instead. ``measurer`` replaces the default
    :class:`~mlc.tune.measure.Measurer` (anything with ``measure(sch, best) -> (seconds,
    error)``, e.g. :class:`~mlc.tune.table.TableMeasurer` to replay a search over a
    measured table); ``space`` a :class:`SearchSpace` of ``func`` to search instead of
    ``template`` (several searches sharing one reuse the candidates it has built).
    Returns a :class:`TuneResult`.
    """
    if not isinstance(func, PrimFunc):
        raise TypeError(f"tune takes a PrimFunc, got {type(func).__name__}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if not 0 <= explore <= 1:
        raise ValueError(f"explore must be in [0, 1], got {explore}")
    if target == "cuda" and template is None:
        raise ValueError("the default template (multi_level_tiling) schedules for the CPU; "
                         "pass template= a function that binds GPU threads to tune for cuda")
    make_model(cost_model)  # reject an unknown model name before any work
    elapsed = stopwatch()  # the whole search, for TuneResult's tuning time
    if space is None:
        space = SearchSpace(func, template, target)
    elif space.func is not func or space.target != target or (
            template is not None and template is not space.template):
        raise ValueError("tune: space= must be a SearchSpace of this func and target "
                         "(and of template, if one is given)")
    log = (TuningLog(log_file, workload_key(func, target, space.name))
           if log_file is not None else None)
    if measurer is None:
        measurer = Measurer(func, target, repeat=repeat, seed=seed)
    tuner = _Tuner(space, measurer, trials, log, progress, strategy)
    rng = random.Random(seed)
    try:
        if strategy == "random":
            tuner.measure_random(rng, trials)
        else:
            population = population or max(4, trials // 4)
            batch = batch or max(2, trials // 8)
            _evolve(tuner, rng, cost_model, population, batch, pool, explore)
    finally:
        tuner.bar.close()
    if tuner.best_decisions is None:
        first = "; ".join(f"trial {k}: {v}" for k, v in list(tuner.errors.items())[:3])
        raise RuntimeError(f"tune: none of {len(tuner.history)} candidates ran ({first})")
    best_sch = space.apply(tuner.best_decisions)
    return TuneResult(best_sch, tuner.best, tuner.best_decisions, tuner.history, tuner.errors,
                      target, strategy, elapsed.stop())

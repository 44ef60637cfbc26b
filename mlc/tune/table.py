"""A measured table of a whole (small) search space, and searches replayed over it.

Comparing search strategies honestly takes many runs with different seeds, and every
measured candidate costs a Numba compilation (1-4 s). When the space is small enough to
measure *every* candidate once, the measurements can be stored as a table and a search
replayed over it: its "measurement" is a look-up, so a hundred seeded searches cost
seconds instead of hours, and every strategy sees the same numbers (the noise of the
machine is frozen in the table, which is fair to both and lets their curves be compared).

* :func:`parallel_tiles` — the template of the table shipped with mlc: two-level tiles of
  a matmul's ``i, j, k`` from short menus, three loop orders, the innermost ``j`` tile
  vectorized, the outermost loop with work in it parallel. It holds unit 06's one-line
  reorder (``i, k, j``, vectorized ``j``, parallel ``i``): tiles ``i1 = 1``,
  ``j1 = k1 = n``;
* :func:`measure_table` — measure every candidate of a space once, write a tuning log
  (the format of :class:`~mlc.tune.log.TuningLog`, one JSON line per candidate, after a
  first line ``{"meta": ...}`` saying where and when it was measured);
* :func:`load_table` and :class:`TableMeasurer` — read it back, and stand in for
  :class:`~mlc.tune.measure.Measurer` in ``tune(..., measurer=TableMeasurer(table))``.

``mlc bench tir --table FILE`` re-measures the shipped table on your machine.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import platform
from pathlib import Path

from ..schedule import ScheduleError
from .log import workload_key
from .space import SearchSpace, decisions_key

#: The shipped table: every candidate of ``parallel_tiles`` on a 512^3 float32 matmul.
SHIPPED_TABLE = Path(__file__).with_name("matmul512_parallel_tiles.jsonl")

I_TILES, J_TILES, K_TILES = (1, 2, 4, 8, 16), (64, 128, 256, 512), (32, 128, 512)


def parallel_tiles(sch):
    """Two-level tiling of a matmul block ``C`` with ``parallel``; a small space
    (5 x 4 x 3 tiles x 3 orders = 180 candidates) that can be measured exhaustively.

    Tiles: ``i1`` from :data:`I_TILES` (a perfect tiling, innermost at most 16), ``j1``
    from :data:`J_TILES` and ``k1`` from :data:`K_TILES` (menus, by
    ``sample_categorical``; each must divide its loop). Orders: ``i0 j0 k0 i1 k1 j1``
    (tile by tile), ``i0 k0 j0 i1 k1 j1`` (a panel of B per ``k0``), ``j0 i0 k0 i1 k1 j1``
    (a column panel of B, ``n x j1``, reused by every row tile).
    """
    blk = sch.get_block("C")
    i, j, k = sch.get_loops(blk)
    n_j, n_k = sch.get(j).extent, sch.get(k).extent
    i0, i1 = sch.split(i, factors=sch.sample_perfect_tile(i, n=2, max_innermost_factor=16))
    tj = J_TILES[int(sch.sample_categorical(list(range(len(J_TILES))), [1.0] * len(J_TILES)))]
    tk = K_TILES[int(sch.sample_categorical(list(range(len(K_TILES))), [1.0] * len(K_TILES)))]
    if n_j % tj or n_k % tk:
        raise ScheduleError(f"parallel_tiles: tiles {tj}, {tk} do not divide {n_j}, {n_k}")
    j0, j1 = sch.split(j, factors=[n_j // tj, tj])
    k0, k1 = sch.split(k, factors=[n_k // tk, tk])
    order = int(sch.sample_categorical([0, 1, 2], [1.0, 1.0, 1.0]))
    nest = {0: [i0, j0, k0, i1, k1, j1], 1: [i0, k0, j0, i1, k1, j1],
            2: [j0, i0, k0, i1, k1, j1]}[order]
    sch.reorder(*nest)
    sch.vectorize(j1)
    # The outermost spatial loop with work in it (j0 is 1 when j1 = n).
    sch.parallel(next(lp for lp in nest[:2] if sch.get(lp).extent > 1))
    return sch


def all_decisions(space: SearchSpace) -> list:
    """Every decision list of ``space`` (the product of its slots' domains)."""
    from ..schedule.sampling import perfect_tiles

    choices = []
    for dom in space.domains:
        if dom[0] == "tile":
            choices.append([list(t) for t in perfect_tiles(dom[1], dom[2], dom[3])])
        else:
            choices.append([c for c in range(dom[1]) if dom[2][c] > 0])
    return [list(d) for d in itertools.product(*choices)]


def measure_table(func, template, path, target: str = "cpu", repeat: int = 3,
                  progress: bool = True) -> list:
    """Measure every candidate of ``template`` on ``func`` once and write them to ``path``
    (overwritten). Returns the records. Each candidate is timed in full (no early give
    up), so the slow ones are right too."""
    from tqdm.auto import tqdm

    from ..perf import stopwatch
    from .measure import Measurer

    space = SearchSpace(func, template, target)
    key = workload_key(func, target, space.name)
    measurer = Measurer(func, target, repeat=repeat)
    model = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    meta = {"template": space.name, "target": target,
            "shapes": [list(p.shape) for p in func.params],
            "machine": f"{model}, "
                       f"{os.cpu_count()} cores, {platform.system()}",
            "date": datetime.date.today().isoformat(), "repeat": repeat}
    records = []
    with stopwatch() as total, open(path, "w") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for decisions in tqdm(all_decisions(space), disable=not progress, desc="table"):
            try:
                sch = space.apply(decisions)
            except ScheduleError:
                continue  # not a candidate of the template: it never builds
            seconds, error = measurer.measure(sch)
            rec = {"workload": key, "decisions": decisions,
                   "time": seconds if math.isfinite(seconds) else None, "error": error}
            records.append(rec)
            f.write(json.dumps(rec) + "\n")
            f.flush()
        meta["seconds"] = round(total.seconds, 1)
    # Rewrite the header with the total measuring time.
    lines = Path(path).read_text().splitlines()
    lines[0] = json.dumps({"meta": meta})
    Path(path).write_text("\n".join(lines) + "\n")
    return records


def _cpuinfo() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


class Table:
    """A measured table: ``times`` maps a decisions key to seconds (inf for a failure),
    ``meta`` says where and when it was measured, ``workload`` names what."""

    def __init__(self, path=SHIPPED_TABLE):
        self.path, self.meta, self.times, self.decisions = os.fspath(path), {}, {}, {}
        self.workload = None
        with open(self.path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "meta" in rec:
                    self.meta = rec["meta"]
                    continue
                self.workload = rec["workload"]
                k = decisions_key(rec["decisions"])
                self.times[k] = rec["time"] if rec.get("time") is not None else math.inf
                self.decisions[k] = rec["decisions"]

    def __len__(self):
        return len(self.times)

    def time(self, decisions) -> float:
        return self.times[decisions_key(decisions)]

    def best(self):
        """``(seconds, decisions)`` of the fastest candidate."""
        k = min(self.times, key=self.times.get)
        return self.times[k], self.decisions[k]

    def check_workload(self, func, target: str, template) -> None:
        """Raise if the table was measured for another (program, target, template)."""
        want = workload_key(func, target, getattr(template, "__name__", str(template)))
        if want != self.workload:
            raise ValueError(f"table {self.path} holds workload {self.workload}, not "
                             f"{want} (another program, target or template)")


def load_table(path=SHIPPED_TABLE) -> Table:
    """The measured table at ``path`` (default: the one shipped with mlc)."""
    return Table(path)


class TableMeasurer:
    """A :class:`~mlc.tune.measure.Measurer` that looks the time up in a :class:`Table`
    instead of building and running the candidate: pass it as ``tune(...,
    measurer=TableMeasurer(table))`` to replay a search in milliseconds per trial."""

    def __init__(self, table: Table):
        self.table = table

    def measure(self, sch, best: float = math.inf) -> tuple:
        from .space import _decided

        key = decisions_key(_decided(sch.trace))
        if key not in self.table.times:
            return math.inf, "not in the table"
        t = self.table.times[key]
        return (t, None) if math.isfinite(t) else (t, "failed when the table was measured")

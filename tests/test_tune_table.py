"""The measured table of unit 07: parallel_tiles, measure_table, replaying a search."""

import json
import math
import random

import pytest

from mlc import te, tune
from mlc.tune.table import all_decisions


def matmul(n):
    A = te.placeholder((n, n), "float32", name="A")
    B = te.placeholder((n, n), "float32", name="B")
    k = te.reduce_axis((0, n), name="k")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return te.create_prim_func([A, B, C])


REORDER = [[512, 1], 3, 2, 0]  # i1 = 1, j1 = k1 = 512: unit 06's parallel i, k, j


def test_parallel_tiles_space_holds_the_reorder():
    f = matmul(512)
    space = tune.SearchSpace(f, tune.parallel_tiles)
    assert len(all_decisions(space)) == 180
    # The only loops that iterate: parallel i, then k, then vectorized j.
    iterating = [ln.strip() for ln in space.apply(REORDER).func.script().splitlines()
                 if ln.strip().startswith("for ") and "range(1)" not in ln]
    assert iterating == ["for i_0 in parallel(512):", "for k_1 in range(512):",
                         "for j_1 in vectorized(512):"]
    for seed in range(5):
        _, d = space.sample(random.Random(seed))
        assert "parallel(" in space.apply(d).func.script()


def test_shipped_table_is_complete_and_matches_the_workload():
    table = tune.load_table()
    assert len(table) == 180
    table.check_workload(matmul(512), "cpu", tune.parallel_tiles)
    assert {"machine", "date", "template", "seconds"} <= set(table.meta)
    assert all(math.isfinite(t) and t > 0 for t in table.times.values())
    t_best, d_best = table.best()
    assert t_best == min(table.times.values())
    assert math.isfinite(table.time(REORDER))
    with pytest.raises(ValueError, match="workload"):
        table.check_workload(matmul(256), "cpu", tune.parallel_tiles)


def test_replay_looks_times_up(tmp_path):
    table = tune.load_table()
    f = matmul(512)
    for strategy in ("random", "evolutionary"):
        res = tune.tune(f, "cpu", trials=12, strategy=strategy, template=tune.parallel_tiles,
                        seed=3, progress=False, measurer=tune.TableMeasurer(table), pool=24)
        assert res.n_measured == 12
        for _, t, _, d in res.history:
            assert t == table.time(d)
        assert res.time == min(t for _, t, _, _ in res.history)


def test_measure_table_writes_every_candidate(tmp_path):
    # A tiny space on a tiny matmul: 2 tiles x 2 orders.
    def tiny(sch):
        i, j, k = sch.get_loops(sch.get_block("C"))
        i0, i1 = sch.split(i, factors=sch.sample_perfect_tile(i, n=2, max_innermost_factor=2))
        if sch.sample_categorical([0, 1], [1.0, 1.0]):
            sch.reorder(i0, k, i1, j)

    f = matmul(8)
    path = tmp_path / "t.jsonl"
    recs = tune.measure_table(f, tiny, path, repeat=1, progress=False)
    assert len(recs) == 4
    lines = path.read_text().splitlines()
    assert "meta" in json.loads(lines[0]) and len(lines) == 5
    table = tune.load_table(path)
    assert len(table) == 4 and table.meta["template"] == "tiny"
    table.check_workload(f, "cpu", tiny)

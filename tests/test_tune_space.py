"""The search space and the loop features of mlc.tune."""

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc import te, tir
from mlc.schedule import ScheduleError
from mlc.tune import FEATURE_NAMES, SearchSpace, extract, main_block
from mlc.tune.space import decisions_key, slot_domains


def matmul(n=8, k=4, m=16):
    A = te.placeholder((n, k), "float32", name="A")
    B = te.placeholder((k, m), "float32", name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    return te.create_prim_func([A, B, C])


def row_sum(n=6, m=8):
    A = te.placeholder((n, m), "float32", name="A")
    r = te.reduce_axis((0, m), name="k")
    S = te.compute((n,), lambda i: te.sum(A[i, r], axis=r), name="S")
    return te.create_prim_func([A, S])


def scale(n=4, m=6):
    A = te.placeholder((n, m), "float32", name="A")
    B = te.compute((n, m), lambda i, j: A[i, j] * 2.0, name="B")
    return te.create_prim_func([A, B])


def legal_sample(space, rng):
    """A random candidate the template accepts (some draws are illegal)."""
    for _ in range(100):
        try:
            return space.sample(rng)
        except ScheduleError:
            pass
    raise AssertionError("no legal candidate in 100 draws")


def feat(func, block):
    return dict(zip(FEATURE_NAMES, extract(func, block), strict=True))


# ----------------------------------------------------------------------------- features

def test_features_of_the_naive_matmul():
    f = feat(matmul(16, 16, 16), "C")
    # i, j, k each 16: 4096 iterations; k innermost walks A by 1, B by 16, C not at all.
    assert f["log_total_iters"] == 12
    assert f["log_inner_extent"] == 4 and f["log_inner_entries"] == 8
    assert (f["inner_stride1"], f["inner_stride0"], f["inner_strided"]) == (1, 1, 1)
    assert f["n_loops"] == 3 and f["reduce_depth"] == pytest.approx(2 / 3)
    assert f["log_parallel"] == 0 and f["log_unroll"] == 0 and f["local_accumulator"] == 0
    # The whole problem (3 x 16 rows of one 64-byte line) fits in L1: traffic is its
    # footprint.
    assert f["log_traffic_l1"] == pytest.approx(math.log2(3 * 16 * 64))


def test_features_follow_the_schedule():
    func = matmul(64, 64, 64)
    sch = tir.Schedule(func)
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, 8])
    sch.reorder(i0, k, i1, j)
    sch.parallel(i0)
    sch.vectorize(j)
    f = feat(sch.func, "C")
    assert f["log_parallel"] == 3 and f["inner_vectorized"] == 1
    # j innermost: B and C contiguous, A fixed.
    assert (f["inner_stride1"], f["inner_stride0"], f["inner_strided"]) == (2, 1, 0)
    assert f["reduce_depth"] == pytest.approx(1 / 4)
    # One i0 iteration touches 8 rows of A (8x64), all of B (64x64), 8 rows of C; a row
    # of 64 floats is 4 cache lines.
    assert f["log_footprint_outer_tile"] == pytest.approx(math.log2((8 + 64 + 8) * 256))
    with pytest.raises(ValueError, match="no block named"):
        extract(func, "D")


def test_tiling_lowers_estimated_traffic():
    # 256^3 naive: for each C[i, j] the k loop reads a column of B, a cache line per
    # element. A 16x16 tile reuses each line 16 times, so the L1 traffic estimate falls.
    func = matmul(256, 256, 256)
    sch = tir.Schedule(func)
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, 16])
    j0, j1 = sch.split(j, factors=[None, 16])
    sch.reorder(i0, j0, k, i1, j1)
    assert feat(sch.func, "C")["log_traffic_l1"] < feat(func, "C")["log_traffic_l1"] - 2


# ----------------------------------------------------------------------------- space

def test_main_block_and_domains():
    func = matmul()
    assert main_block(func).name == "C"
    space = SearchSpace(func)
    kinds = [d[0] for d in space.domains]
    assert kinds[:3] == ["tile", "tile", "tile"] and "categorical" in kinds
    assert space.domains[0][1:3] == (8, 3) and space.domains[1][1:3] == (16, 3)
    assert space.domains[2][1:3] == (4, 2)
    assert main_block(scale()).name == "B"


@pytest.mark.parametrize("make", [matmul, row_sum, scale])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_every_candidate_computes_the_same_result(make, seed):
    func = make()
    space = SearchSpace(func, target="python")
    rng = np.random.default_rng(0)
    args = [rng.normal(size=p.shape).astype(p.dtype) for p in func.params]
    tir.build(func, "python")(*args)
    want = args[-1].copy()
    try:
        sch, decisions = space.sample(random.Random(seed))
    except ScheduleError:
        return  # an illegal draw is the search's to record; it never yields a program
    args[-1][...] = np.nan
    tir.build(sch, "python")(*args)
    np.testing.assert_allclose(args[-1], want, rtol=1e-5, atol=1e-5)
    # The decisions rebuild exactly this program, and the trace records them.
    assert tir.structural_equal(space.apply(decisions).func, sch.func)
    assert [d for _, d in sorted(sch.trace.decisions.items())] == decisions
    assert "sample_perfect_tile" in str(sch.trace)


def test_mutation_and_crossover_stay_in_the_space():
    space = SearchSpace(matmul(16, 8, 32))
    rng = random.Random(5)
    a = legal_sample(space, rng)[1]
    b = legal_sample(space, rng)[1]
    for _ in range(30):
        m = space.mutate(a, rng)
        assert sum(x != y for x, y in zip(a, m, strict=True)) == 1
        for slot, dom in zip(m, space.domains, strict=True):
            if dom[0] == "tile":
                assert math.prod(slot) == dom[1] and len(slot) == dom[2]
                assert dom[3] is None or slot[-1] <= dom[3]
            else:
                assert 0 <= slot < dom[1]
        c = space.crossover(a, b, rng)
        assert all(x in (y, z) for x, y, z in zip(c, a, b, strict=True))
    assert decisions_key(a) == decisions_key([list(x) if isinstance(x, list) else x for x in a])


def test_illegal_decisions_raise_schedule_errors():
    space = SearchSpace(matmul())
    good = legal_sample(space, random.Random(0))[1]
    bad = list(good)
    bad[0] = [3, 1, 1]  # not a tiling of 8
    with pytest.raises(ScheduleError, match="not 3 positive factors"):
        space.apply(bad)
    with pytest.raises(ScheduleError, match="decisions"):
        space.apply(good + [0])
    assert len(slot_domains(space.apply(good).trace)) == len(good)


def test_custom_template_and_bad_arguments():
    def template(sch):
        c = sch.get_block("C")
        i, j, k = sch.get_loops(c)
        sch.split(j, factors=sch.sample_perfect_tile(j, n=2, max_innermost_factor=4))

    space = SearchSpace(matmul(), template=template)
    assert space.domains == [("tile", 16, 2, 4)] and space.name == "template"
    with pytest.raises(TypeError, match="PrimFunc"):
        SearchSpace("not a func")

    def broken(sch):
        sch.parallel(sch.get_loops(sch.get_block("C"))[2])  # k: a reduce loop

    with pytest.raises(ScheduleError, match="failed on 64 random draws"):
        SearchSpace(matmul(), template=broken)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 3, 4, 6, 8]), min_size=2, max_size=4),
       st.integers(0, 1000))
def test_move_factor_keeps_the_product_and_steps_by_a_prime(tile, seed):
    from mlc.tune.space import move_factor

    new = move_factor(tile, random.Random(seed), max_innermost_factor=8)
    if new is None:
        assert all(x == 1 for x in tile) or len(tile) == 1
        return
    assert math.prod(new) == math.prod(tile) and new[-1] <= 8
    changed = [i for i, (a, b) in enumerate(zip(tile, new, strict=True)) if a != b]
    assert len(changed) == 2
    p = max(tile[i] // new[i] for i in changed if new[i] < tile[i])
    assert p in (2, 3) and sorted(new[i] * p == tile[i] or tile[i] * p == new[i]
                                  for i in changed) == [True, True]


def test_loops_of_extent_one_are_not_the_innermost_loop():
    func = matmul(16, 16, 16)
    sch = tir.Schedule(func)
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    sch.split(k, factors=[16, 1])  # k_1 runs once: the real innermost loop is k_0
    f = feat(sch.func, "C")
    assert f["log_inner_extent"] == 4 and f["n_loops"] == 3 and f["inner_is_reduce"] == 1
    assert (f["inner_stride1"], f["inner_stride0"], f["inner_strided"]) == (1, 1, 1)

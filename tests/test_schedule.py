"""Schedule primitives: what each does to the program, that results do not change, that
illegal requests raise ScheduleError saying why, and that traces replay."""

import numpy as np
import pytest

from mlc import te, tir
from mlc.schedule.examples import matmul_gpu_schedule, matmul_hand_schedule
from mlc.schedule.sampling import perfect_tiles
from test_schedule_property import matmul, mm_relu, row_sum_scaled


def loop_names(sch, block):
    return [sch.get(lp).loop_var.name for lp in sch.get_loops(sch.get_block(block))]


def check_python(sch, program):
    func, ref_fn, in_shapes, out_shape = program()
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s).astype("float32") for s in in_shapes]
    out = np.zeros(out_shape, "float32")
    tir.build(sch, "python")(*args, out)
    np.testing.assert_allclose(out, ref_fn(*args), rtol=1e-4, atol=1e-4)


def test_split_fuse_reorder_change_loops_not_results():
    sch = tir.Schedule(matmul()[0])
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    i0, i1 = sch.split(i, factors=[None, 4])
    assert [sch.get(x).extent for x in (i0, i1)] == [2, 4]
    assert loop_names(sch, "C") == ["i_0", "i_1", "j", "k"]
    sch.reorder(k, i1)   # the named loops swap places; j stays where it was
    assert loop_names(sch, "C") == ["i_0", "k", "j", "i_1"]
    f = sch.fuse(i0, k)
    assert sch.get(f).extent == 12 and loop_names(sch, "C") == ["i_0_k_fused", "j", "i_1"]
    check_python(sch, matmul)


def test_imperfect_split_adds_a_predicate():
    sch = tir.Schedule(matmul()[0])
    i, _, _ = sch.get_loops(sch.get_block("C"))
    a, b = sch.split(i, factors=[3, None])   # 3 * 3 = 9 > 8
    assert sch.get(b).extent == 3
    assert "where(i_0 * 3 + i_1 < 8)" in sch.func.script()
    check_python(sch, matmul)


def test_split_then_fuse_simplifies_back():
    sch = tir.Schedule(matmul()[0])
    i, _, _ = sch.get_loops(sch.get_block("C"))
    f = sch.fuse(*sch.split(i, factors=[2, 4]))
    blk = sch.get(sch.get_block("C"))
    assert blk.bindings[0] is sch.get(f).loop_var  # (f // 4) * 4 + f % 4 -> f


def test_annotations_show_in_script_and_keep_results():
    sch = tir.Schedule(mm_relu()[0])
    i, j, k = sch.get_loops(sch.get_block("C"))
    sch.parallel(i)
    sch.vectorize(sch.get_loops(sch.get_block("D"))[1])
    sch.unroll(k)
    text = sch.func.script()
    assert "for i in parallel(8):" in text and "in vectorized(12):" in text
    assert "for k in unroll(6):" in text
    check_python(sch, mm_relu)


def test_compute_at_and_reverse_compute_at():
    sch = tir.Schedule(mm_relu()[0])
    i, j, k = sch.get_loops(sch.get_block("C"))
    sch.reverse_compute_at(sch.get_block("D"), j)
    assert loop_names(sch, "D") == ["i", "j", "ax0", "ax1"]
    check_python(sch, mm_relu)
    sch = tir.Schedule(mm_relu()[0])
    di, dj = sch.get_loops(sch.get_block("D"))
    sch.compute_at(sch.get_block("C"), di)
    assert loop_names(sch, "C")[0] == "i"
    assert sch.get(sch.get_loops(sch.get_block("C"))[1]).extent == 1
    check_python(sch, mm_relu)
    low = tir.lower(sch.func)  # the intermediate C shrinks to one row per iteration of i
    assert "C = alloc_buffer((1, 12)" in low.script()


def test_inline_and_reverse_inline():
    sch = tir.Schedule(row_sum_scaled()[0])
    sch.compute_inline(sch.get_block("T"))
    assert "T" not in [b.name for b in sch.func.buffers]
    assert "A[vi, vr] * 2.0" in sch.func.script()
    check_python(sch, row_sum_scaled)
    n = 6
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
    C = te.compute((n,), lambda i: B[i] * 3.0, name="C")
    sch = tir.Schedule(te.create_prim_func([A, C]))
    sch.reverse_compute_inline(sch.get_block("C"))
    assert [b.name for b in sch.func.buffers] == ["A", "C"]
    a, c = np.arange(n, dtype="float32"), np.zeros(n, "float32")
    tir.build(sch, "python")(a, c)
    np.testing.assert_allclose(c, (a + 1) * 3)


def test_cache_read_write_and_decompose_reduction():
    sch = tir.Schedule(matmul()[0])
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    a_local = sch.cache_read(c, 0, "local")
    sch.compute_at(a_local, i)
    c_local = sch.cache_write(c, "C", "local")
    sch.reverse_compute_at(c_local, i)
    init = sch.decompose_reduction(c, j)
    assert sch.get(init).name == "C_init" and sch.get(c).init is None
    check_python(sch, matmul)
    low = tir.lower(sch.func).script()
    assert 'A_local = alloc_buffer((1, 6), "float32", scope="local")' in low
    assert 'C_local = alloc_buffer((1, 12), "float32", scope="local")' in low


def test_hand_schedule_is_correct_and_replays():
    n = 64
    A = te.placeholder((n, n), name="A")
    B = te.placeholder((n, n), name="B")
    r = te.reduce_axis((0, n), name="k")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    func = te.create_prim_func([A, B, C])
    sch = matmul_hand_schedule(tir.Schedule(func), tile_i=16, tile_j=16, unroll=4)
    a, b = np.random.rand(n, n).astype("float32"), np.random.rand(n, n).astype("float32")
    c = np.zeros((n, n), "float32")
    tir.build(sch, "python")(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4)
    fresh = tir.Schedule(func)
    sch.trace.apply_to(fresh)
    tir.assert_structural_equal(fresh.func, sch.func)
    gpu = matmul_gpu_schedule(tir.Schedule(func), tile=8, tile_k=8)
    c[:] = 0
    tir.build(gpu, "python")(a, b, c)   # a GPU schedule also runs as plain loops
    np.testing.assert_allclose(c, a @ b, rtol=1e-4)


def test_trace_prints_python_that_replays():
    sch = tir.Schedule(matmul()[0], seed=3)
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    f = sch.sample_perfect_tile(j, n=2, max_innermost_factor=4)
    j0, j1 = sch.split(j, factors=f)
    sch.parallel(i)
    text = str(sch.trace)
    assert 'b0 = sch.get_block("C")' in text
    assert "l1, l2, l3 = sch.get_loops(b0)" in text
    assert ("v4, v5 = sch.sample_perfect_tile(l2, n=2, max_innermost_factor=4, "
            f"decision={list(f)})") in text
    assert "l6, l7 = sch.split(l2, factors=[v4, v5])" in text
    # the printed trace is Python: run it on a fresh schedule
    fresh = tir.Schedule(matmul()[0])
    exec(text, {"sch": fresh})
    tir.assert_structural_equal(fresh.func, sch.func)


def test_trace_replay_with_other_decision():
    func = matmul()[0]
    sch = tir.Schedule(func, seed=0)
    _, j, _ = sch.get_loops(sch.get_block("C"))
    sch.split(j, factors=sch.sample_perfect_tile(j, n=2))
    idx = list(sch.trace.decisions)[0]
    fresh = tir.Schedule(func)
    sch.trace.with_decision(idx, [3, 4]).apply_to(fresh)
    _, j0, j1, _ = fresh.get_loops(fresh.get_block("C"))
    assert [fresh.get(j0).extent, fresh.get(j1).extent] == [3, 4]
    with pytest.raises(tir.ScheduleError, match="not 2 positive factors"):
        sch.trace.with_decision(idx, [5, 5]).apply_to(tir.Schedule(func))


def test_copy_is_independent_and_keeps_handles():
    sch = tir.Schedule(matmul()[0])
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    other = sch.copy()
    other.split(i, factors=[2, 4])           # handles made before the copy work in it
    assert len(other.get_loops(c)) == 4 and len(sch.get_loops(c)) == 3
    assert len(other.trace) == len(sch.trace) + 1   # each ran get_loops; other also split
    assert tir.structural_equal(sch.trace.apply_to(tir.Schedule(matmul()[0])).func, sch.func)


def test_sampling_is_seeded_and_respects_constraints():
    assert sorted(perfect_tiles(12, 2)) == [[1, 12], [2, 6], [3, 4], [4, 3], [6, 2], [12, 1]]
    assert all(t[-1] <= 2 for t in perfect_tiles(16, 3, max_innermost_factor=2))

    def draws(seed):
        sch = tir.Schedule(matmul()[0], seed=seed)
        _, j, _ = sch.get_loops(sch.get_block("C"))
        tiles = [list(sch.sample_perfect_tile(j, n=3, max_innermost_factor=4))
                 for _ in range(5)]
        cats = [sch.sample_categorical([8, 16, 32], [0.2, 0.3, 0.5]) for _ in range(5)]
        return tiles, cats

    assert draws(7) == draws(7)
    tiles, cats = draws(7)
    assert all(np.prod(t) == 12 and t[-1] <= 4 for t in tiles)
    assert set(cats) <= {8, 16, 32}
    sch = tir.Schedule(matmul()[0])
    assert sch.sample_categorical([1, 2, 3], [1, 1, 1], decision=2) == 3
    with pytest.raises(tir.ScheduleError, match="not an index"):
        sch.sample_categorical([1, 2, 3], [1, 1, 1], decision=3)


# ------------------------------------------------------------------ illegal schedules

def _mm():
    sch = tir.Schedule(matmul()[0])
    c = sch.get_block("C")
    return sch, c, sch.get_loops(c)


def _mm_relu():
    sch = tir.Schedule(mm_relu()[0])
    return sch, sch.get_block("C"), sch.get_block("D")


def _illegal_cases():
    def parallel_reduce():
        sch, c, (i, j, k) = _mm()
        sch.parallel(k)

    def vectorize_reduce():
        sch, c, (i, j, k) = _mm()
        sch.vectorize(k)

    def bind_reduce():
        sch, c, (i, j, k) = _mm()
        sch.bind(k, "threadIdx.x")

    def bad_split():
        n = 16
        A = te.placeholder((n,), name="A")
        B = te.compute((n,), lambda i: A[i] * 2.0, name="B")
        sch = tir.Schedule(te.create_prim_func([A, B]))
        sch.split(sch.get_loops(sch.get_block("B"))[0], factors=[3, 5])

    def two_nones():
        sch, c, (i, j, k) = _mm()
        sch.split(i, factors=[None, None])

    def reorder_across_block():
        sch, c, (i, j, k) = _mm()
        sch.decompose_reduction(c, j)   # C_init now sits in loop i, beside loop j
        sch.reorder(k, i)

    def reorder_two_nests():
        sch, c, d = _mm_relu()
        sch.reorder(sch.get_loops(c)[0], sch.get_loops(d)[1])

    def compute_at_not_covering():
        A = te.placeholder((4, 4), name="A")
        B = te.compute((4, 4), lambda i, j: A[i, j] * 2.0, name="B")
        C = te.compute((4, 4), lambda i, j: B[i, j] + 1.0, name="C")
        E = te.compute((4, 4), lambda i, j: B[j, i] * 3.0, name="E")
        sch = tir.Schedule(te.create_prim_func([A, C, E]))
        sch.compute_at(sch.get_block("B"), sch.get_loops(sch.get_block("C"))[0])

    def compute_at_own_loop():
        sch, c, d = _mm_relu()
        sch.compute_at(c, sch.get_loops(c)[0])

    def compute_at_output():
        sch, c, d = _mm_relu()
        sch.compute_at(d, sch.get_loops(c)[0])

    def inline_reduction():
        sch, c, d = _mm_relu()
        sch.compute_inline(c)

    def inline_output():
        sch, c, d = _mm_relu()
        sch.compute_inline(d)

    def reverse_inline_into_reduction():
        sch, c, d = _mm_relu()
        sch.reverse_compute_inline(d)

    def reverse_compute_at_partial_values():
        sch, c, d = _mm_relu()
        i, j, k = sch.get_loops(c)
        sch.reorder(k, i, j)
        sch.reverse_compute_at(d, j)

    def decompose_not_ancestor():
        sch, c, d = _mm_relu()
        sch.decompose_reduction(c, sch.get_loops(d)[0])

    def decompose_twice():
        sch, c, (i, j, k) = _mm()
        sch.decompose_reduction(c, k)
        sch.decompose_reduction(c, k)

    def fuse_not_nested():
        sch, c, (i, j, k) = _mm()
        sch.fuse(i, k)

    def cache_read_bad_index():
        sch, c, _ = _mm()
        sch.cache_read(c, 2, "shared")

    def stale_loop():
        sch, c, (i, j, k) = _mm()
        sch.split(i, factors=[2, 4])
        sch.parallel(i)

    def missing_block():
        sch, c, _ = _mm()
        sch.get_block("Z")

    def parallel_twice():
        sch, c, (i, j, k) = _mm()
        sch.parallel(i)
        sch.vectorize(i)

    def reverse_compute_at_inexact_region():
        sch, c, d = _mm_relu()
        i, j, k = sch.get_loops(c)
        f = sch.fuse(i, j)
        sch.split(f, factors=[None, 5])   # rows of C finish at uneven points of f_0
        sch.reverse_compute_at(d, sch.get_loops(c)[0])

    def reorder_mixed_loop():
        sch, c, (i, j, k) = _mm()
        f0, f1 = sch.split(sch.fuse(j, k), factors=[None, 4])
        sch.reorder(f1, f0)

    def cache_read_inside_producer_nest():
        sch, c, d = _mm_relu()
        sch.compute_at(c, sch.get_loops(d)[1])
        sch.decompose_reduction(c, sch.get_loops(c)[0])
        sch.cache_read(d, 0, "global")

    return [
        (reverse_compute_at_inexact_region, "cannot tell exactly which elements of C"),
        (reorder_mixed_loop, "binds both spatial and reduce iterators of block C"),
        (cache_read_inside_producer_nest, "no place for the copy of C"),
        (parallel_reduce, "cannot parallelize loop k: it binds a reduce iterator of block C"),
        (vectorize_reduce, "cannot vectorize loop k: it binds a reduce iterator of block C"),
        (bind_reduce, "cannot bind loop k to threadIdx.x: it binds a reduce iterator"),
        (bad_split, "factors [3, 5] do not cover extent 16 of loop i"),
        (two_nones, "at most one factor"),
        (reorder_across_block, "block C_init sits between them"),
        (reorder_two_nests, "not in one nest"),
        (compute_at_not_covering, "loop i does not cover the consumer's region: consumer "
                                  "block E of B is not inside loop i"),
        (compute_at_own_loop, "block C is already inside loop i"),
        (compute_at_output, "block D writes D, a parameter of the function"),
        (inline_reduction, "block C is a reduction block"),
        (inline_output, "D, a parameter (output) of the function"),
        (reverse_inline_into_reduction, "producer block C is a reduction block"),
        (reverse_compute_at_partial_values, "binds reduce iterator vk of producer block C"),
        (decompose_not_ancestor, "not an ancestor of block C"),
        (decompose_twice, "has no init"),
        (fuse_not_nested, "loop i's body is not exactly loop k (loop j sits between them)"),
        (cache_read_bad_index, "reads 2 buffer(s) (A, B); index 2 is out of range"),
        (stale_loop, "loop i does not exist any more"),
        (missing_block, "no block named 'Z'"),
        (parallel_twice, "already parallel"),
    ]


@pytest.mark.parametrize("case,message", _illegal_cases(),
                         ids=lambda x: getattr(x, "__name__", ""))
def test_illegal_schedule_raises_clear_error(case, message):
    with pytest.raises(tir.ScheduleError) as info:
        case()
    assert message in str(info.value)


def test_predicates_follow_moved_and_split_off_blocks():
    """A loop split with overhang guards its blocks; blocks placed after them (a copy-back,
    an init) must be guarded too, or they would run where the block did not."""
    sch = tir.Schedule(matmul()[0])
    c = sch.get_block("C")
    i, j, k = sch.get_loops(c)
    sch.split(i, factors=[3, None])                  # 3 x 3 = 9 > 8 rows
    c_local = sch.cache_write(c, 0, "global")
    sch.reverse_compute_at(c_local, sch.get_loops(c)[1])
    sch.decompose_reduction(c, sch.get_loops(c)[2])
    text = sch.func.script()
    assert text.count("where(i_0 * 3 + i_1 < 8)") == 3   # C_init, C and the copy-back
    check_python(sch, matmul)


def test_failed_primitive_leaves_schedule_untouched():
    sch, c, (i, j, k) = _mm()
    before, n = sch.func, len(sch.trace)
    with pytest.raises(tir.ScheduleError):
        sch.parallel(k)
    assert sch.func is before and len(sch.trace) == n
    assert isinstance(tir.ScheduleError("x"), ValueError)

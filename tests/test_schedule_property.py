"""Laws of scheduling, checked on random schedules.

1. A primitive either raises ScheduleError and leaves the schedule as it was, or gives a
   well-formed program that computes the same result (compared with numpy).
2. Replaying the trace on a fresh schedule gives a structurally equal program.
"""

import random

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlc import te, tir
from mlc.tir.functor import blocks_in

SHAPES = dict(n=8, k=6, m=12)


def _matmul_tensors():
    n, k, m = SHAPES["n"], SHAPES["k"], SHAPES["m"]
    A = te.placeholder((n, k), "float32", name="A")
    B = te.placeholder((k, m), "float32", name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    return A, B, C


def matmul():
    A, B, C = _matmul_tensors()
    return te.create_prim_func([A, B, C]), lambda a, b: a @ b, [A.shape, B.shape], C.shape


def mm_relu():
    A, B, C = _matmul_tensors()
    D = te.compute(C.shape, lambda i, j: te.max(C[i, j], 0.0), name="D")
    return (te.create_prim_func([A, B, D]), lambda a, b: np.maximum(a @ b, 0),
            [A.shape, B.shape], D.shape)


def row_sum_scaled():
    n, m = SHAPES["n"], SHAPES["m"]
    A = te.placeholder((n, m), "float32", name="A")
    T = te.compute((n, m), lambda i, j: A[i, j] * 2.0, name="T")
    r = te.reduce_axis((0, m), name="r")
    S = te.compute((n,), lambda i: te.sum(T[i, r], axis=r), name="S")
    return te.create_prim_func([A, S]), lambda a: (2 * a).sum(1), [(n, m)], (n,)


PROGRAMS = [matmul, mm_relu, row_sum_scaled]


def _from_te(program):
    """A test_te program (tensors, numpy reference) in this file's format."""
    def make():
        tensors, ref = program()
        return (te.create_prim_func(tensors), ref, [t.shape for t in tensors[:-1]],
                tensors[-1].shape)

    make.__name__ = program.__name__
    return make


def _multi_stage():
    import test_te

    return [_from_te(test_te.conv2d), _from_te(test_te.softmax)]


def random_step(sch, rng: random.Random):
    """Apply one random primitive with random arguments (it may be illegal)."""
    blocks = [b.name for b in blocks_in(sch.func.body)]
    blk = sch.get_block(rng.choice(blocks))
    loops = sch.get_loops(blk)
    all_loops = [lp for b in blocks for lp in sch.get_loops(sch.get_block(b))]
    lp = rng.choice(loops) if loops else None
    any_loop = rng.choice(all_loops) if all_loops else None
    op = rng.choice(["split", "split3", "fuse", "reorder", "parallel", "vectorize", "unroll",
                     "compute_at", "reverse_compute_at", "compute_inline",
                     "reverse_compute_inline", "cache_read", "cache_write",
                     "decompose_reduction", "tile"])
    if op == "split" and lp is not None:
        sch.split(lp, factors=[None, rng.choice([1, 2, 3, 4, 5])])
    elif op == "split3" and lp is not None:
        sch.split(lp, factors=[rng.choice([1, 2]), None, rng.choice([2, 3])])
    elif op == "tile" and lp is not None:
        ext = sch.get(lp).extent
        f = sch.sample_perfect_tile(lp, n=2, max_innermost_factor=4)
        assert f[0] * f[1] == ext
        sch.split(lp, factors=f)
    elif op == "fuse" and len(loops) >= 2:
        a = rng.randrange(len(loops) - 1)
        sch.fuse(loops[a], loops[a + 1])
    elif op == "reorder" and len(loops) >= 2:
        chosen = rng.sample(loops, rng.randint(2, len(loops)))
        sch.reorder(*chosen)
    elif op in ("parallel", "vectorize", "unroll") and lp is not None:
        getattr(sch, op)(lp)
    elif op == "compute_at" and any_loop is not None:
        sch.compute_at(blk, any_loop)
    elif op == "reverse_compute_at" and any_loop is not None:
        sch.reverse_compute_at(blk, any_loop)
    elif op in ("compute_inline", "reverse_compute_inline"):
        getattr(sch, op)(blk)
    elif op == "cache_read":
        sch.cache_read(blk, rng.randrange(2), rng.choice(["global", "local"]))
    elif op == "cache_write":
        sch.cache_write(blk, 0, rng.choice(["global", "local"]))
    elif op == "decompose_reduction" and lp is not None:
        sch.decompose_reduction(blk, lp)


def run_random_schedule(program, seed: int, steps: int, target: str):
    func, ref_fn, in_shapes, out_shape = program()
    rng = random.Random(seed)
    sch = tir.Schedule(func, seed=seed)
    applied = 0
    for _ in range(steps):
        before = sch.func
        try:
            random_step(sch, rng)
            applied += 1
        except tir.ScheduleError:
            assert sch.func is before, "a failed primitive changed the schedule"
        tir.verify(sch.func)
    data = np.random.default_rng(seed)
    args = [data.standard_normal(s).astype("float32") for s in in_shapes]
    out = np.zeros(out_shape, "float32")
    tir.build(sch, target)(*args, out)
    np.testing.assert_allclose(out, ref_fn(*args), rtol=1e-4, atol=1e-4,
                               err_msg=f"seed {seed}\n{sch.trace}\n{sch.func.script()}")
    fresh = tir.Schedule(func)
    sch.trace.apply_to(fresh)
    tir.assert_structural_equal(fresh.func, sch.func)
    return applied


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(PROGRAMS), st.integers(1, 8))
def test_random_schedules_python(seed, program, steps):
    run_random_schedule(program, seed, steps, "python")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(_multi_stage()), st.integers(1, 10))
def test_random_schedules_multi_stage_python(seed, program, steps):
    """conv2d with its padding stage, softmax with four stages."""
    run_random_schedule(program, seed, steps, "python")


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(PROGRAMS))
def test_random_schedules_cpu(seed, program):
    run_random_schedule(program, seed, 6, "cpu")


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(PROGRAMS))
def test_random_gpu_schedules_cuda(seed, program):
    """Random schedule, then outer loops bound to blockIdx.x and random inner loops to
    threadIdx.x/y: a clear error (ScheduleError, or ValueError from build) or the right
    numbers in the CUDA simulator."""
    func, ref_fn, in_shapes, out_shape = program()
    rng = random.Random(seed)
    sch = tir.Schedule(func, seed=seed)
    for _ in range(3):
        try:
            random_step(sch, rng)
        except tir.ScheduleError:
            pass
    from mlc.schedule.state import LoopRV, split_root
    from mlc.tir.stmt import children

    bound = True
    for nest in children(split_root(sch.func.body)[1]):
        try:
            sch.bind(LoopRV(nest.loop_var), "blockIdx.x")
        except tir.ScheduleError:
            bound = False  # e.g. the outer loop is a reduction loop now
    assume(bound)
    for name in [b.name for b in blocks_in(sch.func.body)]:
        loops = sch.get_loops(sch.get_block(name))
        if len(loops) > 1:
            try:
                sch.bind(rng.choice(loops[1:]), rng.choice(["threadIdx.x", "threadIdx.y"]))
            except tir.ScheduleError:
                pass
    try:
        mod = tir.build(sch, "cuda")
    except ValueError as e:
        assert "cuda target" in str(e)
        return
    data = np.random.default_rng(seed)
    args = [data.standard_normal(s).astype("float32") for s in in_shapes]
    out = np.zeros(out_shape, "float32")
    mod(*args, out)
    np.testing.assert_allclose(out, ref_fn(*args), rtol=1e-4, atol=1e-4,
                               err_msg=f"{sch.trace}\n{mod.source}")


def test_random_schedules_do_apply_primitives():
    # the law above is only worth something if many random primitives succeed
    applied = sum(run_random_schedule(p, s, 8, "python") for p in PROGRAMS for s in range(6))
    assert applied >= 40

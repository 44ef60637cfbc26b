"""mlc.dist on in-process ranks (dist.local): collectives, failures that name the rank,
data/tensor/pipeline parallelism, ZeRO-1 and the cost model. Every group has a short
timeout, so a hang fails the test within seconds."""

import subprocess
import sys
import time

import numpy as np
import pytest

import mlc
from mlc import dist, nn, optim

T = 5.0  # seconds any rank may wait here


def run(P, fn, timeout=T):
    return dist.local(P, timeout=timeout).run(fn)


@pytest.mark.parametrize("P", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 3, 10, 13])
def test_collectives_equal_numpy_on_any_length(P, n):
    xs = [np.arange(n, dtype=np.float32) * (r + 1) - r for r in range(P)]
    total = np.sum(xs, axis=0)

    def body(c):
        x = xs[c.rank]
        return (dist.allreduce(c, x), dist.allreduce(c, x, algorithm="mpi"),
                dist.allgather(c, x), dist.allgather(c, x, algorithm="mpi"),
                dist.reduce_scatter(c, x), dist.broadcast(c, x, root=P - 1))

    for r, (ring, native, ag, ag2, rs, bc) in enumerate(run(P, body)):
        np.testing.assert_allclose(ring, total, rtol=1e-6)
        np.testing.assert_allclose(native, total, rtol=1e-6)
        np.testing.assert_array_equal(ag, np.concatenate(xs))
        np.testing.assert_array_equal(ag2, np.concatenate(xs))
        np.testing.assert_allclose(rs, np.array_split(total, P)[r], rtol=1e-6)
        np.testing.assert_array_equal(bc, xs[-1])


def test_ring_allreduce_sends_2_p_minus_1_over_p_of_the_data():
    n, P = 1000, 4

    def body(c):
        c.reset_counters()
        out = dist.allreduce(c, np.ones(n, np.float32))
        return c.bytes_sent, c.messages_sent, out

    for sent, messages, out in run(P, body):
        assert sent == 2 * (P - 1) * (n // P) * 4   # 1500 elements: not P x 1000
        assert messages == 2 * (P - 1)
        assert (out == P).all()


def test_every_rank_gets_bit_identical_sums():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(37).astype(np.float32) for _ in range(3)]
    outs = run(3, lambda c: dist.allreduce(c, xs[c.rank]))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_mismatched_shapes_raise_a_valueerror_naming_the_rank():
    with pytest.raises(ValueError, match=r"rank \d.*differ in shape"):
        run(3, lambda c: dist.allreduce(c, np.ones(10 + (c.rank == 1))))
    with pytest.raises(ValueError, match="rank 1 passed shape"):
        run(2, lambda c: dist.allreduce(c, np.ones(3 + c.rank), algorithm="mpi"))


def test_a_collective_called_by_only_some_ranks_fails_fast_naming_the_rank():
    with pytest.raises(dist.DistError, match="rank 2.*returned without sending"):
        run(3, lambda c: None if c.rank == 2 else dist.allreduce(c, np.ones(4)))


def test_a_rank_that_dies_is_named_and_its_peers_stop_waiting():
    def body(c):
        if c.rank == 1:
            raise RuntimeError("out of memory")
        return dist.allreduce(c, np.ones(4))

    with pytest.raises(RuntimeError, match="rank 1: out of memory"):
        run(3, body, timeout=30)  # its peers give up at once, not after 30 s


def test_a_group_runs_again_after_a_failure():
    group = dist.local(2, timeout=T)
    with pytest.raises(RuntimeError, match="rank 0: boom"):
        group.run(lambda c: (_ for _ in ()).throw(RuntimeError("boom")) if c.rank == 0
                  else c.recv(0))
    assert [o.tolist() for o in group.run(lambda c: dist.allreduce(c, np.ones(2)))] == [
        [2.0, 2.0], [2.0, 2.0]]


def test_a_message_never_sent_times_out_with_the_ranks_named():
    with pytest.raises(dist.DistError, match="rank 0 waited 0.3 s for a message from rank 1"):
        dist.local(2, timeout=0.3).run(lambda c: c.recv(1) if c.rank == 0 else time.sleep(1))


def _ring_step(comm, x, how):
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    if how == "sendrecv":
        return comm.sendrecv(x, right, left)
    if how == "isend":
        done = comm.isend(x, right)
        got = comm.recv(left)
        done()
        return got
    comm.send(x, right)  # every rank sends first: relies on the send being buffered
    return comm.recv(left)


@pytest.mark.parametrize("n,eager_limit,ok", [(10, None, True), (100_000, None, True),
                                              (10, 1024, True), (100_000, 1024, False)])
def test_above_the_eager_limit_a_send_waits_for_its_receiver(n, eager_limit, ok):
    """MPI's rendezvous protocol: a ring whose ranks all send first works while messages
    are buffered and deadlocks once they are large; sendrecv and isend work at any size."""
    group = dist.local(3, timeout=0.5, eager_limit=eager_limit)
    for how in ("sendrecv", "isend"):
        outs = group.run(lambda c, how=how: _ring_step(c, np.full(n, c.rank, np.float32), how))
        assert [int(o[0]) for o in outs] == [2, 0, 1]
    if ok:
        group.run(lambda c: _ring_step(c, np.full(n, c.rank, np.float32), "send"))
    else:
        with pytest.raises(dist.DistError, match="400000 bytes to rank .* did not complete.*"
                                                 "eager limit .1024 bytes.*comm.sendrecv"):
            group.run(lambda c: _ring_step(c, np.full(n, c.rank, np.float32), "send"))


def test_a_ring_of_blocked_sends_is_reported_as_a_deadlock_at_once():
    """Every rank waits in a send nobody has taken: no rank can receive any more, so the
    group says so without waiting for its timeout."""
    start = time.monotonic()
    with pytest.raises(dist.DistError, match="did not complete"):
        dist.local(4, timeout=60, eager_limit=0).run(
            lambda c: _ring_step(c, np.ones(8, np.float32), "send"))
    assert time.monotonic() - start < 10


def test_a_rendezvous_send_to_a_rank_that_returned_fails_at_once():
    start = time.monotonic()
    with pytest.raises(dist.DistError, match="rank 1 never received it"):
        dist.local(2, timeout=30, eager_limit=0).run(
            lambda c: c.send(np.ones(4), 1) if c.rank == 0 else None)
    assert time.monotonic() - start < 10


def test_bad_arguments_are_refused_before_anything_moves():
    with dist.local(2) as comms:
        with pytest.raises(ValueError, match="rank 5 is not in 0..1"):
            comms[0].send(np.ones(2), 5)
        with pytest.raises(TypeError, match="cannot send an array of dtype complex"):
            comms[0].send(np.ones(2, complex), 1)
        with pytest.raises(ValueError, match="unknown algorithm 'star'"):
            dist.allreduce(comms[0], np.ones(2), algorithm="star")
        with pytest.raises(TypeError, match="takes a dist communicator"):
            dist.allreduce(object(), np.ones(2))
    with pytest.raises(ValueError, match="positive number of ranks"):
        dist.local(0)
    with pytest.raises(ValueError, match="eager_limit is a number of bytes"):
        dist.local(2, eager_limit=-1)


def test_world_is_one_rank_outside_mpiexec_and_the_library_needs_no_mpi4py():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import numpy as np; from mlc import dist\n"
            "c = dist.world(); print(c.size, dist.allreduce(c, np.ones(3)).sum())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "3.0"]


# ---- data parallel -------------------------------------------------------------------------

def test_sampler_shards_are_disjoint_padded_and_reshuffled_each_epoch():
    with dist.local(3) as comms:
        samplers = [dist.DistributedSampler(10, c, seed=1) for c in comms]
        shards = [s.indices() for s in samplers]
        assert [len(s) for s in shards] == [4, 4, 4]
        assert set(np.concatenate(shards)) == set(range(10))
        first = np.concatenate(shards)
        for s in samplers:
            s.set_epoch(1)
        assert not np.array_equal(np.concatenate([s.indices() for s in samplers]), first)


def mlp():
    np.random.seed(5)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                         nn.Linear(12, 3))


def batch(n=12):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def sgd_steps(model, x, t, steps=3):
    opt = optim.SGD(model.parameters(), lr=0.2)
    for _ in range(steps):
        opt.reset_grad()
        nn.SoftmaxLoss()(model(mlc.Tensor(x)), mlc.Tensor(t, dtype="int32")).backward()
        opt.step()
    return [p.numpy() for p in model.parameters()]


@pytest.mark.parametrize("P,bucket_bytes,overlap", [(2, 200, True), (3, 1 << 20, True),
                                                    (2, 1, False)])
def test_ddp_equals_one_process_on_the_whole_batch(P, bucket_bytes, overlap):
    x, t = batch()
    want = sgd_steps(mlp(), x, t)

    # numpy's global generator is one for all threads: build the replicas here, not in
    # the ranks (which would interleave their draws).
    models = [mlp() for _ in range(P)]

    def body(c):
        model = models[c.rank]
        ddp = dist.DistributedDataParallel(model, c, bucket_bytes=bucket_bytes,
                                           overlap=overlap)
        lo, hi = dist.chunk_bounds(len(x), P)[c.rank]
        return sgd_steps(ddp, x[lo:hi], t[lo:hi]), ddp

    for got, ddp in run(P, body):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
        assert len(ddp.timeline) == len(ddp.buckets)
        # buckets go last layer first: the first one is ready before backward ends
        assert ddp.timeline[0][1] <= ddp.backward_end
    assert len(run(P, lambda c: dist.DistributedDataParallel(models[c.rank], c, 1).buckets)[0]) \
        == 6


def test_ddp_refuses_to_go_on_when_a_parameter_got_no_gradient():
    models = [mlp() for _ in range(2)]
    x, t = batch()

    def body(c):
        ddp = dist.DistributedDataParallel(models[c.rank], c)
        ddp.module.modules[-1].bias.requires_grad = False  # never reaches its hook
        nn.SoftmaxLoss()(ddp(mlc.Tensor(x)), mlc.Tensor(t, dtype="int32")).backward()
        ddp(mlc.Tensor(x))

    with pytest.raises(RuntimeError, match="gave no gradient to .*4.bias"):
        run(2, body)


# ---- tensor parallel ------------------------------------------------------------------------

def test_megatron_mlp_equals_the_unsplit_one_with_one_allreduce_each_way():
    np.random.seed(2)
    a, b = nn.Linear(6, 8), nn.Linear(8, 3)
    x = np.random.randn(5, 6).astype(np.float32)
    xt = mlc.Tensor(x)
    y = b(nn.ReLU()(a(xt)))
    (y * y).sum().backward()

    def body(c):
        col = dist.ColumnParallelLinear.from_linear(a, c)
        row = dist.RowParallelLinear.from_linear(b, c)
        c.reset_counters()
        xx = mlc.Tensor(x)
        yy = row(nn.ReLU()(col(xx)))
        forward = c.calls.get("allreduce", 0)
        (yy * yy).sum().backward()
        return yy.numpy(), xx.grad.numpy(), col.weight.grad.numpy(), forward, c.calls

    outs = run(3, body)
    for yy, gx, _, forward, calls in outs:
        np.testing.assert_allclose(yy, y.numpy(), atol=1e-5)
        np.testing.assert_allclose(gx, xt.grad.numpy(), atol=1e-5)
        assert forward == 1 and calls["allreduce"] == 2
    np.testing.assert_allclose(np.concatenate([o[2] for o in outs], axis=1),
                               a.weight.grad.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="3 features cannot be split over 4 ranks"):
        run(4, lambda c: dist.ColumnParallelLinear(6, 3, c))


# ---- pipeline parallel ----------------------------------------------------------------------

def test_1f1b_and_gpipe_orders():
    assert dist.schedule_order("1f1b", 2, 3) == [
        [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)],
        [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]]
    assert dist.schedule_order("gpipe", 3, 2)[1] == [("F", 0), ("F", 1), ("B", 0), ("B", 1)]
    with pytest.raises(ValueError, match="unknown schedule"):
        dist.schedule_order("zb", 2, 2)
    assert dist.bubble_fraction(2, 4) == pytest.approx(1 / 5)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_of_two_stages_and_four_micro_batches_equals_the_unsplit_model(schedule):
    np.random.seed(4)
    stages = [nn.Sequential(nn.Linear(6, 10), nn.ReLU()), nn.Sequential(nn.Linear(10, 3))]
    x, t = batch(8)
    whole = nn.Sequential(*stages)
    y_ref = whole(mlc.Tensor(x)).numpy()
    start = [p.numpy().copy() for p in whole.parameters()]
    want = sgd_steps(whole, x, t, steps=1)
    for p, v in zip(whole.parameters(), start, strict=True):
        p.cached_data = mlc.Tensor(v).cached_data

    def body(c):
        pipe = dist.pipeline(stages, c, micro_batches=4, schedule=schedule)
        y = pipe(x if c.rank == 0 else None)
        opt = optim.SGD(stages[c.rank].parameters(), lr=0.2)
        pipe.train_step(x, t, nn.SoftmaxLoss(), opt)
        return y, [p.numpy() for p in stages[c.rank].parameters()], pipe

    (y0, w0, p0), (y1, w1, p1) = run(2, body)
    assert y0 is None
    np.testing.assert_allclose(y1, y_ref, atol=1e-5)
    for a, b in zip(w0 + w1, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    print(f"{schedule}: measured bubble {p0.bubble:.2f}, ideal {dist.bubble_fraction(2, 4):.2f}")
    assert 0 < p0.bubble < 1 and p0.bubble == p1.bubble
    assert [k for k, _, _, _ in p0.timeline[0]] == [k for k, _ in
                                                     dist.schedule_order(schedule, 2, 4)[0]]
    assert p0.held[0] == (4 if schedule == "gpipe" else 2) and p1.held[0] == (
        4 if schedule == "gpipe" else 1)


def test_pipeline_refuses_a_stage_count_that_is_not_the_rank_count():
    with dist.local(2) as comms, pytest.raises(ValueError, match="3 stages for 2 ranks"):
        dist.pipeline([nn.Identity()] * 3, comms[0])


# ---- ZeRO-1 -----------------------------------------------------------------------------------

def test_sharded_adam_equals_adam_and_holds_less_state_per_rank():
    x, t = batch()

    def adam_steps(model, opt, steps=3):
        for _ in range(steps):
            opt.reset_grad()
            nn.SoftmaxLoss()(model(mlc.Tensor(x)), mlc.Tensor(t, dtype="int32")).backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    ref_model = mlp()
    ref_opt = optim.Adam(ref_model.parameters(), lr=0.01)
    want = adam_steps(ref_model, ref_opt)
    full = dist.state_bytes(ref_opt)
    assert full == 2 * 4 * sum(p.size for p in ref_model.parameters())

    models = [mlp() for _ in range(2)]

    def body(c):
        model = models[c.rank]
        opt = dist.ShardedOptimizer(optim.Adam(model.parameters(), lr=0.01), c)
        return adam_steps(model, opt), opt.state_bytes()

    outs = run(2, body)
    for got, _ in outs:
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    assert sum(s for _, s in outs) == full and max(s for _, s in outs) < full


# ---- the cost model ---------------------------------------------------------------------------

def test_cost_model_follows_the_ring_formula_and_the_fit_recovers_it():
    m = dist.cost_model(2e-6, 1e-10)
    for n, P in [(8, 2), (1 << 20, 4), (64 << 20, 1024)]:
        assert m.allreduce_time(n, P) == pytest.approx(2 * (P - 1) * 2e-6
                                                       + 2 * (P - 1) / P * n * 1e-10)
    assert m.allreduce_time(1 << 20, 1) == 0
    assert m.allreduce_time(8, 8, "tree") == pytest.approx(6 * (2e-6 + 8e-10))
    sizes = np.logspace(3, 26, 12, base=2)
    times = [m.allreduce_time(n, 4) for n in sizes]
    alpha, beta = dist.fit_alpha_beta(sizes, times, 4)
    assert alpha == pytest.approx(2e-6, rel=1e-6) and beta == pytest.approx(1e-10, rel=1e-6)
    assert m.speedup(1.0, 4e8, 8) < 8
    assert m.data_parallel_step_time(1.0, 0, 4) == pytest.approx(0.25 + 6 * 2e-6)
    with pytest.raises(ValueError, match="cannot be negative"):
        dist.cost_model(-1, 0)


def test_measured_allreduce_times_are_positive_and_the_same_on_every_rank():
    outs = run(2, lambda c: dist.measure_allreduce(c, [8, 4096], repeat=2, budget=1e5))
    assert outs[0] == outs[1] and all(t > 0 for t in outs[0])

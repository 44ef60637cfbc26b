"""Run by tests/test_dist_mpi.py under ``mpiexec -n P``: one case per argument, each
rank printing ``rank <r> ok`` lines (or raising, which fails the job)."""

import sys

import numpy as np

import mlc
from mlc import dist, nn, optim


def allreduce_case(comm):
    x = np.arange(10, dtype=np.float64) * (comm.rank + 1)
    want = np.arange(10) * sum(range(1, comm.size + 1))
    for algorithm in ("ring", "mpi"):
        got = dist.allreduce(comm, x, algorithm=algorithm)
        assert np.allclose(got, want), (algorithm, got, want)
        gathered = dist.allgather(comm, x[: comm.rank + 1], algorithm=algorithm)
        assert gathered.size == comm.size * (comm.size + 1) // 2, gathered
        b = dist.broadcast(comm, x, root=comm.size - 1, algorithm="tree" if algorithm == "ring"
                           else "mpi")
        assert np.allclose(b, np.arange(10) * comm.size), b
    print(f"rank {comm.rank} allreduce ok", flush=True)


def model():
    np.random.seed(3)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 8)).astype(np.float32), rng.integers(0, 4, 12)


def train(m, x, t, steps=5):
    opt = optim.SGD(m.parameters(), lr=0.1)
    loss = nn.SoftmaxLoss()
    for _ in range(steps):
        opt.reset_grad()
        loss(m(mlc.Tensor(x)), mlc.Tensor(t, dtype="int32")).backward()
        opt.step()


def ddp_case(comm):
    x, t = data()
    lo, hi = dist.chunk_bounds(len(x), comm.size)[comm.rank]
    m = model()
    ddp = dist.DistributedDataParallel(m, comm, bucket_bytes=256)
    train(ddp, x[lo:hi], t[lo:hi])
    ref = model()
    train(ref, x, t)
    err = max(float(np.abs(a.numpy() - b.numpy()).max())
              for a, b in zip(m.parameters(), ref.parameters(), strict=True))
    assert err < 1e-4, err
    print(f"rank {comm.rank} ddp ok {err:.2e}", flush=True)


def pipeline_case(comm):
    # float32 activations follow an int64 shape header under one tag: they must arrive in
    # order whatever their dtypes
    x, t = data()
    np.random.seed(4)
    stages = [nn.Sequential(nn.Linear(8, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 4))]
    whole = nn.Sequential(*stages)
    y_ref = whole(mlc.Tensor(x)).numpy()
    for schedule in ("gpipe", "1f1b"):
        pipe = dist.pipeline(stages, comm, micro_batches=4, schedule=schedule)
        y = pipe(x if comm.rank == 0 else None)
        if comm.rank == 1:
            assert np.abs(y - y_ref).max() < 1e-5
        pipe.train_step(x, t, nn.SoftmaxLoss())
        assert 0 < pipe.bubble < 1
    print(f"rank {comm.rank} pipeline ok", flush=True)


def mismatch_case(comm):
    dist.allreduce(comm, np.ones(10 + comm.rank))


def partial_case(comm):
    comm.timeout = 2.0
    if comm.rank != 0:
        dist.allreduce(comm, np.ones(10))


if __name__ == "__main__":
    c = dist.world()
    for name in sys.argv[1:]:
        globals()[f"{name}_case"](c)
